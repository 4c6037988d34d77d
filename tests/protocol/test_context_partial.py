"""ESORT and CONTEXT (RFC 5267), PARTIAL (RFC 9394): parsing, writing, and the ESEARCH data they return."""

from __future__ import annotations

import pytest

from imapd.protocol import commands as c
from imapd.protocol import responses as r
from imapd.protocol.command_writer import write_command
from imapd.protocol.events import ProtocolError
from imapd.protocol.fetch_items import FetchAttr
from imapd.protocol.response_codes import Code
from imapd.protocol.response_parser import parse_response
from imapd.protocol.response_writer import ResponseWriter
from imapd.protocol.search_keys import SearchAll, SearchAnd, SearchFlag
from imapd.protocol.sequence import SequenceSet

from .helpers import events_of, parse_one

S = SequenceSet.parse
W = ResponseWriter()
UNDELETED_NOT_JUNK = SearchAnd((SearchFlag("\\Deleted", False), SearchFlag("$Junk", False)))

EXAMPLES: list[tuple[bytes, c.Command]] = [
    # RFC 5267 3.3
    (b"E01 UID SORT RETURN () (REVERSE DATE) UTF-8 UNDELETED UNKEYWORD $Junk", c.Sort(
        "E01", (c.SortKey("DATE", True),), "UTF-8", UNDELETED_NOT_JUNK, uid=True, return_options=())),
    # RFC 5267 4.2, 4.3, 4.3.1
    (b"A01 SEARCH RETURN (CONTEXT COUNT) UNDELETED UNKEYWORD $Junk", c.Search(
        "A01", UNDELETED_NOT_JUNK, return_options=("CONTEXT", "COUNT"))),
    (b"B01 UID SEARCH RETURN (UPDATE COUNT) DELETED KEYWORD $Junk", c.Search(
        "B01", SearchAnd((SearchFlag("\\Deleted"), SearchFlag("$Junk"))), uid=True, return_options=("UPDATE", "COUNT"))),
    (b"B02 UID SORT RETURN (UPDATE COUNT) (DATE) UTF-8 KEYWORD $Junk", c.Sort(
        "B02", (c.SortKey("DATE"),), "UTF-8", SearchFlag("$Junk"), uid=True, return_options=("UPDATE", "COUNT"))),
    # RFC 5267 4.3.5
    (b'B04 CANCELUPDATE "B01"', c.CancelUpdate("B04", ("B01",))),
    (b'B05 CANCELUPDATE "B01" "B02" "B01"', c.CancelUpdate("B05", ("B01", "B02"))),
    # RFC 5267 4.4 / RFC 9394 3.1
    (b"A02 UID SEARCH RETURN (PARTIAL 23500:24000) UNDELETED UNKEYWORD $Junk", c.Search(
        "A02", UNDELETED_NOT_JUNK, uid=True, return_options=("PARTIAL",), partial=c.PartialRange(23500, 24000))),
    (b"A04 UID SEARCH RETURN (PARTIAL -1:-100) UNDELETED UNKEYWORD $Junk", c.Search(
        "A04", UNDELETED_NOT_JUNK, uid=True, return_options=("PARTIAL",), partial=c.PartialRange(-1, -100))),
    (b"A05 UID SEARCH RETURN (COUNT PARTIAL 500:400 UPDATE) ALL", c.Search(
        "A05", SearchAll(), uid=True, return_options=("COUNT", "PARTIAL", "UPDATE"), partial=c.PartialRange(500, 400))),
    (b"A06 UID SORT RETURN (PARTIAL 1:10) (SUBJECT) UTF-8 ALL", c.Sort(
        "A06", (c.SortKey("SUBJECT"),), "UTF-8", SearchAll(), uid=True, return_options=("PARTIAL",),
        partial=c.PartialRange(1, 10))),
    # RFC 9394 3.3
    (b"10 UID FETCH 25900:26600 (UID FLAGS) (PARTIAL -1:-3)", c.Fetch(
        "10", S("25900:26600"), (FetchAttr("UID"), FetchAttr("FLAGS")), uid=True,
        partial=c.PartialRange(-1, -3))),
    (b"11 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5 PARTIAL 1:50)", c.Fetch(
        "11", S("1:*"), (FetchAttr("FLAGS"),), uid=True, changedsince=5,
        partial=c.PartialRange(1, 50))),
]


@pytest.mark.parametrize(("wire", "expected"), EXAMPLES, ids=[w[:40].decode() for w, _ in EXAMPLES])
def test_parse_examples(wire: bytes, expected: c.Command) -> None:
    assert parse_one(wire) == expected


@pytest.mark.parametrize(("wire", "expected"), EXAMPLES, ids=[w[:40].decode() for w, _ in EXAMPLES])
def test_written_commands_parse_back(wire: bytes, expected: c.Command) -> None:
    written = write_command(expected)
    assert parse_one(written) == expected


