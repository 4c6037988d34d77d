"""LMTP delivery against a real ``imapd serve`` (one process, and two workers), spoken with smtplib.LMTP
and read back over IMAP: per-recipient replies, pipelining, big and 8-bit messages, a client that
vanishes mid-message, IDLE hearing of a delivery, and ``imapd deliver`` going through the server."""

from __future__ import annotations

import imaplib
import os
import shutil
import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapd.rendezvous import owner_slot
from tests.conftest import RunningServer, imapd_cli, start_server, stop_server

USERS = {"alice": "secret1", "bob": "secret2", "carol": "secret3", "dave@example.org": "secret4"}
# Both slots of a two-worker server own someone, so one LMTP connection stores in both ways.
assert {owner_slot(u, 2) for u in USERS} == {0, 1}
MAX_SIZE = 8 * 1024 * 1024


def _start(tmp: Path, workers: int, *extra: str) -> RunningServer:
    data = tmp / "data"
    for user, password in USERS.items():
        imapd_cli("user", "add", user, "--password-stdin", "--data-dir", str(data), stdin=password)
    # No inotify watcher: an IDLE client can only hear of a delivery from the owner's own store or from
    # the change notice the accepting worker sends it.
    srv = start_server(data, "-o", f"server.workers={workers}", "-o", "lmtp.listen=127.0.0.1:0",
                       "-o", 'lmtp.domains=["example.org"]', "-o", f"lmtp.max_message_size={MAX_SIZE}",
                       "-o", "store.watch=false", *extra)
    srv.users.update(USERS)
    return srv


@pytest.fixture(scope="module", params=[1, 2], ids=["1worker", "2workers"])
def lmtp_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = _start(tmp_path_factory.mktemp("lmtp"), request.param)
    try:
        yield srv
    finally:
        stop_server(srv)


def lmtp_port(srv: RunningServer) -> int:
    text = (srv.data_dir / "run" / "lmtp").read_text().strip()
    return int(text.rpartition(":")[2])


def connect(srv: RunningServer) -> smtplib.LMTP:
    client = smtplib.LMTP("127.0.0.1", lmtp_port(srv), timeout=30)
    client.ehlo_or_helo_if_needed()
    return client


def send_data(client: smtplib.LMTP, body: bytes, replies: int) -> list[tuple[int, bytes]]:
    """DATA with one reply per accepted recipient (smtplib's data() reads only one)."""
    code, _ = client.docmd("DATA")
    assert code == 354
    client.send(body.replace(b"\r\n.", b"\r\n..") + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    return [client.getreply() for _ in range(replies)]


def imap(srv: RunningServer, user: str) -> imaplib.IMAP4:
    conn = imaplib.IMAP4(srv.host, srv.port)
    conn.login(user, srv.users[user])
    return conn


def messages(srv: RunningServer, user: str, mailbox: str = "INBOX") -> list[bytes]:
    conn = imap(srv, user)
    try:
        typ, _ = conn.select(mailbox, readonly=True)
        assert typ == "OK"
        typ, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[])")
        return [item[1] for item in data if isinstance(item, tuple)]
    finally:
        conn.logout()


def body_of(stored: bytes) -> bytes:
    return stored.split(b"\r\n\r\n", 1)[1]


def test_lhlo_advertises_the_extensions(lmtp_server: RunningServer) -> None:
    client = connect(lmtp_server)
    try:
        for ext in ("pipelining", "enhancedstatuscodes", "8bitmime", "smtputf8", "chunking", "size"):
            assert client.has_extn(ext), ext
        assert client.esmtp_features["size"] == str(MAX_SIZE)
        code, text = client.docmd("HELO", "x")  # not LMTP
        assert code == 500 and text.startswith(b"5.5.2")
    finally:
        client.quit()


