"""X-STATE commands in the sans-IO layer: SAVE, RESTORE token, REVOKE [token], both directions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imapd.protocol import commands as c
from imapd.protocol.command_writer import write_command
from imapd.protocol.events import ProtocolError

from .helpers import events_of, parse_one

TOKEN = "AAEC.Zb3Vgw.u7R3Ukb2-_x"

PARSE: list[tuple[bytes, c.Command]] = [
    (b"a X-STATE SAVE", c.XStateSave("a")),
    (b"a x-state restore " + TOKEN.encode(), c.XStateRestore("a", TOKEN)),
    (b"a X-STATE REVOKE", c.XStateRevoke("a")),
    (b"a X-STATE revoke " + TOKEN.encode(), c.XStateRevoke("a", TOKEN)),
    (b"t9 x-state REVOKE a", c.XStateRevoke("t9", "a")),
]

WRITE: list[tuple[c.Command, bytes]] = [
    (c.XStateSave("a"), b"a X-STATE SAVE\r\n"),
    (c.XStateRestore("a", TOKEN), b"a X-STATE RESTORE " + TOKEN.encode() + b"\r\n"),
    (c.XStateRevoke("a"), b"a X-STATE REVOKE\r\n"),
    (c.XStateRevoke("a", TOKEN), b"a X-STATE REVOKE " + TOKEN.encode() + b"\r\n"),
]

BAD: list[bytes] = [
    b"a X-STATE",
    b"a X-STATE DROP",
    b"a X-STATE REVOKE ",
    b"a X-STATE REVOKE ab/cd",
    b"a X-STATE REVOKE abc def",
    b'a X-STATE REVOKE "abc"',
    b"a X-STATE REVOKE  abc",
    b"a X-STATE RESTORE",
]


@pytest.mark.parametrize(("wire", "expected"), PARSE, ids=[w.decode() for w, _ in PARSE])
def test_parse(wire: bytes, expected: c.Command) -> None:
    assert parse_one(wire) == expected


@pytest.mark.parametrize(("cmd", "wire"), WRITE, ids=[w.decode().strip() for _, w in WRITE])
def test_write(cmd: c.Command, wire: bytes) -> None:
    assert write_command(cmd) == wire


@pytest.mark.parametrize("wire", BAD, ids=[w.decode() for w in BAD])
def test_bad(wire: bytes) -> None:
    events = events_of(wire + b"\r\na2 NOOP\r\n")
    assert isinstance(events[0], ProtocolError), events
    assert events[0].tag == "a" and not events[0].fatal
    assert events[1:] == [events_of(b"a2 NOOP\r\n")[0]]


@given(st.none() | st.from_regex(r"[A-Za-z0-9_.-]{1,60}", fullmatch=True))
def test_revoke_round_trip(token: str | None) -> None:
    cmd = c.XStateRevoke("z1", token)
    assert parse_one(write_command(cmd)) == cmd
