"""RFC 8970 PREVIEW on the wire: the fetch attribute with its LAZY modifier, and the response item."""

from __future__ import annotations

import pytest

from imapd.protocol import commands as c
from imapd.protocol import responses as r
from imapd.protocol.command_writer import write_command
from imapd.protocol.events import ProtocolError
from imapd.protocol.fetch_items import FetchAttr, FetchPreview
from imapd.protocol.response_parser import parse_response
from imapd.protocol.response_writer import ResponseWriter
from imapd.protocol.sequence import SequenceSet

from .helpers import events_of, parse_one


def S(text: str) -> SequenceSet:
    return SequenceSet.parse(text)


EXAMPLES: list[tuple[bytes, c.Command]] = [
    # RFC 8970 section 4 examples
    (b"A1 FETCH 1 (PREVIEW)", c.Fetch("A1", S("1"), (FetchPreview(),))),
    (b"A2 FETCH 1:3 (PREVIEW (LAZY))", c.Fetch("A2", S("1:3"), (FetchPreview(lazy=True),))),
    (b"A3 UID FETCH 1 (UID preview (lazy) FLAGS)",
     c.Fetch("A3", S("1"), (FetchAttr("UID"), FetchPreview(lazy=True), FetchAttr("FLAGS")), uid=True)),
    (b"A4 FETCH 1 PREVIEW", c.Fetch("A4", S("1"), (FetchPreview(),))),
    (b"A5 FETCH 1 PREVIEW (LAZY)", c.Fetch("A5", S("1"), (FetchPreview(lazy=True),))),
    (b"A6 FETCH 1 (PREVIEW (LAZY LAZY))", c.Fetch("A6", S("1"), (FetchPreview(lazy=True),))),
    # a lone PREVIEW followed by FETCH modifiers, not preview modifiers
    (b"A7 FETCH 1 PREVIEW (CHANGEDSINCE 5)", c.Fetch("A7", S("1"), (FetchPreview(),), changedsince=5)),
]


@pytest.mark.parametrize(("line", "expected"), EXAMPLES, ids=[e[0].decode() for e in EXAMPLES])
def test_parse(line: bytes, expected: c.Command) -> None:
    assert parse_one(line) == expected


@pytest.mark.parametrize("cmd", [cmd for _, cmd in EXAMPLES])
def test_round_trip(cmd: c.Command) -> None:
    assert parse_one(write_command(cmd)) == cmd


@pytest.mark.parametrize("line", [b"a FETCH 1 (PREVIEW (FUZZY))", b"a FETCH 1 (PREVIEW ())", b"a FETCH 1 PREVIEW[]",
                                  b"a FETCH 1 (PREVIEW (LAZY)"])
def test_bad(line: bytes) -> None:
    events = events_of(line + b"\r\n")
    assert isinstance(events[-1], ProtocolError) and events[-1].tag == "a", events


@pytest.mark.parametrize(("response", "wire"), [
    (r.FetchResponse(1, [("PREVIEW", "Hello world")]), b'* 1 FETCH (PREVIEW "Hello world")\r\n'),
    (r.FetchResponse(2, [("UID", 7), ("PREVIEW", None)]), b"* 2 FETCH (UID 7 PREVIEW NIL)\r\n"),
    (r.FetchResponse(3, [("PREVIEW", "")]), b'* 3 FETCH (PREVIEW "")\r\n'),
    (r.FetchResponse(4, [("PREVIEW", 'say "hi"')]), b'* 4 FETCH (PREVIEW "say \\"hi\\"")\r\n'),
])
def test_serialize(response: r.Response, wire: bytes) -> None:
    assert ResponseWriter().write(response) == wire
    assert parse_response(wire) == response


def test_serialize_8bit_preview() -> None:
    # Without UTF8=ACCEPT 8-bit text goes in a literal; with it, in a quoted UTF-8 string.
    response = r.FetchResponse(1, [("PREVIEW", "café")])
    assert ResponseWriter().write(response) == b"* 1 FETCH (PREVIEW {5}\r\ncaf\xc3\xa9)\r\n"
    assert ResponseWriter(utf8=True).write(response) == b'* 1 FETCH (PREVIEW "caf\xc3\xa9")\r\n'
