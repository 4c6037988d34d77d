"""Parsing and writing of the small extensions (issue 19): WITHIN, SAVEDATE, STATUS DELETED, OBJECTID,
UNAUTHENTICATE; examples from their RFCs where they have some."""

from __future__ import annotations

import pytest

from imapd.protocol import commands as c
from imapd.protocol.command_writer import write_command
from imapd.protocol.events import ProtocolError
from imapd.protocol.search_keys import SearchAnd, SearchFlag, SearchNot, SearchWithin

from .helpers import events_of, parse_one

EXAMPLES: list[tuple[bytes, c.Command]] = [
    # RFC 5032 section 4
    (b"a1 SEARCH UNSEEN YOUNGER 259200",
     c.Search("a1", SearchAnd((SearchFlag("\\Seen", False), SearchWithin(False, 259200))))),
    (b"a2 UID SEARCH OLDER 3600", c.Search("a2", SearchWithin(True, 3600), uid=True)),
    (b"a3 SEARCH NOT older 1", c.Search("a3", SearchNot(SearchWithin(True, 1)))),
    (b"a4 SORT (ARRIVAL) UTF-8 YOUNGER 60",
     c.Sort("a4", (c.SortKey("ARRIVAL"),), "UTF-8", SearchWithin(False, 60))),
    (b"a5 SEARCH RETURN (COUNT) YOUNGER 60", c.Search("a5", SearchWithin(False, 60), return_options=("COUNT",))),
    # RFC 9051 6.3.11 STATUS DELETED, RFC 9208 DELETED-STORAGE, also in LIST-STATUS (RFC 5819)
    (b"A042 STATUS blurdybloop (UIDNEXT MESSAGES DELETED)",
     c.Status("A042", "blurdybloop", ("UIDNEXT", "MESSAGES", "DELETED"))),
    (b"a6 STATUS INBOX (DELETED-STORAGE deleted)", c.Status("a6", "INBOX", ("DELETED-STORAGE", "DELETED"))),
    (b'a7 LIST "" % RETURN (STATUS (DELETED DELETED-STORAGE))',
     c.List("a7", "", ("%",), (), ("STATUS",), ("DELETED", "DELETED-STORAGE"))),
]


@pytest.mark.parametrize(("wire", "expected"), EXAMPLES, ids=[w[:40].decode() for w, _ in EXAMPLES])
def test_parse_examples(wire: bytes, expected: c.Command) -> None:
    assert parse_one(wire) == expected


@pytest.mark.parametrize(("wire", "expected"), EXAMPLES, ids=[w[:40].decode() for w, _ in EXAMPLES])
def test_write_then_parse_is_the_same_command(wire: bytes, expected: c.Command) -> None:
    assert parse_one(write_command(expected)) == expected


BAD = [
    b"a SEARCH OLDER 0",  # RFC 5032: nz-number
    b"a SEARCH YOUNGER -5",
    b"a SEARCH OLDER",
    b"a SEARCH YOUNGER 99999999999",
]


@pytest.mark.parametrize("wire", BAD, ids=[w.decode() for w in BAD])
def test_bad_commands(wire: bytes) -> None:
    events = events_of(wire + b"\r\na2 NOOP\r\n")
    assert isinstance(events[0], ProtocolError) and events[0].tag == "a", events
    assert not events[0].fatal
    assert len(events) == 2