def test_one_reply_per_recipient_and_trace_headers(lmtp_server: RunningServer) -> None:
    srv = lmtp_server
    before = len(messages(srv, "alice"))
    client = connect(srv)
    try:
        assert client.mail("sender@remote.test") == (250, b"2.1.0 Ok")
        assert client.rcpt("alice@example.org")[0] == 250
        code, text = client.rcpt("nobody@example.org")
        assert (code, text[:5]) == (550, b"5.1.1")
        assert client.rcpt("alice@elsewhere.test")[0] == 550  # not one of lmtp.domains
        assert client.rcpt("bob+Sent@example.org")[0] == 250  # the detail names an existing folder
        assert client.rcpt("carol+NoSuchFolder@example.org")[0] == 250  # falls back to INBOX
        assert client.rcpt("Dave@Example.ORG")[0] == 250  # a user named by the whole address
        body = b"Subject: four copies\r\nMessage-ID: <four@remote.test>\r\n\r\nHello.\r\n"
        replies = send_data(client, body, 4)
    finally:
        client.quit()
    assert [code for code, _ in replies] == [250, 250, 250, 250]
    assert all(text.startswith(b"2.0.0 <") for _, text in replies)
    assert b"<bob+Sent@example.org> Saved (Sent UID" in replies[1][1]
    assert b"(INBOX UID" in replies[2][1]
    got = messages(srv, "alice")
    assert len(got) == before + 1
    head, _, rest = got[-1].partition(b"Subject: four copies")
    lines = head.split(b"\r\n")
    assert lines[0] == b"Return-Path: <sender@remote.test>"
    assert lines[1] == b"Delivered-To: alice@example.org"
    assert lines[2].startswith(b"Received: from ")
    assert b"with LMTP" in head and b"(envelope-from <sender@remote.test>)" in head
    assert b"for <alice@example.org>; " in head
    assert rest == b"\r\nMessage-ID: <four@remote.test>\r\n\r\nHello.\r\n"
    assert any(b"four copies" in m for m in messages(srv, "bob", "Sent"))
    assert any(b"four copies" in m for m in messages(srv, "carol"))
    assert any(b"four copies" in m for m in messages(srv, "dave@example.org"))


def test_a_failing_recipient_gets_its_own_reply(lmtp_server: RunningServer) -> None:
    """carol's Maildir cannot take a file (tmp/ is not a directory): she gets 451 4.3.0, alice 250."""
    srv = lmtp_server
    tmp_dir = srv.data_dir / "mail" / "carol" / "tmp"
    before = len(messages(srv, "carol"))
    shutil.rmtree(tmp_dir)
    tmp_dir.write_bytes(b"")
    try:
        client = connect(srv)
        try:
            client.mail("sender@remote.test")
            client.rcpt("carol@example.org")
            client.rcpt("alice@example.org")
            replies = send_data(client, b"Subject: mixed\r\n\r\nmixed\r\n", 2)
        finally:
            client.quit()
    finally:
        tmp_dir.unlink()
        tmp_dir.mkdir()
    assert replies[0][0] == 451 and replies[0][1].startswith(b"4.3.0 <carol@example.org>")
    assert replies[1][0] == 250
    assert len(messages(srv, "carol")) == before
    assert any(b"Subject: mixed" in m for m in messages(srv, "alice"))


def test_pipelined_transactions(lmtp_server: RunningServer) -> None:
    """Whole transactions written at once (RFC 2920): the replies come back in order."""
    srv = lmtp_server
    before = len(messages(srv, "bob"))
    sock = socket.create_connection(("127.0.0.1", lmtp_port(srv)), timeout=30)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"220 ")
    sock.sendall(b"LHLO client.test\r\n")
    while not reader.readline().startswith(b"250 "):
        pass
    count = 20
    batch = (b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<nobody@example.org>\r\n"
             b"RCPT TO:<alice@example.org>\r\nDATA\r\n")
    for i in range(count):
        sock.sendall(batch)
        head = [reader.readline() for _ in range(5)]
        assert [line[:3] for line in head] == [b"250", b"250", b"550", b"250", b"354"], head
        # the message, then the next transaction's commands, without waiting for the two replies
        sock.sendall(f"Subject: pipelined {i}\r\n\r\n..leading dot\r\n.\r\nRSET\r\n".encode())
        tail = [reader.readline() for _ in range(3)]
        assert [line[:10] for line in tail] == [b"250 2.0.0 ", b"250 2.0.0 ", b"250 2.0.0 "], tail
    sock.sendall(b"QUIT\r\n")
    assert reader.readline().startswith(b"221 2.0.0")
    sock.close()
    got = messages(srv, "bob")
    assert len(got) == before + count
    assert body_of(got[-1]) == b".leading dot\r\n"


