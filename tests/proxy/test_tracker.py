"""The relay's view of a session from framing alone (imapd/proxy/tracker.py), table-driven, no sockets."""

from __future__ import annotations

import pytest

from imapd.proxy.tracker import LineScanner, SessionTracker


@pytest.mark.parametrize(("chunks", "lines", "between"), [
    ([b"a NOOP\r\n"], [(b"a NOOP", True)], True),
    ([b"a NO", b"OP\r\n"], [(b"a NOOP", True)], True),
    ([b"a APPEND X {5}\r\n", b"he", b"llo\r\n"], [(b"a APPEND X {5}", True), (b"", False)], True),
    ([b"a APPEND X {5+}\r\nhel"], [(b"a APPEND X {5+}", True)], False),
    ([b'a LOGIN "{5}" x\r\n'], [(b'a LOGIN "{5}" x', True)], True),  # in a quoted string: no literal
    ([b"* 1 FETCH (BODY[] {3}\r\n\r\n\r)\r\n"], [(b"* 1 FETCH (BODY[] {3}", True), (b")", False)], True),
])
def test_scanner(chunks: list[bytes], lines: list[tuple[bytes, bool]], between: bool) -> None:
    scanner = LineScanner()
    out: list[tuple[bytes, bool]] = []
    for chunk in chunks:
        out += scanner.feed(chunk)
    assert out == lines and scanner.between is between


def test_idle_select_and_completion() -> None:
    t = SessionTracker()
    t.from_client(b"a SELECT INBOX\r\n")
    assert not t.quiet
    t.from_backend(t.backend.feed(b"* 3 EXISTS\r\na OK [READ-WRITE] done\r\n"))
    assert t.selected and t.quiet
    t.from_client(b"b IDLE\r\n")
    assert not t.quiet
    t.from_backend(t.backend.feed(b"+ idling\r\n"))
    assert t.idling and t.quiet and t.client_idle_tag() == "b"
    t.from_client(b"DONE\r\n")
    t.from_backend(t.backend.feed(b"b OK IDLE terminated\r\n"))
    assert not t.idling and t.quiet
    t.from_client(b"c UNSELECT\r\n")
    t.from_backend(t.backend.feed(b"c OK\r\n"))
    assert not t.selected


def test_tag_map_rewrites_only_our_tag() -> None:
    t = SessionTracker()
    t.tag_map["PXY2"] = "client7"
    assert t.rewrite(b"* 4 EXISTS\r\nPXY2 OK IDLE terminated\r\n") == b"* 4 EXISTS\r\nclient7 OK IDLE terminated\r\n"
    assert t.tag_map == {}
    assert t.rewrite(b"PXY2 OK again\r\n") == b"PXY2 OK again\r\n"


def test_refused_synchronizing_literal_is_not_awaited() -> None:
    t = SessionTracker()
    t.from_client(b"a APPEND INBOX {99999}\r\n")
    assert not t.client.between
    t.from_backend(t.backend.feed(b"a NO [OVERQUOTA] no room\r\n"))
    assert t.client.between and not t.in_flight
    assert t.from_client(b"b NOOP\r\n") == 1 and "b" in t.in_flight


def test_bye_logout_and_notify() -> None:
    t = SessionTracker()
    t.from_client(b"n NOTIFY SET (SELECTED (MessageNew))\r\n")
    assert t.notify
    t.from_client(b"z LOGOUT\r\n")
    t.from_backend(t.backend.feed(b"* BYE bye\r\nz OK done\r\n"))
    assert t.logout and t.bye and not t.quiet
