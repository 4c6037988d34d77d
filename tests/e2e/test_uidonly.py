"""RFC 9586 UIDONLY against a real server: the RFC's examples as transcripts, updates from another
session, imaplib's generic command path, and X-STATE tokens without a sequence map."""

from __future__ import annotations

import imaplib
import re
import time
from pathlib import Path

import pytest

from statecodec import KeyRing
from statecodec import decode as decode_token
from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.e2e.test_workers import _supervisor_ready
from tests.rawimap import RawIMAP


def msg(n: int) -> bytes:
    return f"From: a@example.org\r\nTo: alice@example.org\r\nSubject: m{n}\r\n\r\nbody {n}\r\n".encode()


def login(server: RunningServer) -> RawIMAP:
    c = RawIMAP(server.host, server.port)
    c.ok("LOGIN alice secret1")
    return c


def fill(server: RunningServer, box: str, n: int) -> None:
    c = login(server)
    c.ok(f"CREATE {box}")
    for i in range(n):
        data = msg(i)
        c.ok(b"APPEND " + box.encode() + b" {%d+}\r\n" % len(data) + data)
    c.close()


@pytest.fixture
def box(server: RunningServer, request: pytest.FixtureRequest) -> str:
    name = "U" + re.sub(r"\W", "", request.node.name)[-20:]
    fill(server, name, 6)
    return name


def test_enable_and_message_numbers_refused(server: RunningServer, box: str) -> None:
    c = login(server)
    assert b"UIDONLY" in c.ok("CAPABILITY")[0].split()
    assert c.ok("ENABLE UIDONLY") == [b"* ENABLED UIDONLY"]
    c.ok(f"SELECT {box}")
    for command in ("FETCH 1:* (FLAGS)", "STORE 1 +FLAGS (\\Seen)", "COPY 1 INBOX", "MOVE 1 INBOX", "SEARCH ALL",
                    "SORT (DATE) UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL", "UID SEARCH 1:3",
                    "UID SORT (ARRIVAL) UTF-8 2", "UID THREAD REFS UTF-8 NOT 1"):
        untagged, tagged = c.command(command)
        assert re.fullmatch(rb"t\d+ BAD \[UIDREQUIRED\] .+", tagged), (command, tagged)
        assert untagged == []
    # the UID forms work, and FETCH data comes as UIDFETCH numbered by UID, without a UID item
    assert c.ok("UID FETCH 2:3 (FLAGS)") == [b"* 2 UIDFETCH (FLAGS (\\Recent))", b"* 3 UIDFETCH (FLAGS (\\Recent))"]
    assert c.ok("UID FETCH 4 (UID RFC822.SIZE)") == [b"* 4 UIDFETCH (RFC822.SIZE %d)" % len(msg(3))]
    assert c.ok("UID SEARCH UID 2:* NOT UID 5") == [b"* SEARCH 2 3 4 6"]
    assert c.ok("UID STORE 1:2 +FLAGS.SILENT (\\Deleted)") == []
    assert c.ok("UID STORE 3 +FLAGS (\\Flagged)") == [b"* 3 UIDFETCH (FLAGS (\\Flagged \\Recent))"]
    # a FETCH that sets \Seen reports it as UIDFETCH too
    lines = c.ok("UID FETCH 6 (BODY[TEXT])")
    assert lines == [b"* 6 UIDFETCH (BODY[TEXT] {8}\r\nbody 5\r\n FLAGS (\\Seen \\Recent))"]
    # RFC 9586: expunges are VANISHED, never EXPUNGE (QRESYNC is not enabled)
    assert c.ok("EXPUNGE") == [b"* VANISHED 1:2"]
    assert c.ok("UID EXPUNGE 1:*") == []
    c.ok("LOGOUT")
    c.close()


