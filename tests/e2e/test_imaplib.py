"""End-to-end with Python's imaplib against a real server process on a loopback port."""

from __future__ import annotations

import imaplib
import re
import socket
import time
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from tests.conftest import RunningServer
from tests.rawimap import exchange, open_session


def make_message(subject: str, body: str = "Hello there.\n", sender: str = "carol@example.org") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "alice@example.org"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<{abs(hash(subject))}@example.org>"
    msg.set_content(body)
    return msg.as_bytes(policy=SMTP)


def connect(server: RunningServer, user: str = "alice") -> imaplib.IMAP4:
    imap = imaplib.IMAP4(server.host, server.port, timeout=15)
    imap.login(user, server.users[user])
    return imap


def raw_session(server: RunningServer) -> socket.socket:
    return open_session(server.host, server.port)


def test_greeting_advertises_capabilities(server: RunningServer) -> None:
    imap = imaplib.IMAP4(server.host, server.port, timeout=15)
    try:
        caps = set(imap.capabilities)
        for cap in ("IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "ENABLE", "ID", "NAMESPACE", "LITERAL+",
                    "SPECIAL-USE", "X-STATE", "AUTH=PLAIN", "SASL-IR", "UNSELECT", "CHILDREN"):
            assert cap in caps
    finally:
        imap.logout()


def test_login_success_and_failure(server: RunningServer) -> None:
    imap = imaplib.IMAP4(server.host, server.port, timeout=15)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login("alice", "wrong")
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login("nobody", "wrong")
    typ, data = imap.login("alice", "secret1")
    assert typ == "OK"
    assert b"CAPABILITY" in data[0]
    imap.logout()


def test_authenticate_plain_with_and_without_initial_response(server: RunningServer) -> None:
    imap = imaplib.IMAP4(server.host, server.port, timeout=15)
    typ, _ = imap.authenticate("PLAIN", lambda _: b"\0alice\0secret1")
    assert typ == "OK"
    imap.logout()
    sock = raw_session(server)
    reply = exchange(sock, b"a1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldDE=\r\n", b"a1 ")
    assert b"a1 OK" in reply
    sock.close()


def test_special_use_folders_for_new_users(server: RunningServer) -> None:
    imap = connect(server)
    typ, data = imap.list()
    assert typ == "OK"
    listing = b"\n".join(data)
    for name, attr in [(b"Sent", rb"\Sent"), (b"Drafts", rb"\Drafts"), (b"Trash", rb"\Trash"),
                       (b"Junk", rb"\Junk"), (b"Archive", rb"\Archive")]:
        assert re.search(rb"\(.*" + re.escape(attr) + rb".*\) \"/\" \"?" + name, listing), listing
    assert b"INBOX" in listing
    imap.logout()


def test_append_select_fetch_store_search(server: RunningServer) -> None:
    imap = connect(server)
    imap.create("Work")
    for i in range(3):
        typ, data = imap.append("Work", "(\\Flagged)" if i == 1 else None, None, make_message(f"work {i}"))
        assert typ == "OK"
        assert b"APPENDUID" in data[0]
    typ, data = imap.select("Work")
    assert typ == "OK" and data == [b"3"]
    typ, data = imap.fetch("1:3", "(FLAGS RFC822.SIZE ENVELOPE)")
    assert typ == "OK"
    joined = b" ".join(d if isinstance(d, bytes) else d[0] for d in data)
    assert b"work 1" in joined and b"\\Flagged" in joined
    typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    assert b"Subject: work 0" in data[0][1]
    typ, data = imap.store("2", "+FLAGS", "(\\Seen custom1)")
    assert typ == "OK" and b"custom1" in data[0]
    typ, data = imap.search(None, "FLAGGED")
    assert data == [b"2"]
    typ, data = imap.search(None, "SUBJECT", '"work 2"')
    assert data == [b"3"]
    typ, data = imap.search(None, "KEYWORD", "custom1")
    assert data == [b"2"]
    imap.logout()


