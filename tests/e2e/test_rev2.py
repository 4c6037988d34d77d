"""IMAP4rev2 (RFC 9051) end to end: Python's imaplib (which speaks IMAP4rev1, so ENABLE and the rest go
through its generic commands), and an enabled IMAP4rev2 surviving X-STATE SAVE / RESTORE and the hand-off
of every session to new workers at ``imapd reload``."""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapd.server.handoff import owner_slot
from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.e2e.test_workers import _server_socket_pid, _worker_pids
from tests.rawimap import RawIMAP


def _message(subject: str) -> bytes:
    return f"From: a@example.org\r\nSubject: {subject}\r\n\r\nbody {subject}\r\n".encode()


def _fill(server: RunningServer, mailbox: str, n: int, user: str = "alice") -> None:
    c = imaplib.IMAP4(server.host, server.port)
    c.login(user, server.users[user])
    c.create(mailbox)
    for i in range(n):
        c.append(mailbox, None, None, _message(f"{mailbox} {i}"))
    c.logout()


def _deliver(server: RunningServer, mailbox: str, subject: str, user: str = "alice") -> None:
    c = imaplib.IMAP4(server.host, server.port)
    c.login(user, server.users[user])
    c.append(mailbox, None, None, _message(subject))
    c.logout()


def _token(lines: list[bytes]) -> str:
    for line in lines:
        if line.startswith(b"* X-STATE "):
            return line.split()[2].decode()
    raise AssertionError(f"no token in {lines!r}")


def _assert_rev2(c: RawIMAP, exists: int) -> None:
    """What only an IMAP4rev2 session does, checked on an open session that has a mailbox selected."""
    untagged, _ = c.command("SEARCH ALL", "s1")
    assert untagged == [b'* ESEARCH (TAG "s1") ALL 1:%d' % exists], untagged
    _, tagged = c.command("STATUS INBOX (RECENT)")
    assert b" BAD " in tagged, tagged
    untagged, tagged = c.command("SEARCH NEW")
    assert b" BAD " in tagged, tagged
    flags = c.ok("FETCH 1:* (FLAGS)")
    assert len(flags) == exists and not [ln for ln in flags if b"\\Recent" in ln], flags


def test_imaplib_enables_rev2(server: RunningServer) -> None:
    _fill(server, "Lib", 2)
    m = imaplib.IMAP4(server.host, server.port)
    assert "IMAP4REV2" in m.capabilities and "IMAP4REV1" in m.capabilities
    m.login("alice", "secret1")
    assert m.enable("IMAP4rev2")[0] == "OK"
    assert m.response("ENABLED") == ("ENABLED", [b"IMAP4rev2"])
    typ, data = m.select("Lib")
    assert typ == "OK" and data == [b"2"]
    assert m.response("RECENT") == ("RECENT", [None])  # no RECENT (imaplib would have kept it)
    assert m.response("LIST") == ("LIST", [b'(\\HasNoChildren) "/" "Lib"'])
    typ, data = m.search(None, "ALL")
    assert typ == "OK" and data == [None]  # imaplib waits for * SEARCH, which rev2 does not send
    _, esearch = m.response("ESEARCH")
    assert esearch and re.fullmatch(rb'\(TAG "\w+"\) ALL 1:2', esearch[-1]), esearch
    typ, data = m.uid("SEARCH", "ALL")
    assert data == [None] and re.fullmatch(rb'\(TAG "\w+"\) UID ALL \d+:\d+', m.response("ESEARCH")[1][-1])
    typ, data = m.fetch("1:*", "(FLAGS)")
    assert data == [b"1 (FLAGS ())", b"2 (FLAGS ())"]
    with pytest.raises(imaplib.IMAP4.error, match="RECENT"):
        m.status("Lib", "(MESSAGES RECENT)")
    with pytest.raises(imaplib.IMAP4.error):
        m.search(None, "RECENT")
    typ, data = m.status("Lib", "(MESSAGES SIZE)")
    assert typ == "OK" and re.fullmatch(rb'"Lib" \(MESSAGES 2 SIZE \d+\)', data[0]), data
    m.logout()
    # the same calls without ENABLE: IMAP4rev1 as before, and the rev2 session claimed no \Recent
    m = imaplib.IMAP4(server.host, server.port)
    m.login("alice", "secret1")
    m.select("Lib")
    assert m.response("RECENT") == ("RECENT", [b"2"])
    assert m.search(None, "ALL") == ("OK", [b"1 2"])
    assert m.status("Lib", "(RECENT)")[0] == "OK"
    m.logout()