def test_updates_from_another_session_use_uids(server: RunningServer, box: str) -> None:
    a = login(server)
    a.ok("ENABLE UIDONLY")
    a.ok(f"SELECT {box}")
    b = login(server)
    b.ok(f"SELECT {box}")
    b.ok("STORE 2 +FLAGS (\\Answered)")
    b.ok("STORE 5 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    data = msg(99)
    b.ok(b"APPEND " + box.encode() + b" {%d+}\r\n" % len(data) + data)
    lines = a.ok("NOOP")
    assert b"* VANISHED 5" in lines
    assert b"* 2 UIDFETCH (FLAGS (\\Answered \\Recent))" in lines
    assert b"* 6 EXISTS" in lines  # 6 - 1 + 1
    assert not any(b" FETCH " in ln or b"EXPUNGE" in ln for ln in lines)
    # IDLE pushes follow the same rules
    a.sock.sendall(b"i1 IDLE\r\n")
    assert a.readline().startswith(b"+ ")
    b.ok("UID STORE 3 +FLAGS (\\Flagged)")
    assert a.read_until(rb"UIDFETCH")[-1] == b"* 3 UIDFETCH (FLAGS (\\Flagged \\Recent))"
    a.sock.sendall(b"DONE\r\n")
    a.read_until(rb"^i1 OK")
    a.close()
    b.close()


def test_imaplib_uid_commands_under_uidonly(server: RunningServer, box: str) -> None:
    imap = imaplib.IMAP4(server.host, server.port)
    imap.login("alice", "secret1")
    assert "UIDONLY" in imap.capabilities
    assert imap.enable("UIDONLY")[0] == "OK"
    imap.select(box)
    with pytest.raises(imaplib.IMAP4.error, match=r"BAD.*\[UIDREQUIRED\]"):
        imap.fetch("1", "(FLAGS)")
    typ, data = imap.uid("SEARCH", "ALL")
    assert typ == "OK" and data == [b"1 2 3 4 5 6"]
    typ, data = imap.uid("FETCH", "5:6", "(RFC822.SIZE)")
    assert typ == "OK" and data == [None]
    # imaplib files UIDFETCH data under its own name; its FETCH helpers see nothing
    assert imap.response("UIDFETCH")[1] == [b"5 (RFC822.SIZE %d)" % len(msg(4)), b"6 (RFC822.SIZE %d)" % len(msg(5))]
    assert imap.uid("STORE", "1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    typ, _ = imap.expunge()
    assert typ == "OK" and imap.response("VANISHED")[1] == [b"1"]
    imap.logout()


def _token(lines: list[bytes]) -> str:
    return next(ln.split()[2].decode() for ln in lines if ln.startswith(b"* X-STATE "))


def test_xstate_token_without_sequence_map_restores_uidonly(server: RunningServer, box: str) -> None:
    a = login(server)
    a.ok("ENABLE UIDONLY")
    a.ok(f"SELECT {box}")
    a.ok("UID STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    a.ok("UID EXPUNGE 2,4")  # a gappy UID list: 1 3 5 6
    token = _token(a.ok("X-STATE SAVE"))
    a.close()
    state = decode_token(token, KeyRing.load(server.data_dir / "xstate.keys"), max_age=3600)
    assert "UIDONLY" in state.enabled
    assert state.mailbox is not None and state.mailbox.known_uids.data == b""  # type: ignore[union-attr]
    assert state.mailbox.message_count == 4

    b = login(server)
    b.ok(f"SELECT {box}")
    b.ok("UID STORE 3 +FLAGS.SILENT (\\Deleted)")
    b.ok("UID STORE 5 +FLAGS.SILENT (\\Flagged)")
    b.ok("UID EXPUNGE 3")
    b.close()

    c = RawIMAP(server.host, server.port)
    untagged, tagged = c.command(f"X-STATE RESTORE {token}")
    assert b"OK [READ-WRITE]" in tagged, (untagged, tagged)
    assert b"* VANISHED 3" in untagged
    assert b"* 3 EXISTS" in untagged
    assert b"* 5 UIDFETCH (FLAGS (\\Flagged \\Recent))" in untagged  # a restored session keeps its \\Recent
    assert not any(b" FETCH " in ln or b"EXPUNGE" in ln for ln in untagged)
    # the restored session is UIDONLY still
    _, tagged = c.command("FETCH 1 (FLAGS)")
    assert b"BAD [UIDREQUIRED]" in tagged
    assert c.ok("UID FETCH 1:* (FLAGS)") == [b"* 1 UIDFETCH (FLAGS (\\Recent))",
                                            b"* 5 UIDFETCH (FLAGS (\\Flagged \\Recent))",
                                            b"* 6 UIDFETCH (FLAGS (\\Recent))"]
    c.close()


def test_reload_hand_off_keeps_uidonly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    imapd_cli("user", "add", "dora", "--password-stdin", "--data-dir", str(data), stdin="pw-dora")
    srv = start_server(data, "-o", "server.workers=2")
    try:
        _supervisor_ready(srv, 2)
        a = RawIMAP(srv.host, srv.port)
        a.ok("LOGIN dora pw-dora")
        a.ok("ENABLE UIDONLY")
        for i in range(3):
            data_ = msg(i)
            a.ok(b"APPEND INBOX {%d+}\r\n" % len(data_) + data_)
        a.ok("SELECT INBOX")
        a.ok("UID STORE 1 +FLAGS.SILENT (\\Deleted)")
        imapd_cli("reload", "--data-dir", str(data))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "finished its hand-over" not in srv.log():
            time.sleep(0.05)
        assert "finished its hand-over" in srv.log(), srv.log()
        _, tagged = a.command("FETCH 1 (FLAGS)")  # served by the new generation: still UIDONLY
        assert b"BAD [UIDREQUIRED]" in tagged
        assert a.ok("EXPUNGE") == [b"* VANISHED 1"]
        assert a.ok("UID FETCH 2:* (FLAGS)") == [b"* 2 UIDFETCH (FLAGS (\\Recent))", b"* 3 UIDFETCH (FLAGS (\\Recent))"]
        a.close()
    finally:
        stop_server(srv)


def test_fast_paths_answer_uidfetch(server: RunningServer, box: str) -> None:
    """The FLAGS batch and the whole-message file path (sendfile) follow the UIDFETCH rule too."""
    c = login(server)
    big = msg(7)[:-2] + b"x" * 100_000 + b"\r\n"
    c.ok(b"APPEND " + box.encode() + b" {%d+}\r\n" % len(big) + big)  # UID 7, over the sendfile threshold
    c.ok("ENABLE UIDONLY")
    c.ok(f"EXAMINE {box}")
    assert c.ok("UID FETCH 1:3 (UID)") == [b"* 1 UIDFETCH (UID 1)", b"* 2 UIDFETCH (UID 2)", b"* 3 UIDFETCH (UID 3)"]
    assert c.ok("UID FETCH 5:* (FLAGS UID)") == [b"* 5 UIDFETCH (FLAGS (\\Recent))",
                                               b"* 6 UIDFETCH (FLAGS (\\Recent))", b"* 7 UIDFETCH (FLAGS (\\Recent))"]
    lines = c.ok("UID FETCH 7 (BODY.PEEK[])")
    assert lines == [b"* 7 UIDFETCH (BODY[] {%d}\r\n" % len(big) + big + b")"]
    lines = c.ok("UID FETCH 1 (BODY.PEEK[] UID)")
    assert lines == [b"* 1 UIDFETCH (BODY[] {%d}\r\n" % len(msg(0)) + msg(0) + b")"]
    c.close()


def test_uidonly_token_restores_after_the_history_was_trimmed(tmp_path: Path) -> None:
    """A fingerprinted sequence map needs the expunge history; a UIDONLY token does not: with the history
    trimmed to one entry, what vanished is every UID below the saved UIDNEXT that is gone."""
    data = tmp_path / "data"
    imapd_cli("user", "add", "eve", "--password-stdin", "--data-dir", str(data), stdin="pw-eve")
    srv = start_server(data, "-o", "store.expunge_history=1")
    try:
        a = RawIMAP(srv.host, srv.port)
        a.ok("LOGIN eve pw-eve")
        for i in range(6):
            data_ = msg(i)
            a.ok(b"APPEND INBOX {%d+}\r\n" % len(data_) + data_)
        a.ok("ENABLE UIDONLY")
        a.ok("SELECT INBOX")
        token = _token(a.ok("X-STATE SAVE"))
        a.close()
        b = RawIMAP(srv.host, srv.port)
        b.ok("LOGIN eve pw-eve")
        b.ok("SELECT INBOX")
        for uid in (2, 4, 5):  # three expunges, each its own MODSEQ: the history keeps only the last
            b.ok(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
            b.ok(f"UID EXPUNGE {uid}")
        b.close()
        c = RawIMAP(srv.host, srv.port)
        untagged, tagged = c.command(f"X-STATE RESTORE {token}")
        assert b"OK [READ-WRITE]" in tagged, (untagged, tagged)
        assert b"* VANISHED 2,4:5" in untagged and b"* 3 EXISTS" in untagged
        c.close()
    finally:
        stop_server(srv)