def test_body_fetch_sets_seen_unless_peek(server: RunningServer) -> None:
    imap = connect(server)
    imap.create("SeenTest")
    imap.append("SeenTest", None, None, make_message("peek"))
    imap.select("SeenTest")
    imap.fetch("1", "(BODY.PEEK[])")
    _, data = imap.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]
    _, data = imap.fetch("1", "(BODY[TEXT])")
    _, data = imap.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]
    imap.logout()


def test_copy_move_expunge_uidplus(server: RunningServer) -> None:
    imap = connect(server)
    imap.create("Src")
    imap.create("Dst")
    for i in range(4):
        imap.append("Src", None, None, make_message(f"m{i}"))
    imap.select("Src")
    typ, data = imap.copy("1:2", "Dst")
    assert typ == "OK" and b"COPYUID" in data[0]
    typ, data = imap.uid("MOVE", "3", "Dst")
    assert typ == "OK"
    assert imap.response("EXPUNGE") == ("EXPUNGE", [b"3"])  # MOVE reports its expunge (RFC 6851)
    typ, data = imap.status("Dst", "(MESSAGES)")
    assert b"MESSAGES 3" in data[0]
    typ, data = imap.copy("1", "DoesNotExist")
    assert typ == "NO"
    imap.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = imap.expunge()
    assert typ == "OK" and data == [b"1"]
    typ, data = imap.search(None, "ALL")
    assert data == [b"1 2"]
    imap.logout()