def test_big_message_and_too_big(lmtp_server: RunningServer) -> None:
    srv = lmtp_server
    long_line = b"x" * 200_000  # longer than the stream's buffer limit
    lines = [b"Subject: big", b"", long_line, b".starts with a dot", b"..two dots", b"."]
    lines += [b"%06d " % i + b"y" * 70 for i in range(80_000)]  # ~6 MB
    body = b"\r\n".join(lines) + b"\r\n"
    assert len(body) < MAX_SIZE
    client = connect(srv)
    try:
        client.mail("s@remote.test", [f"SIZE={len(body)}"])
        client.rcpt("alice@example.org")
        client.rcpt("bob@example.org")
        replies = send_data(client, body, 2)
        assert [c for c, _ in replies] == [250, 250]
        # too big: declared (refused at MAIL), and undeclared (one 552 per recipient after the data)
        code, text = client.mail("s@remote.test", [f"SIZE={MAX_SIZE + 1}"])
        assert (code, text[:5]) == (552, b"5.3.4")
        client.mail("s@remote.test")
        client.rcpt("alice@example.org")
        client.rcpt("bob@example.org")
        replies = send_data(client, b"Subject: huge\r\n\r\n" + b"z" * 76 * 2 + b"\r\n" * (MAX_SIZE // 2), 2)
        assert [(c, t[:5]) for c, t in replies] == [(552, b"5.3.4"), (552, b"5.3.4")]
        assert client.noop()[0] == 250  # still in step
    finally:
        client.quit()
    stored = messages(srv, "alice")[-1]
    assert stored.endswith(body)
    assert b"Subject: huge" not in stored


def test_8bitmime_and_smtputf8(lmtp_server: RunningServer) -> None:
    srv = lmtp_server
    sender = "jörg@exämple.test"
    body = "Subject: Grüße, 日本語\r\nFrom: Jörg <jörg@exämple.test>\r\n\r\nÄpfel und Birnen.\r\n".encode()
    client = connect(srv)
    try:
        assert client.mail(sender, ["SMTPUTF8", "BODY=8BITMIME"])[0] == 250
        assert client.rcpt("alice@example.org")[0] == 250
        assert [c for c, _ in send_data(client, body, 1)] == [250]
    finally:
        client.quit()
    stored = messages(srv, "alice")[-1]
    assert stored.startswith(f"Return-Path: <{sender}>\r\n".encode())
    assert stored.endswith(body)


def test_chunking(lmtp_server: RunningServer) -> None:
    srv = lmtp_server
    client = connect(srv)
    try:
        client.mail("s@remote.test", ["BODY=8BITMIME"])
        client.rcpt("alice@example.org")
        client.rcpt("nobody@example.org")
        client.rcpt("bob@example.org")
        client.send(b"BDAT 24\r\nSubject: chunked\r\n\r\n.a\r\n")
        assert client.getreply() == (250, b"2.0.0 24 octets received")
        client.send(b"BDAT 8 LAST\r\n.\r\nend\r\n")
        assert [client.getreply()[0] for _ in range(2)] == [250, 250]
    finally:
        client.quit()
    assert body_of(messages(srv, "bob")[-1]) == b".a\r\n.\r\nend\r\n"  # BDAT data is not dot-stuffed


@pytest.mark.parametrize("cut", ["data", "bdat"])
def test_client_vanishing_mid_message_stores_nothing(lmtp_server: RunningServer, cut: str) -> None:
    srv = lmtp_server
    before = {u: len(messages(srv, u)) for u in ("alice", "bob")}
    sock = socket.create_connection(("127.0.0.1", lmtp_port(srv)), timeout=30)
    reader = sock.makefile("rb")
    reader.readline()
    sock.sendall(b"LHLO c\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n")
    while not reader.readline().startswith(b"250 "):
        pass
    for _ in range(3):
        assert reader.readline()[:3] == b"250"
    if cut == "data":
        sock.sendall(b"DATA\r\n")
        assert reader.readline()[:3] == b"354"
        sock.sendall(b"Subject: cut short\r\n\r\n" + b"partial line\r\n" * 1000 + b"no end")
    else:
        sock.sendall(b"BDAT 100000 LAST\r\nSubject: cut short\r\n\r\n" + b"partial" * 100)
    time.sleep(0.2)
    sock.close()
    time.sleep(0.5)
    assert {u: len(messages(srv, u)) for u in ("alice", "bob")} == before
    client = connect(srv)  # the server carries on
    try:
        client.mail("s@remote.test")
        client.rcpt("alice@example.org")
        assert send_data(client, b"Subject: after the cut\r\n\r\nok\r\n", 1)[0][0] == 250
    finally:
        client.quit()
    assert not any(b"cut short" in m for m in messages(srv, "alice"))


def _idle_until_exists(srv: RunningServer, user: str, deliver: object) -> tuple[int, float]:
    """IDLE as ``user``; call ``deliver()``; return (EXISTS count, seconds from its return to the line)."""
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    reader = sock.makefile("rb")
    reader.readline()
    sock.sendall(f'a LOGIN "{user}" {srv.users[user]}\r\nb SELECT INBOX\r\n'.encode())
    exists = 0
    while True:
        line = reader.readline()
        if line.endswith(b" EXISTS\r\n"):
            exists = int(line.split()[1])
        if line.startswith(b"b "):
            assert line.startswith(b"b OK"), line
            break
    sock.sendall(b"c IDLE\r\n")
    assert reader.readline().startswith(b"+ ")
    assert callable(deliver)
    deliver()
    done = time.monotonic()
    line = reader.readline()
    latency = time.monotonic() - done
    sock.sendall(b"DONE\r\nd LOGOUT\r\n")
    sock.close()
    assert line.endswith(b" EXISTS\r\n"), line
    assert int(line.split()[1]) == exists + 1
    return exists + 1, latency


def test_idle_hears_of_an_lmtp_delivery_at_once(lmtp_server: RunningServer) -> None:
    """For every user (on a two-worker server, owned by the accepting worker or by the other one)."""
    srv = lmtp_server
    for user in ("alice", "bob", "carol", "dave@example.org"):
        address = user if "@" in user else f"{user}@example.org"

        def deliver(address: str = address) -> None:
            client = connect(srv)
            try:
                client.mail("s@remote.test")
                client.rcpt(address)
                assert send_data(client, b"Subject: idle\r\n\r\nidle\r\n", 1)[0][0] == 250
            finally:
                client.close()

        _, latency = _idle_until_exists(srv, user, deliver)
        assert latency < 1.0, f"{user}: EXISTS {latency:.3f} s after the 250"  # no watcher poll involved


def _fts_docs(srv: RunningServer, user: str) -> set[int]:
    """UIDs the user's INBOX full-text index has a document for (read-only, beside the server)."""
    import sqlite3

    path = srv.data_dir / "mail" / user / "imapd-fts" / "1.sqlite"
    if not path.exists():
        return set()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {uid for (uid,) in conn.execute("SELECT uid FROM docs WHERE ok=1")}
    except sqlite3.OperationalError:  # not created yet
        return set()
    finally:
        conn.close()


def _deliver_word(srv: RunningServer, user: str, word: str) -> int:
    client = connect(srv)
    try:
        client.mail("s@remote.test")
        client.rcpt(f"{user}@example.org")
        reply = send_data(client, f"Subject: fts\r\n\r\nbody with {word}\r\n".encode(), 1)[0]
    finally:
        client.close()
    assert reply[0] == 250, reply
    return int(reply[1].split(b"UID ")[1].rstrip(b")"))


def test_delivery_is_indexed_after_the_250_and_searchable_at_once(lmtp_server: RunningServer) -> None:
    """The 250 does not wait for the full-text index: the queued copy reaches the index shortly after
    (textbackfill.FLUSH_DELAY, with no SEARCH asking for it), and a SEARCH right after the 250 finds the
    message all the same (scanning what the index lacks)."""
    srv = lmtp_server
    for user in ("alice", "carol"):  # owned by different workers on a two-worker server
        uid = _deliver_word(srv, user, f"wombatword{user}")
        deadline = time.monotonic() + 10
        while uid not in _fts_docs(srv, user):
            assert time.monotonic() < deadline, f"{user}: UID {uid} never reached the full-text index"
            time.sleep(0.05)
        word = f"quokkaword{user}"
        uid = _deliver_word(srv, user, word)
        conn = imap(srv, user)
        try:
            conn.select("INBOX", readonly=True)
            typ, data = conn.uid("SEARCH", "BODY", word)
            assert typ == "OK" and data[0].split() == [str(uid).encode()]
        finally:
            conn.logout()


def test_imapd_deliver_goes_over_lmtp(lmtp_server: RunningServer) -> None:
    srv = lmtp_server
    message = b"Subject: from imapd deliver\n\nbare LF\n"
    proc = imapd_cli("deliver", "bob", "-f", "root@host.test", "-v", "--data-dir", str(srv.data_dir), stdin=message)
    uid = int(proc.stdout.decode().strip())
    stored = messages(srv, "bob")[-1]
    assert stored.startswith(b"Return-Path: <root@host.test>\r\nDelivered-To: bob\r\n")  # the server wrote it
    assert stored.endswith(b"Subject: from imapd deliver\r\n\r\nbare LF\r\n")
    assert len(messages(srv, "bob")) >= uid
    imapd_cli("deliver", "bob", "--direct", "--data-dir", str(srv.data_dir), stdin=message)
    assert messages(srv, "bob")[-1] == b"Subject: from imapd deliver\r\n\r\nbare LF\r\n"
    assert imapd_cli("deliver", "nobody", "--data-dir", str(srv.data_dir), stdin=message,
                     check=False).returncode == 67


def test_imapd_deliver_without_a_server(tmp_path: Path) -> None:
    """A stale run/lmtp (nothing listens there): the message is written directly."""
    data = tmp_path / "data"
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data), stdin="pw")
    (data / "run").mkdir(exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (data / "run" / "lmtp").write_text(f"127.0.0.1:{port}\n")
    proc = imapd_cli("deliver", "alice", "-v", "--data-dir", str(data), stdin=b"Subject: x\r\n\r\ny\r\n")
    assert proc.stdout == b"1\n"
    assert os.listdir(data / "mail" / "alice" / "cur")


def test_reload_keeps_the_lmtp_socket(tmp_path: Path) -> None:
    """``imapd reload``: a transaction on a connection of the old generation still completes, and new
    connections are served by the new workers on the same socket."""
    srv = _start(tmp_path, 2)
    try:
        before = len(messages(srv, "alice"))
        old = connect(srv)
        old.mail("s@remote.test")
        old.rcpt("alice@example.org")
        assert send_data(old, b"Subject: before reload\r\n\r\n1\r\n", 1)[0][0] == 250
        imapd_cli("reload", "--data-dir", str(srv.data_dir))
        deadline = time.monotonic() + 30
        while "generation 2 (2 workers) serving" not in srv.log():
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.1)
        old.mail("s@remote.test")
        old.rcpt("bob@example.org")
        old.rcpt("alice@example.org")
        assert [c for c, _ in send_data(old, b"Subject: during reload\r\n\r\n2\r\n", 2)] == [250, 250]
        old.close()
        new = connect(srv)
        try:
            new.mail("s@remote.test")
            new.rcpt("alice@example.org")
            assert send_data(new, b"Subject: after reload\r\n\r\n3\r\n", 1)[0][0] == 250
        finally:
            new.quit()
        got = messages(srv, "alice")
        assert len(got) == before + 3
        assert [m.rsplit(b"Subject: ", 1)[1].split(b"\r\n")[0] for m in got[-3:]] == [
            b"before reload", b"during reload", b"after reload"]
    finally:
        stop_server(srv)


