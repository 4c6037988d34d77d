"""ServerConnection contract: literals and continuations, limits, IDLE, SASL, EOF, resync."""

from __future__ import annotations

from imapd.protocol import NEED_DATA, ServerConnection
from imapd.protocol import commands as c
from imapd.protocol.events import (
    CommandReceived,
    ConnectionClosed,
    ContinuationRequest,
    IdleDone,
    ProtocolError,
    SaslResponse,
)
from imapd.protocol.responses import ContinuationResponse, TaggedResponse

from .helpers import events_of


def test_sync_literal_asks_for_continuation_then_completes() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a1 LOGIN {5}\r\n")
    assert conn.next_event() == ContinuationRequest()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"alice {6}\r\n")
    assert conn.next_event() == ContinuationRequest()
    conn.receive_data(b"secret\r\n")
    assert conn.next_event() == CommandReceived(c.Login("a1", "alice", "secret"))
    assert conn.next_event() is NEED_DATA
    assert conn.pending_bytes == 0


def test_non_sync_literal_needs_no_continuation() -> None:
    assert events_of(b"a1 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n") == [
        CommandReceived(c.Login("a1", "alice", "secret"))
    ]


def test_literal_text_is_not_rescanned_for_literal_markers() -> None:
    # the literal ends with "{3}" itself; it must not be taken as a new literal marker
    assert events_of(b"a LOGIN {3+}\r\n{3} pw\r\n") == [CommandReceived(c.Login("a", "{3}", "pw"))]


def test_literal_marker_inside_quotes_is_not_a_literal() -> None:
    events = events_of(b'a LOGIN "x {3}"\r\nb NOOP\r\n')
    assert isinstance(events[0], ProtocolError)
    assert events[1] == CommandReceived(c.Noop("b"))


def test_bare_lf_is_accepted() -> None:
    assert events_of(b"a NOOP\nb NOOP\n") == [CommandReceived(c.Noop("a")), CommandReceived(c.Noop("b"))]


def test_pipelined_commands() -> None:
    events = events_of(b"a NOOP\r\nb CHECK\r\nc LOGOUT\r\n")
    assert [type(e.command) for e in events if isinstance(e, CommandReceived)] == [c.Noop, c.Check, c.Logout]


def test_sync_literal_too_big_is_refused_without_continuation() -> None:
    events = events_of(b"a APPEND foo {2000}\r\nb NOOP\r\n", max_literal=1000)
    assert events == [ProtocolError("a", "TOOBIG", "Literal too large"), CommandReceived(c.Noop("b"))]


def test_non_sync_literal_too_big_is_drained_then_resyncs() -> None:
    big = b"x" * 2000
    events = events_of([b"a APPEND foo {2000+}\r\n", big[:700], big[700:], b" more {3+}\r\nabc\r\nb NOOP\r\n"],
                       max_literal=1000)
    assert events == [ProtocolError("a", "TOOBIG", "Literal too large"), CommandReceived(c.Noop("b"))]


def test_absurd_non_sync_literal_is_fatal() -> None:
    events = events_of(b"a APPEND foo {999999999+}\r\nxxxx", max_literal=1000)
    assert events == [ProtocolError("a", "TOOBIG", "Literal far too large", fatal=True), ConnectionClosed()]
    conn = ServerConnection(max_literal=1000)
    conn.receive_data(b"a APPEND foo {999999999+}\r\n")
    assert isinstance(conn.next_event(), ProtocolError)
    assert conn.next_event() == ConnectionClosed()


def test_long_line_is_skipped_without_buffering() -> None:
    conn = ServerConnection(max_line=100)
    conn.receive_data(b"a NOOP " + b"x" * 200)
    assert conn.next_event() == ProtocolError("a", "TOOBIG", "Line too long")
    for _ in range(100):
        conn.receive_data(b"y" * 1000)
        assert conn.next_event() is NEED_DATA
        assert conn.pending_bytes < 200
    conn.receive_data(b"zz\r\nb NOOP\r\n")
    assert conn.next_event() == CommandReceived(c.Noop("b"))


def test_long_line_complete_in_one_chunk() -> None:
    events = events_of(b"a NOOP " + b"x" * 200 + b"\r\nb NOOP\r\n", max_line=100)
    assert events == [ProtocolError("a", "TOOBIG", "Line too long"), CommandReceived(c.Noop("b"))]


def test_long_line_after_a_literal_drops_the_command() -> None:
    events = events_of(b"a LOGIN {1+}\r\nx " + b"y" * 300 + b"\r\nb NOOP\r\n", max_line=100)
    assert events == [ProtocolError("a", "TOOBIG", "Line too long"), CommandReceived(c.Noop("b"))]


def test_long_line_announcing_a_literal_drains_it() -> None:
    events = events_of(b"a APPEND " + b"y" * 300 + b" {5+}\r\nhello\r\nb NOOP\r\n", max_line=100)
    assert events == [ProtocolError("a", "TOOBIG", "Line too long"), CommandReceived(c.Noop("b"))]


def test_nesting_bomb_is_refused() -> None:
    events = events_of(b"a FETCH 1 " + b"(" * 10000 + b"\r\nb NOOP\r\n")
    assert isinstance(events[0], ProtocolError) and events[0].tag == "a" and not events[0].fatal
    assert events[1] == CommandReceived(c.Noop("b"))


def test_idle_done() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a IDLE\r\nDONE\r\nb NOOP\r\n")
    assert conn.next_event() == CommandReceived(c.Idle("a"))
    conn.expect_idle_done()
    assert conn.next_event() == IdleDone()
    assert conn.next_event() == CommandReceived(c.Noop("b"))


def test_idle_other_line_is_an_error() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a IDLE\r\nb NOOP\r\n")
    assert conn.next_event() == CommandReceived(c.Idle("a"))
    conn.expect_idle_done()
    ev = conn.next_event()
    assert isinstance(ev, ProtocolError) and ev.tag == "a" and not ev.fatal


def test_sasl_exchange() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a AUTHENTICATE PLAIN\r\n")
    assert conn.next_event() == CommandReceived(c.Authenticate("a", "PLAIN"))
    conn.expect_sasl_response()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"AGZyZWQAc2VjcmV0\r\n")
    assert conn.next_event() == SaslResponse(b"\x00fred\x00secret")
    conn.expect_sasl_response()
    conn.receive_data(b"*\r\n")
    assert conn.next_event() == SaslResponse(b"", cancelled=True)
    conn.expect_sasl_response()
    conn.receive_data(b"!!\r\n")
    ev = conn.next_event()
    assert isinstance(ev, ProtocolError) and ev.tag == "a"
    conn.expect_sasl_response()
    conn.receive_data(b"\r\n")
    assert conn.next_event() == SaslResponse(b"")


def test_eof() -> None:
    assert events_of(b"a NOOP\r\nb NO", eof=True) == [CommandReceived(c.Noop("a")), ConnectionClosed()]
    conn = ServerConnection()
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    assert conn.next_event() == ConnectionClosed()


def test_utf8_flag_switches_names_both_ways() -> None:
    conn = ServerConnection()
    conn.utf8 = True
    conn.receive_data('a SELECT "Entw\u00fcrfe"\r\n'.encode())
    assert conn.next_event() == CommandReceived(c.Select("a", "Entw\u00fcrfe"))
    assert conn.send(TaggedResponse("a", "OK", "done")) == b"a OK done\r\n"
    assert conn.send(ContinuationResponse("")) == b"+ \r\n"
