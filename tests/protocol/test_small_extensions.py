"""Parsing and writing of the small extensions (issue 19): WITHIN, SAVEDATE, STATUS DELETED, OBJECTID,
UNAUTHENTICATE; examples from their RFCs where they have some."""

from __future__ import annotations

import datetime

import pytest

from imapd.protocol import commands as c
from imapd.protocol.command_writer import write_command
from imapd.protocol.connection import InputBudget, InputLimits, PreauthLimits, ServerConnection
from imapd.protocol.events import CommandReceived, ProtocolError
from imapd.protocol.fetch_items import FetchAttr
from imapd.protocol.response_codes import Code
from imapd.protocol.response_parser import parse_response
from imapd.protocol.response_writer import ResponseWriter
from imapd.protocol.responses import FetchResponse, ObjectId, StatusResponse, UntaggedStatus
from imapd.protocol.search_keys import (
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchNot,
    SearchObjectId,
    SearchOr,
    SearchSaveDateSupported,
    SearchWithin,
)
from imapd.protocol.sequence import SequenceSet
from imapd.protocol.values import Atom

from .helpers import events_of, parse_one

S = SequenceSet.parse

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
    # RFC 8474 sections 4.2, 5.1, 5.2, 6 (examples)
    (b"3 STATUS foo (MAILBOXID)", c.Status("3", "foo", ("MAILBOXID",))),
    (b"5 FETCH 1:* (EMAILID)", c.Fetch("5", S("1:*"), (FetchAttr("EMAILID"),))),
    (b"6 FETCH 1:* (EMAILID THREADID)", c.Fetch("6", S("1:*"), (FetchAttr("EMAILID"), FetchAttr("THREADID")))),
    (b"27 SEARCH EMAILID M6d99ac3275bb4e", c.Search("27", SearchObjectId("EMAILID", "M6d99ac3275bb4e"))),
    (b"28 UID SEARCH THREADID T64b478a75b7ea9",
     c.Search("28", SearchObjectId("THREADID", "T64b478a75b7ea9"), uid=True)),
    (b"29 SEARCH OR EMAILID a_-1 NOT threadid Z",
     c.Search("29", SearchOr(SearchObjectId("EMAILID", "a_-1"), SearchNot(SearchObjectId("THREADID", "Z"))))),
    # RFC 8514 sections 4.1, 4.2
    (b"A1 FETCH 1:* (SAVEDATE)", c.Fetch("A1", S("1:*"), (FetchAttr("SAVEDATE"),))),
    (b"A2 UID FETCH 1 (FLAGS SAVEDATE INTERNALDATE)",
     c.Fetch("A2", S("1"), (FetchAttr("FLAGS"), FetchAttr("SAVEDATE"), FetchAttr("INTERNALDATE")), uid=True)),
    (b"A3 SEARCH SAVEDBEFORE 1-Feb-1994", c.Search("A3", SearchDate("SAVEDBEFORE", datetime.date(1994, 2, 1)))),
    (b"A4 SEARCH SAVEDON 17-Jul-1996 SAVEDSINCE 1-Jan-1996",
     c.Search("A4", SearchAnd((SearchDate("SAVEDON", datetime.date(1996, 7, 17)),
                               SearchDate("SAVEDSINCE", datetime.date(1996, 1, 1)))))),
    (b"A5 SEARCH SAVEDATESUPPORTED", c.Search("A5", SearchSaveDateSupported())),
    (b"A6 SEARCH NOT savedatesupported", c.Search("A6", SearchNot(SearchSaveDateSupported()))),
    # RFC 8437 section 3
    (b"A01 UNAUTHENTICATE", c.Unauthenticate("A01")),
    (b"a2 unauthenticate", c.Unauthenticate("a2")),
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
    b"a SEARCH EMAILID",
    b"a SEARCH EMAILID a.b",  # objectid is ALPHA / DIGIT / "_" / "-"
    b'a SEARCH EMAILID "quoted"',
    b"a SEARCH EMAILID " + b"x" * 256,
    b"a STATUS foo (OBJECTID)",
    b"a SEARCH SAVEDON 31-Feb-2020",
    b"a SEARCH SAVEDBEFORE",
    b"a FETCH 1 SAVEDATE[]",
    b"a UNAUTHENTICATE now",
    b"a UID UNAUTHENTICATE",
]