def test_unix_socket_with_workers(tmp_path: Path) -> None:
    """lmtp.listen as a socket path: bound by the supervisor, named in run/lmtp, removed at the end."""
    path = tmp_path / "lmtp.sock"
    srv = _start(tmp_path, 2, "-o", f"lmtp.listen={path}")
    try:
        assert (srv.data_dir / "run" / "lmtp").read_text().strip() == str(path)
        with smtplib.LMTP(str(path), timeout=30) as client:
            client.ehlo_or_helo_if_needed()
            client.mail("s@remote.test")
            client.rcpt("alice@example.org")
            client.rcpt("carol@example.org")
            assert [c for c, _ in send_data(client, b"Subject: over a socket\r\n\r\nx\r\n", 2)] == [250, 250]
        for user in ("alice", "carol"):
            assert b"Subject: over a socket" in messages(srv, user)[-1]
    finally:
        stop_server(srv)
    assert not path.exists()
    assert not (srv.data_dir / "run" / "lmtp").exists()


def test_an_unreadable_index_fails_only_its_recipient(lmtp_server: RunningServer) -> None:
    """Not a store error but SQLite's (the index is garbage): 451 for that recipient, the others stored."""
    srv = lmtp_server
    user = f"erin{lmtp_port(srv)}"
    imapd_cli("user", "add", user, "--password-stdin", "--data-dir", str(srv.data_dir), stdin="pw")
    index = srv.data_dir / "mail" / user / "imapd-index.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    index.write_bytes(b"this is not an SQLite database" * 100)
    client = connect(srv)
    try:
        client.mail("s@remote.test")
        client.rcpt(f"{user}@example.org")
        client.rcpt("alice@example.org")
        replies = send_data(client, b"Subject: broken index\r\n\r\nx\r\n", 2)
        assert client.noop()[0] == 250
    finally:
        client.quit()
    assert replies[0][0] == 451 and replies[0][1].startswith(b"4.3.0")
    assert replies[1][0] == 250
    assert b"Subject: broken index" in messages(srv, "alice")[-1]