BAD = [
    b"a SEARCH RETURN (PARTIAL) ALL",
    b"a SEARCH RETURN (PARTIAL 0:5) ALL",
    b"a SEARCH RETURN (PARTIAL -1:5) ALL",
    b"a SEARCH RETURN (PARTIAL 1:-5) ALL",
    b"a SEARCH RETURN (PARTIAL 1:*) ALL",
    b"a SEARCH RETURN (PARTIAL 01:5) ALL",
    b"a SEARCH RETURN (PARTIAL 1:99999999999) ALL",
    b"a SEARCH RETURN (PARTIAL 1:5x) ALL",
    b"a SEARCH RETURN (ALL PARTIAL 1:5) ALL",
    b"a SEARCH RETURN (PARTIAL 1:5 PARTIAL 6:9) ALL",
    b"a SEARCH RETURN (BOGUS) ALL",
    b"a FETCH 1 FLAGS (PARTIAL 1:2 PARTIAL 1:2)",
    b"a FETCH 1 FLAGS (PARTIAL -1)",
    b"a CANCELUPDATE",
    b"a CANCELUPDATE B01",
    b'a CANCELUPDATE "B01" B02',
]


@pytest.mark.parametrize("wire", BAD, ids=[w.decode() for w in BAD])
def test_bad_syntax_is_bad(wire: bytes) -> None:
    events = events_of(wire + b"\r\n")
    assert isinstance(events[0], ProtocolError) and events[0].tag == "a" and not events[0].fatal


@pytest.mark.parametrize(("spec", "count", "expected"), [
    ((1, 500), 264, (0, 264)),
    ((23500, 24000), 23764, (23499, 23764)),
    ((24000, 24500), 23764, (23764, 23764)),
    ((500, 400), 1000, (399, 500)),
    ((-1, -100), 50, (0, 50)),
    ((-1, -3), 10, (7, 10)),
    ((-3, -1), 10, (7, 10)),
    ((-11, -20), 10, (0, 0)),
    ((-2, -2), 1, (0, 0)),
])
def test_partial_range_bounds(spec: tuple[int, int], count: int, expected: tuple[int, int]) -> None:
    assert c.PartialRange(*spec).bounds(count) == expected


RESPONSES: list[tuple[r.Response, bytes]] = [
    # RFC 5267 3.3: sort order kept, only ascending runs become ranges
    (r.EsearchResponse("E01", True, (("ALL", SequenceSet.in_order([23765, 23764, 23763, 23761, 5, 6, 7])),)),
     b'* ESEARCH (TAG "E01") UID ALL 23765,23764,23763,23761,5:7\r\n'),
    # RFC 5267 4.3.3 / 4.3.4
    (r.EsearchResponse("B01", True, (("ADDTO", r.ContextChange(((0, S("32768:32769")),))),)),
     b'* ESEARCH (TAG "B01") UID ADDTO (0 32768:32769)\r\n'),
    (r.EsearchResponse("C01", True, (("ADDTO", r.ContextChange(((1, S("2733")), (1, S("2731:2732"))))),)),
     b'* ESEARCH (TAG "C01") UID ADDTO (1 2733 1 2731:2732)\r\n'),
    (r.EsearchResponse("B01", True, (("REMOVEFROM", r.ContextChange(((0, S("32768")),))),)),
     b'* ESEARCH (TAG "B01") UID REMOVEFROM (0 32768)\r\n'),
    (r.EsearchResponse("C01", False, (("REMOVEFROM", r.ContextChange(((3, S("7")),))),
                                      ("ADDTO", r.ContextChange(((1, S("7")),))))),
     b'* ESEARCH (TAG "C01") REMOVEFROM (3 7) ADDTO (1 7)\r\n'),
    # RFC 5267 4.4, RFC 9394 3.1
    (r.EsearchResponse("A02", True, (("PARTIAL", r.PartialResult(c.PartialRange(23500, 24000), S("55500:55763"))),)),
     b'* ESEARCH (TAG "A02") UID PARTIAL (23500:24000 55500:55763)\r\n'),
    (r.EsearchResponse("A04", True, (("PARTIAL", r.PartialResult(c.PartialRange(24000, 24500), None)),)),
     b'* ESEARCH (TAG "A04") UID PARTIAL (24000:24500 NIL)\r\n'),
    (r.EsearchResponse("A05", True, (("COUNT", 74), ("PARTIAL", r.PartialResult(c.PartialRange(-1, -100),
                                                                                S("55500:55599"))))),
     b'* ESEARCH (TAG "A05") UID COUNT 74 PARTIAL (-1:-100 55500:55599)\r\n'),
    (r.UntaggedStatus("NO", "Too many contexts", Code("NOUPDATE", '"B02"')),
     b'* NO [NOUPDATE "B02"] Too many contexts\r\n'),
]


@pytest.mark.parametrize(("response", "wire"), RESPONSES, ids=[w[:40].decode() for _, w in RESPONSES])
def test_responses_serialize_and_parse_back(response: r.Response, wire: bytes) -> None:
    assert W.write(response) == wire
    assert parse_response(wire) == response