@pytest.mark.parametrize("wire", BAD, ids=[w.decode() for w in BAD])
def test_bad_commands(wire: bytes) -> None:
    events = events_of(wire + b"\r\na2 NOOP\r\n")
    assert isinstance(events[0], ProtocolError) and events[0].tag == "a", events
    assert not events[0].fatal
    assert len(events) == 2



RESPONSES = [
    # RFC 8474 examples
    (UntaggedStatus("OK", "Ok", Code("MAILBOXID", "(F2212ea87-6097-4256-9d51-71338625)")),
     b"* OK [MAILBOXID (F2212ea87-6097-4256-9d51-71338625)] Ok\r\n"),
    (StatusResponse("foo", (("MAILBOXID", ObjectId("F2212ea87-6097-4256-9d51-71338625")),)),
     b'* STATUS "foo" (MAILBOXID (F2212ea87-6097-4256-9d51-71338625))\r\n'),  # names always quoted
    (StatusResponse("foo", (("MESSAGES", 3), ("MAILBOXID", ObjectId("F1")), ("DELETED", 1))),
     b'* STATUS "foo" (MESSAGES 3 MAILBOXID (F1) DELETED 1)\r\n'),
    (FetchResponse(1, [("EMAILID", [Atom("M6d99ac3275bb4e")]), ("THREADID", None)]),
     b"* 1 FETCH (EMAILID (M6d99ac3275bb4e) THREADID NIL)\r\n"),
    (FetchResponse(1, [("SAVEDATE", "17-Jul-1996 09:44:25 +0000")]),
     b'* 1 FETCH (SAVEDATE "17-Jul-1996 09:44:25 +0000")\r\n'),
]


@pytest.mark.parametrize(("response", "wire"), RESPONSES, ids=[w[:40].decode() for _, w in RESPONSES])
def test_responses_written_as_the_rfc_shows(response: object, wire: bytes) -> None:
    assert ResponseWriter().write(response) == wire  # type: ignore[arg-type]


def test_status_with_object_id_parses_back() -> None:
    response = StatusResponse("foo", (("MESSAGES", 3), ("MAILBOXID", ObjectId("F-1_a")), ("DELETED-STORAGE", 9)))
    assert parse_response(ResponseWriter().write(response)) == response


def test_unauthenticated_brings_back_the_preauth_limits_and_budget() -> None:
    budget = InputBudget(10_000)
    preauth = PreauthLimits(InputLimits.preauth(100, 50), 1000, budget)
    conn = ServerConnection(max_line=4096, max_literal=1 << 20, preauth=preauth)
    assert conn.limits == preauth.limits
    conn.authenticated()
    assert conn.limits == InputLimits.authenticated(4096, 1 << 20)
    conn.receive_data(b"a1 NOOP\r\na2 SELECT " + b"x" * 300)  # one whole command, one partial over 100
    assert budget.used == 0  # authenticated input is not charged to the pre-auth budget
    assert parse_event(conn) == c.Noop("a1")
    conn.unauthenticated()  # what was held is charged again, and the small limits apply from now
    assert conn.limits == preauth.limits and budget.used > 0
    event = conn.next_event()
    assert isinstance(event, ProtocolError) and event.code == "TOOBIG", event
    conn.discard()
    assert budget.used == 0


def test_unauthenticated_without_preauth_limits_changes_nothing() -> None:
    conn = ServerConnection(max_line=4096)
    before = conn.limits
    conn.unauthenticated()
    assert conn.limits == before


def parse_event(conn: ServerConnection) -> c.Command:
    event = conn.next_event()
    assert isinstance(event, CommandReceived), event
    return event.command