def test_over_quota_gets_its_own_reply(lmtp_server: RunningServer) -> None:
    """carol at her MESSAGE limit: 552 5.2.2 for her copy, alice's stored (the QUOTA store error)."""
    srv = lmtp_server
    count = len(messages(srv, "carol"))
    imapd_cli("user", "quota", "carol", "--messages", str(count), "--data-dir", str(srv.data_dir))
    try:
        client = connect(srv)
        try:
            client.mail("s@remote.test")
            client.rcpt("alice@example.org")
            client.rcpt("carol@example.org")
            replies = send_data(client, b"Subject: quota\r\n\r\nx\r\n", 2)
        finally:
            client.quit()
        proc = imapd_cli("deliver", "carol", "--data-dir", str(srv.data_dir), stdin=b"Subject: q\r\n\r\n",
                         check=False)
        bounced = imapd_cli("deliver", "carol", "--over-quota", "bounce", "--data-dir", str(srv.data_dir),
                            stdin=b"Subject: q\r\n\r\n", check=False)
    finally:
        imapd_cli("user", "quota", "carol", "--messages", "default", "--data-dir", str(srv.data_dir))
    assert replies[0][0] == 250
    assert replies[1][0] == 552 and replies[1][1].startswith(b"5.2.2 <carol@example.org>")
    assert (proc.returncode, bounced.returncode) == (75, 77)  # imapd deliver, through the server
    assert len(messages(srv, "carol")) == count