def test_xstate_keeps_rev2(server: RunningServer) -> None:
    _fill(server, "Xs", 2)
    a = RawIMAP(server.host, server.port)
    a.ok("LOGIN alice secret1")
    a.ok("ENABLE IMAP4rev2")
    a.ok('CREATE "Brouillons-été"'.encode())
    a.ok("SELECT Xs")
    token = _token(a.ok("X-STATE SAVE"))
    a.close()
    _deliver(server, "Xs", "while away")
    b = RawIMAP(server.host, server.port)
    untagged, tagged = b.command(f"X-STATE RESTORE {token}")  # authenticates, enables, selects
    assert b" OK " in tagged, (untagged, tagged)
    assert b"* 3 EXISTS" in untagged and not [ln for ln in untagged if b"RECENT" in ln], untagged
    _assert_rev2(b, 3)
    assert b.ok('LIST "" "Brouillons*"') == ['* LIST (\\HasNoChildren) "/" "Brouillons-été"'.encode()]
    # the restored rev2 session claimed nothing: an IMAP4rev1 session is the first told of all three
    c = RawIMAP(server.host, server.port)
    c.ok("LOGIN alice secret1")
    assert b"* 3 RECENT" in c.ok("EXAMINE Xs")
    # and an IMAP4rev1 state restores as IMAP4rev1
    token = _token(c.ok("X-STATE SAVE"))
    d = RawIMAP(server.host, server.port)
    d.ok(f"X-STATE RESTORE {token}")
    assert d.ok("SEARCH ALL") == [b"* SEARCH 1 2 3"]
    for conn in (b, c, d):
        conn.close()


# Users with different owner workers (rendezvous hashing over 2 slots), so both workers hand sessions over.
USERS = {"alice": "secret1", "carol": "secret3"}
assert {owner_slot(u, 2) for u in USERS} == {0, 1}


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[RunningServer]:
    data = tmp_path / "data"
    for user, password in USERS.items():
        imapd_cli("user", "add", user, "--password-stdin", "--data-dir", str(data), stdin=password)
    srv = start_server(data, "-o", "server.workers=2")
    srv.users.update(USERS)
    try:
        yield srv
    finally:
        stop_server(srv)


def test_reload_hands_over_rev2(two_workers: RunningServer) -> None:
    srv = two_workers
    sessions: dict[str, tuple[RawIMAP, RawIMAP]] = {}
    for user in USERS:
        _fill(srv, "Ho", 2, user)
        rev2 = RawIMAP(srv.host, srv.port)
        rev2.ok(f"LOGIN {user} {USERS[user]}")  # handed to the user's owner worker at login
        rev2.ok("ENABLE IMAP4rev2")
        rev2.ok("SELECT Ho")
        rev1 = RawIMAP(srv.host, srv.port)
        rev1.ok(f"LOGIN {user} {USERS[user]}")
        rev1.ok("SELECT Ho")
        sessions[user] = (rev2, rev1)
    old = _worker_pids(srv)
    imapd_cli("reload", "--data-dir", str(srv.data_dir))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and srv.log().count("finished its hand-over") < 2:
        time.sleep(0.05)
    assert srv.log().count("finished its hand-over") >= 2, srv.log()
    for user, (rev2, rev1) in sessions.items():
        served_by = _server_socket_pid(srv.port, rev2.sock.getsockname()[1])
        assert served_by and served_by.isdisjoint(old), (user, served_by, old)  # moved to a new worker
        _deliver(srv, "Ho", "after reload", user)
        untagged = rev2.ok("NOOP")
        assert untagged == [b"* 3 EXISTS"], (user, untagged)
        _assert_rev2(rev2, 3)
        untagged = rev1.ok("NOOP")  # the IMAP4rev1 session beside it is still one
        assert untagged[:1] == [b"* 3 EXISTS"] and re.fullmatch(rb"\* \d RECENT", untagged[1]), untagged
        assert rev1.ok("SEARCH ALL") == [b"* SEARCH 1 2 3"]
        rev2.close()
        rev1.close()
