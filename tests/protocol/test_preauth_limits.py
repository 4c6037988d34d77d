"""State-dependent input limits of the sans-IO connection: small before authentication, a per-connection
and a shared budget of unread bytes, the normal limits after :meth:`ServerConnection.authenticated`."""

from __future__ import annotations

import pytest

from imapd.protocol import NEED_DATA, CommandReceived, ContinuationRequest, ProtocolError
from imapd.protocol.connection import InputBudget, InputLimits, PreauthLimits, ServerConnection


def _conn(budget: InputBudget, max_buffer: int = 4096) -> ServerConnection:
    return ServerConnection(max_line=65536, max_literal=1 << 20,
                            preauth=PreauthLimits(InputLimits.preauth(1000, 100), max_buffer, budget))


@pytest.mark.parametrize(("data", "expected"), [
    (b"a1 LOGIN {101}\r\n", ProtocolError("a1", "TOOBIG", "Literal too large")),
    (b"a1 LOGIN {100}\r\n", ContinuationRequest()),
    (b"a1 NOOP " + b"x" * 1100 + b"\r\n", ProtocolError("a1", "TOOBIG", "Line too long")),
    (b"a1 LOGIN {401+}\r\n", ProtocolError("a1", "TOOBIG", "Literal far too large", fatal=True)),
])
def test_preauth_limits(data: bytes, expected: object) -> None:
    conn = _conn(InputBudget(1 << 20))
    conn.receive_data(data)
    assert conn.next_event() == expected


def test_authenticated_switches_to_the_normal_limits_and_leaves_the_budget() -> None:
    budget = InputBudget(1 << 20)
    conn = _conn(budget)
    conn.receive_data(b"a1 NOOP")  # an unfinished line is held and charged
    assert conn.next_event() is NEED_DATA and budget.used == 7
    conn.authenticated()
    assert budget.used == 0 and conn.limits == InputLimits.authenticated(65536, 1 << 20)
    conn.receive_data(b"\r\na2 APPEND INBOX {5000}\r\n")
    assert isinstance(conn.next_event(), CommandReceived)
    assert conn.next_event() == ContinuationRequest()
    assert budget.used == 0  # no longer counted


def test_per_connection_and_shared_ceilings() -> None:
    budget = InputBudget(5000)
    a = _conn(budget)
    a.receive_data(b"n NOOP\r\n" * 600)  # 4800 unread bytes > 4096 for one connection
    assert a.next_event() == ProtocolError(None, "TOOBIG", "Too much input before authentication", fatal=True)
    assert budget.used == 0 and a.pending_bytes == 0  # dropped at once, not when the socket closes
    b, c = _conn(budget), _conn(budget)
    b.receive_data(b"b" * 900)
    c.receive_data(b"c" * 900)
    d = _conn(budget)
    for _ in range(4):
        d.receive_data(b"a NOOP\r\n" * 100)  # 800 unread each time, nothing consumed
    assert budget.used == 900 + 900 + 3200  # at the ceiling, not past it
    d.receive_data(b"x" * 300)
    assert d.next_event() == ProtocolError(None, "UNAVAILABLE", "Server busy, try again later", fatal=True)
    assert budget.used == 1800
    b.discard()
    c.discard()
    assert budget.used == 0