def test_lmtp_runs_the_recipients_sieve_script(lmtp_server: RunningServer) -> None:
    """The owner (or the accepting worker) runs each recipient's active script: fileinto :create with a
    flag for one user, reject for another (its own 550 5.7.1), a plain keep for a third."""
    from imapd.sieve.scripts import ScriptStore

    bob = ScriptStore(str(lmtp_server.data_dir / "mail" / "bob"))
    bob.put("filters", 'require ["fileinto", "mailbox", "imap4flags"];\n'
                       'if header :contains "subject" "[list]" { fileinto :create :flags "\\\\Flagged" "Lists"; stop; }\n')
    bob.set_active("filters")
    carol = ScriptStore(str(lmtp_server.data_dir / "mail" / "carol"))
    carol.put("no", 'require "reject";\nif header :contains "subject" "[list]" { reject "not for me"; }\n')
    carol.set_active("no")
    before = len(messages(lmtp_server, "alice"))
    client = connect(lmtp_server)
    try:
        client.mail("sender@example.net")
        for rcpt in ("bob@example.org", "carol@example.org", "alice@example.org"):
            assert client.rcpt(rcpt)[0] == 250
        replies = send_data(client, b"From: s@example.net\r\nSubject: [list] news\r\n\r\nhello\r\n", 3)
    finally:
        client.quit()
    assert replies[0][0] == 250 and replies[2][0] == 250, replies
    assert replies[1][0] == 550 and replies[1][1].startswith(b"5.7.1"), replies
    assert b"not for me" in replies[1][1]
    conn = imap(lmtp_server, "bob")
    try:
        assert conn.select("Lists", readonly=True)[0] == "OK"
        _, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        last = [item for item in data if isinstance(item, tuple)][-1]
        assert b"\\Flagged" in last[0] and b"[list] news" in last[1]
    finally:
        conn.logout()
    assert len(messages(lmtp_server, "alice")) == before + 1
    assert not [m for m in messages(lmtp_server, "carol") if b"[list] news" in m]
