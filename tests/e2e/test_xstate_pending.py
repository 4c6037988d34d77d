"""X-STATE SAVE QUIET and X-STATE RESTORE token PENDING (docs/x-state.md 2.5): what a proxy needs to detach a
selected session between commands and put it back without renumbering under the client (RFC 3501 7.4.1)."""

from __future__ import annotations

import re

from tests.conftest import RunningServer
from tests.rawimap import RawIMAP


def _client(server: RunningServer) -> RawIMAP:
    imap = RawIMAP(server.host, server.port)
    imap.ok("LOGIN alice secret1")
    return imap


def _append(imap: RawIMAP, subject: str) -> None:
    text = f"Subject: {subject}\r\n\r\nx\r\n"
    imap.ok(f"APPEND PEND {{{len(text)}+}}\r\n{text}")


def _token(untagged: list[bytes]) -> str:
    return next(line.split()[2].decode() for line in untagged if line.startswith(b"* X-STATE "))


def test_save_quiet_refuses_silently_while_updates_are_pending(server: RunningServer) -> None:
    a, b = _client(server), _client(server)
    a.command("CREATE PEND")
    for i in range(3):
        _append(a, f"m{i}")
    a.ok("SELECT PEND")
    untagged, tagged = a.command("X-STATE SAVE QUIET")
    assert tagged.split()[1] == b"OK" and _token(untagged)
    b.ok("SELECT PEND")
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    untagged, tagged = a.command("X-STATE SAVE QUIET")
    assert b"NO [X-STATE-PENDING]" in tagged
    assert untagged == []  # nothing sent: not the EXPUNGE either
    untagged = a.ok("NOOP")
    assert b"* 2 EXPUNGE" in untagged
    untagged, tagged = a.command("X-STATE SAVE QUIET")
    assert b" OK" in tagged
    a.command("LOGOUT")
    b.command("LOGOUT")


def test_restore_pending_keeps_the_clients_numbers(server: RunningServer) -> None:
    a, b = _client(server), _client(server)
    a.command("DELETE PEND")
    a.ok("CREATE PEND")
    for i in range(4):
        _append(a, f"m{i}")
    a.ok("SELECT PEND")
    token = _token(a.ok("X-STATE SAVE QUIET"))
    a.command("LOGOUT")
    # Meanwhile: message 2 expunged, message 3 flagged, one new message.
    b.ok("SELECT PEND")
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    b.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")  # was message 3
    _append(b, "new")
    c = RawIMAP(server.host, server.port)
    untagged, tagged = c.command(f"X-STATE RESTORE {token} PENDING")
    assert tagged.split()[1] == b"OK" and b"READ-WRITE" in tagged
    assert not any(re.search(rb"EXPUNGE|EXISTS|FETCH", line) for line in untagged), untagged
    # FETCH by sequence number: the client's numbers (4 messages), no EXPUNGE during FETCH.
    untagged = c.ok("FETCH 3 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert not any(b"EXPUNGE" in line for line in untagged)
    fetched = [line for line in untagged if line.startswith(b"* 3 FETCH")]
    assert fetched and b"m2" in b"".join(fetched)  # message 3 is still the client's third message
    assert any(b"EXISTS" in line for line in untagged)  # new mail may be told now
    # A command that allows EXPUNGE delivers it.
    untagged = c.ok("NOOP")
    assert b"* 2 EXPUNGE" in untagged
    untagged = c.ok("FETCH 2 (FLAGS)")
    assert b"\\Flagged" in untagged[0]
    c.command("LOGOUT")
    b.command("LOGOUT")


def test_restore_without_pending_sends_the_catch_up(server: RunningServer) -> None:
    a, b = _client(server), _client(server)
    a.command("DELETE PEND")
    a.ok("CREATE PEND")
    for i in range(2):
        _append(a, f"m{i}")
    a.ok("SELECT PEND")
    token = _token(a.ok("X-STATE SAVE"))
    b.ok("SELECT PEND")
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    c = RawIMAP(server.host, server.port)
    untagged, _ = c.command(f"X-STATE RESTORE {token}")
    assert b"* 1 EXPUNGE" in untagged
    _, tagged = c.command(f"X-STATE RESTORE {token} BOGUS")
    assert tagged.split()[1] == b"BAD"
    for imap in (a, b, c):
        imap.command("LOGOUT")
