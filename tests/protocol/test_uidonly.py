"""RFC 9586 UIDONLY on the wire: the UIDFETCH response and the UIDREQUIRED code (its own examples)."""

from __future__ import annotations

import pytest

from imapd.protocol import commands as c
from imapd.protocol import responses as r
from imapd.protocol.response_codes import Code
from imapd.protocol.response_parser import parse_response
from imapd.protocol.response_writer import ResponseWriter
from imapd.protocol.sequence import SequenceSet
from imapd.protocol.values import Atom
from imapd.session.uidonly import sequence_number_use

from .helpers import parse_one

RESPONSES: list[tuple[r.Response, bytes]] = [
    (r.UidFetchResponse(25996, [("FLAGS", (Atom("\\Seen"),))]), b"* 25996 UIDFETCH (FLAGS (\\Seen))\r\n"),
    (r.UidFetchResponse(25997, [("FLAGS", (Atom("\\Flagged"), Atom("\\Answered")))]),
     b"* 25997 UIDFETCH (FLAGS (\\Flagged \\Answered))\r\n"),
    (r.UidFetchResponse(7, [("MODSEQ", (12,)), ("BODY[TEXT]", b"abc\r\n")]),
     b"* 7 UIDFETCH (MODSEQ (12) BODY[TEXT] {5}\r\nabc\r\n)\r\n"),
    (r.TaggedResponse("A1", "BAD", "Message numbers are not allowed", Code("UIDREQUIRED")),
     b"A1 BAD [UIDREQUIRED] Message numbers are not allowed\r\n"),
    (r.VanishedResponse(SequenceSet.parse("405,407,410,425")), b"* VANISHED 405,407,410,425\r\n"),
]


@pytest.mark.parametrize(("response", "wire"), RESPONSES, ids=[w[:30].decode() for _, w in RESPONSES])
def test_serialize_and_parse(response: r.Response, wire: bytes) -> None:
    assert ResponseWriter().write(response) == wire
    assert parse_response(wire) == response


def test_fetch_and_uidfetch_are_told_apart() -> None:
    assert isinstance(parse_response(b"* 3 FETCH (FLAGS ())\r\n"), r.FetchResponse)
    assert isinstance(parse_response(b"* 3 uidfetch (FLAGS ())\r\n"), r.UidFetchResponse)


@pytest.mark.parametrize(("line", "numbered"), [
    (b"A FETCH 1:* (FLAGS)", True),
    (b"A UID FETCH 1:* (FLAGS)", False),
    (b"A STORE 1 +FLAGS (\\Seen)", True),
    (b"A UID STORE 1 +FLAGS (\\Seen)", False),
    (b"A COPY 1 Trash", True),
    (b"A UID COPY 1 Trash", False),
    (b"A MOVE 1 Trash", True),
    (b"A UID MOVE 1:* Trash", False),
    (b"A SEARCH ALL", True),
    (b"A UID SEARCH ALL", False),
    (b"A UID SEARCH 1:5", True),
    (b"A UID SEARCH OR UID 1 NOT 2", True),
    (b"A UID SEARCH OR UID 1 NOT UID 2", False),
    (b"A UID SEARCH $", False),
    (b"A UID SEARCH RETURN (COUNT) UID 1:*", False),
    (b"A SORT (DATE) UTF-8 ALL", True),
    (b"A UID SORT (DATE) UTF-8 ALL", False),
    (b"A THREAD REFERENCES UTF-8 ALL", True),
    (b"A UID THREAD REFERENCES UTF-8 (1:3)", True),
    (b"A SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))", False),
    (b"A SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211 (1:10 41:50)))", True),
    (b"A EXPUNGE", False),
    (b"A UID EXPUNGE 1:3", False),
    (b"A NOOP", False),
])
def test_sequence_number_use(line: bytes, numbered: bool) -> None:
    command = parse_one(line)
    assert (sequence_number_use(command) is not None) is numbered


def test_enable_uidonly_parses() -> None:
    assert parse_one(b"A ENABLE UIDONLY") == c.Enable("A", ("UIDONLY",))