def test_list_status_rename_delete(server: RunningServer) -> None:
    imap = connect(server)
    assert imap.create("Projects/Alpha")[0] == "OK"
    _, data = imap.list('""', "Projects/%")
    assert any(b"Projects/Alpha" in d for d in data)
    _, data = imap.list('""', "%")
    assert any(b"\\HasChildren" in d and b"Projects" in d for d in data)
    assert imap.rename("Projects/Alpha", "Projects/Beta")[0] == "OK"
    typ, data = imap.status("Projects/Beta", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
    assert typ == "OK" and b"UIDVALIDITY" in data[0]
    assert imap.delete("Projects/Beta")[0] == "OK"
    typ, data = imap.select("Projects/Beta")
    assert typ == "NO" and b"NONEXISTENT" in data[0]
    typ, data = imap.create("INBOX")
    assert typ == "NO"
    imap.logout()


def test_unicode_mailbox_names_roundtrip(server: RunningServer) -> None:
    imap = connect(server)
    assert imap.create("Entw&APw-rfe")[0] == "OK"
    _, data = imap.list('""', "Entw*")
    assert any(b"Entw&APw-rfe" in d for d in data)
    # Valid syntax that is not modified UTF-7: NO (no mailbox can have that name), not BAD (issue 17).
    typ, data = imap.create("Bad&Jjo")
    assert typ == "NO" and b"[CANNOT]" in data[0] and b"modified UTF-7" in data[0]
    imap.logout()


def test_bad_commands_get_tagged_bad(server: RunningServer) -> None:
    sock = raw_session(server)
    assert b"a1 BAD" in exchange(sock, b"a1 FROBNICATE\r\n", b"a1 ")
    assert b"a2 BAD" in exchange(sock, b"a2 SELECT INBOX\r\n", b"a2 ")  # not authenticated
    assert b"a3 BAD" in exchange(sock, b'a3 LOGIN "unterminated\r\n', b"a3 ")
    assert b"a4 OK" in exchange(sock, b"a4 NOOP\r\n", b"a4 ")
    reply = exchange(sock, b"a5 LOGIN alice {7}\r\n", b"+")
    assert reply.startswith(b"+")
    assert b"a5 OK" in exchange(sock, b"secret1\r\n", b"a5 ")
    assert b"a6 BAD" in exchange(sock, b"a6 FETCH 1 FLAGS\r\n", b"a6 ")  # no mailbox selected
    sock.close()


def test_idle_sees_other_sessions_changes(server: RunningServer) -> None:
    watcher = raw_session(server)
    exchange(watcher, b"w1 LOGIN bob secret2\r\n", b"w1 ")
    exchange(watcher, b"w2 SELECT INBOX\r\n", b"w2 ")
    assert exchange(watcher, b"w3 IDLE\r\n", b"+ ").startswith(b"+")
    other = connect(server, "bob")
    other.append("INBOX", None, None, make_message("during idle"))
    pushed = b""
    deadline = time.monotonic() + 10
    while b"EXISTS" not in pushed and time.monotonic() < deadline:
        pushed += watcher.recv(4096)
    assert re.search(rb"\* \d+ EXISTS", pushed)
    other.select("INBOX")
    other.store("1", "+FLAGS", "(\\Deleted)")
    other.expunge()
    pushed = b""
    deadline = time.monotonic() + 10
    while b"EXPUNGE" not in pushed and time.monotonic() < deadline:
        pushed += watcher.recv(4096)
    assert b"* 1 EXPUNGE" in pushed
    done = exchange(watcher, b"DONE\r\n", b"w3 ")
    assert b"w3 OK" in done
    other.logout()
    watcher.close()


def test_expunge_waits_during_fetch_for_other_session(server: RunningServer) -> None:
    a = connect(server, "bob")
    a.create("Shared")
    for i in range(3):
        a.append("Shared", None, None, make_message(f"s{i}"))
    a.select("Shared")
    b = connect(server, "bob")
    b.select("Shared")
    b.store("1", "+FLAGS", "(\\Deleted)")
    b.expunge()
    # A FETCH must not carry the EXPUNGE (RFC 3501 7.4.1); a NOOP then does.
    # Like Dovecot, the gone message is left out and the tagged reply says so (RFC 2180 4.1.2).
    typ, data = a.fetch("1:3", "(FLAGS)")
    assert typ == "NO" and b"EXPUNGEISSUED" in data[0]
    fetched = a.response("FETCH")[1]
    assert [d.split(b" ")[0] for d in fetched] == [b"2", b"3"]
    assert "EXPUNGE" not in a.untagged_responses
    a.noop()
    assert a.response("EXPUNGE") == ("EXPUNGE", [b"1"])
    a.logout()
    b.logout()


def test_garbage_during_idle_ends_it_with_bad(server: RunningServer) -> None:
    sock = raw_session(server)
    exchange(sock, b"i1 LOGIN bob secret2\r\n", b"i1 ")
    exchange(sock, b"i2 SELECT INBOX\r\n", b"i2 ")
    assert exchange(sock, b"i3 IDLE\r\n", b"+ ").startswith(b"+")
    assert b"i3 BAD" in exchange(sock, b"NOT DONE\r\n", b"i3 ")
    other = connect(server, "bob")
    other.append("INBOX", None, None, make_message("after idle"))
    other.logout()
    sock.settimeout(1.0)
    with pytest.raises(TimeoutError):
        sock.recv(4096)  # no longer idling: nothing is pushed until the next command
    sock.settimeout(10)
    assert re.search(rb"\* \d+ EXISTS", exchange(sock, b"i4 NOOP\r\n", b"i4 "))
    sock.close()


def test_literal_does_not_wait_for_delayed_ack(server: RunningServer) -> None:
    """imaplib sends a literal and its CRLF in two writes; without an immediate ACK from us, Nagle holds
    the CRLF for Linux's 40 ms delayed ACK, so every APPEND took over 40 ms."""
    imap = connect(server)
    message = make_message("quickack", "x" * 3000)
    times = []
    for _ in range(9):
        start = time.perf_counter()
        typ, _data = imap.append("INBOX", None, None, message)
        times.append(time.perf_counter() - start)
        assert typ == "OK"
    imap.logout()
    assert sorted(times)[4] < 0.030, times
