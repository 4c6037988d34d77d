"""Hypothesis properties: command and response round trips, robustness, chunking, linear time."""

from __future__ import annotations

import datetime
import itertools
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapd.protocol import NEED_DATA, SequenceSet, ServerConnection
from imapd.protocol import commands as c
from imapd.protocol import responses as r
from imapd.protocol.command_writer import write_command
from imapd.protocol.events import CommandReceived
from imapd.protocol.fetch_items import BinarySize, BodySection, FetchAttr, FetchBody
from imapd.protocol.response_codes import AppendUidCode, Code, CopyUidCode, NumberCode
from imapd.protocol.response_parser import parse_response
from imapd.protocol.response_writer import ResponseWriter
from imapd.protocol.search_keys import (
    DATE_KEYS,
    TEXT_KEYS,
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchModSeq,
    SearchNot,
    SearchObjectId,
    SearchOr,
    SearchSaveDateSupported,
    SearchSequence,
    SearchSize,
    SearchWithin,
)
from imapd.protocol.search_keys import SearchText as SText

from .helpers import events_of, parse_one

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

tags = st.from_regex(r"[A-Za-z0-9.]{1,8}", fullmatch=True)
text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20)  # NUL is not IMAP text
names = text.filter(lambda s: s.upper() != "INBOX") | st.just("INBOX")
numbers = st.integers(1, 2**32 - 1)
bound = st.none() | numbers
seqsets = st.just(SequenceSet(saved=True)) | st.lists(st.tuples(bound, bound), min_size=1, max_size=4).map(
    lambda rs: SequenceSet(tuple(rs)))
objectids = st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)
keywords = st.from_regex(r"[A-Za-z$][A-Za-z0-9_$]{0,8}", fullmatch=True)
flags = st.lists(st.sampled_from(["\\Seen", "\\Answered", "\\Deleted", "\\Flagged", "\\Draft"]) | keywords,
                 max_size=4, unique=True).map(tuple)
dates = st.dates(datetime.date(1900, 1, 1), datetime.date(2200, 12, 31))
fields = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}", fullmatch=True)
leaf_keys = st.one_of(
    st.just(SearchAll()),
    st.just(SearchSaveDateSupported()),
    st.builds(SearchFlag, st.sampled_from(["\\Seen", "\\Answered", "\\Draft"]) | keywords, st.booleans()),
    st.builds(SText, st.sampled_from(sorted(TEXT_KEYS)), text),
    st.builds(SearchHeader, fields, text),
    st.builds(SearchDate, st.sampled_from(sorted(DATE_KEYS)), dates),
    st.builds(SearchSize, st.booleans(), st.integers(0, 2**40)),
    st.builds(SearchSequence, seqsets, st.booleans()),
    st.builds(SearchModSeq, st.integers(0, 2**63 - 1), st.none() | st.tuples(text, st.sampled_from(["priv", "shared", "all"]))),
    st.builds(SearchWithin, st.booleans(), numbers),
    st.builds(SearchObjectId, st.sampled_from(["EMAILID", "THREADID"]), objectids),
)
search_keys = st.recursive(leaf_keys, lambda k: st.one_of(
    st.builds(SearchNot, k), st.builds(SearchOr, k, k), st.lists(k, min_size=1, max_size=3).map(lambda x: SearchAnd(tuple(x)))),
    max_leaves=8)
sections = st.builds(BodySection, st.lists(numbers, max_size=3).map(tuple)) | st.builds(
    BodySection, st.lists(numbers, max_size=2).map(tuple), st.sampled_from(["HEADER", "TEXT"])) | st.builds(
    BodySection, st.just(()), st.sampled_from(["HEADER.FIELDS", "HEADER.FIELDS.NOT"]), st.lists(fields, min_size=1, max_size=3).map(tuple))
fetch_items = st.one_of(
    st.sampled_from(["ENVELOPE", "FLAGS", "UID", "BODY", "BODYSTRUCTURE", "MODSEQ", "RFC822.SIZE"]).map(FetchAttr),
    st.builds(FetchBody, sections, st.none() | st.tuples(st.integers(0, 2**31), st.integers(1, 2**31)), st.booleans()),
    st.builds(FetchBody, st.builds(BodySection, st.lists(numbers, max_size=3).map(tuple)), st.none(), st.booleans(), st.just(True)),
    st.builds(BinarySize, st.lists(numbers, max_size=3).map(tuple)),
)
datetimes = st.datetimes(datetime.datetime(1900, 1, 1), datetime.datetime(2200, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=datetime.timezone(datetime.timedelta(minutes=(d.minute - 30) * 10))))
charsets = st.sampled_from(["UTF-8", "US-ASCII"])
# A plain literal may not carry NUL (RFC 3516: only literal8 may), so a non-binary message never holds one.
messages = st.builds(c.AppendMessage, st.binary(max_size=30), flags, st.none() | datetimes, st.booleans()).filter(
    lambda m: m.binary or b"\x00" not in m.data) | st.builds(
    c.AppendMessage, st.binary(max_size=30), flags, st.none(), st.just(True), st.just(True)) | st.builds(
    c.AppendMessage, st.just(b""), flags, st.none() | datetimes, catenate=st.lists(
        st.builds(c.CatenateText, st.binary(max_size=20).filter(lambda b: b"\0" not in b))
        | st.builds(c.CatenateText, st.binary(max_size=20), st.just(True))
        | st.builds(c.CatenateUrl, st.from_regex(r"/[A-Za-z0-9%]{1,10};UID=[1-9][0-9]{0,3}", fullmatch=True)),
        min_size=1, max_size=3).map(tuple))
commands = st.one_of(
    st.builds(c.Noop, tags), st.builds(c.Capability, tags), st.builds(c.Logout, tags), st.builds(c.Idle, tags),
    st.builds(c.Id, tags, st.none() | st.lists(st.tuples(text, st.none() | text), max_size=3).map(tuple)),
    st.builds(c.Enable, tags, st.lists(st.from_regex(r"[A-Z0-9=+-]{1,10}", fullmatch=True), min_size=1).map(tuple)),
    st.builds(c.Authenticate, tags, st.from_regex(r"[A-Z0-9-]{1,10}", fullmatch=True), st.none() | st.binary(max_size=20)),
    st.builds(c.Login, tags, text, text),
    st.builds(c.Select, tags, names, st.booleans(), st.none() | st.builds(
        c.QresyncParams, numbers, st.integers(1, 2**63 - 1), st.none() | seqsets.filter(lambda s: not s.saved),
        st.none() | st.tuples(seqsets, seqsets).filter(lambda p: not p[0].saved and not p[1].saved))),
    st.builds(c.Examine, tags, names),
    st.builds(c.Create, tags, names, st.lists(st.sampled_from(["\\Sent", "\\Drafts", "\\Trash"]), max_size=2).map(tuple)),
    st.builds(c.Delete, tags, names), st.builds(c.Rename, tags, names, names),
    st.builds(c.List, tags, text, st.lists(text, min_size=1, max_size=3).map(tuple),
              st.lists(st.sampled_from(["SUBSCRIBED", "REMOTE"]), max_size=2).map(tuple),
              st.lists(st.sampled_from(["CHILDREN", "SUBSCRIBED"]), max_size=2).map(tuple)),
    st.builds(c.Status, tags, names, st.lists(st.sampled_from(["MESSAGES", "UIDNEXT", "HIGHESTMODSEQ", "SIZE"]), min_size=1).map(tuple)),
    st.builds(c.Append, tags, names, st.lists(messages, min_size=1, max_size=3).map(tuple)),
    st.builds(c.Replace, tags, numbers, names, messages, st.booleans()),
    st.builds(c.Expunge, tags), st.builds(c.Expunge, tags, st.just(True), seqsets),
    st.builds(c.Search, tags, search_keys, st.booleans(), st.none() | charsets,
              st.none() | st.lists(st.sampled_from(["MIN", "MAX", "ALL", "COUNT", "SAVE"]), unique=True).map(tuple)),
    st.builds(c.Fetch, tags, seqsets, st.lists(fetch_items, min_size=1, max_size=4).map(tuple), st.booleans(),
              st.none() | st.integers(0, 2**63 - 1)),
    st.builds(c.Store, tags, seqsets, st.sampled_from(["", "+", "-"]), flags, st.booleans(), st.booleans(),
              st.none() | st.integers(0, 2**63 - 1)),
    st.builds(c.Copy, tags, seqsets, names, st.booleans()), st.builds(c.Move, tags, seqsets, names, st.booleans()),
    st.builds(c.Sort, tags, st.lists(st.builds(c.SortKey, st.sampled_from(["DATE", "SUBJECT", "SIZE", "DISPLAYFROM"]), st.booleans()),
                                     min_size=1, max_size=3).map(tuple), charsets, search_keys, st.booleans()),
    st.builds(c.Thread, tags, st.sampled_from(["REFERENCES", "ORDEREDSUBJECT"]), charsets, search_keys, st.booleans()),
    st.builds(c.Search, tags, search_keys, st.booleans(), st.none(), st.just(("UPDATE", "PARTIAL", "COUNT")),
              st.builds(c.PartialRange, st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1))
              | st.builds(c.PartialRange, st.integers(-(2**32 - 1), -1), st.integers(-(2**32 - 1), -1))),
    st.builds(c.CancelUpdate, tags, st.lists(tags, min_size=1, unique=True).map(tuple)),
    st.builds(c.XStateSave, tags), st.builds(c.XStateRestore, tags, st.from_regex(r"[A-Za-z0-9_.-]{1,40}", fullmatch=True)),
)


@FAST
@given(commands, st.booleans())
def test_command_round_trip(cmd: c.Command, utf8: bool) -> None:
    assert parse_one(write_command(cmd, utf8=utf8), utf8=utf8) == cmd


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_produce_events(data: bytes) -> None:
    conn = ServerConnection(max_line=64, max_literal=64)
    conn.receive_data(data)
    conn.receive_data(b"\r\n")
    for _ in range(1000):
        if conn.next_event() is NEED_DATA:
            break


SCRIPT = (b"a LOGIN {5}\r\nalice {3+}\r\npw!\r\nb SELECT inbox (CONDSTORE)\r\nc UID FETCH 1:* (FLAGS BODY.PEEK[HEADER]) "
          b"(CHANGEDSINCE 3)\r\nd FOO\r\ne APPEND x {3+}\r\nabc ~{2+}\r\n\x00\x01\r\nf NOOP " + b"x" * 80 + b"\r\ng NOOP\r\n")


def test_any_split_gives_the_same_events() -> None:
    whole = events_of(SCRIPT, max_line=64)
    assert sum(isinstance(e, CommandReceived) for e in whole) == 5
    for i in range(len(SCRIPT) + 1):
        assert events_of([SCRIPT[:i], SCRIPT[i:]], max_line=64) == whole
    assert events_of([SCRIPT[i : i + 1] for i in range(len(SCRIPT))], max_line=64) == whole


@FAST
@given(st.lists(st.integers(0, len(SCRIPT)), max_size=6))
def test_random_splits_give_the_same_events(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(SCRIPT)]
    chunks = [SCRIPT[a:b] for a, b in itertools.pairwise(points)]
    assert events_of(chunks, max_line=64) == events_of(SCRIPT, max_line=64)


def _elapsed(data: bytes) -> float:
    best = 1e9
    for _ in range(3):
        start = time.perf_counter()
        events_of([data[i : i + 4096] for i in range(0, len(data), 4096)], max_line=1 << 22)
        best = min(best, time.perf_counter() - start)
    return best


def test_parsing_time_is_linear() -> None:
    def workload(n: int) -> bytes:
        return (b"a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)])\r\n" * n
                + b"b SEARCH " + b"OR SEEN " * n + b"ALL\r\n"
                + b'c LOGIN "' + b"\\\\" * n + b'" {3+}\r\nabc\r\n'
                + b"d NOOP " + b'"' * n + b"\r\n")

    small, big = _elapsed(workload(300)), _elapsed(workload(3000))
    assert big < small * 30, (small, big)


idents = st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True)
codes = st.none() | st.builds(Code, st.sampled_from(["ALERT", "READ-ONLY", "X-STATE-STALE"])) | st.builds(
    NumberCode, st.sampled_from(["UIDNEXT", "UNSEEN", "HIGHESTMODSEQ"]), st.integers(0, 2**63)) | st.builds(
    AppendUidCode, numbers, seqsets.filter(lambda s: not s.saved)) | st.builds(
    CopyUidCode, numbers, seqsets.filter(lambda s: not s.saved), seqsets.filter(lambda s: not s.saved))
plain = st.from_regex(r"[A-Za-z0-9 ,.!]{0,20}", fullmatch=True).map(str.strip)
pairs = st.lists(st.tuples(text, st.none() | text), max_size=3).map(tuple)
threads = st.recursive(st.tuples(numbers), lambda t: st.tuples(numbers, t, t) | st.tuples(t, t), max_leaves=6)
responses = st.one_of(
    st.builds(r.TaggedResponse, idents, st.sampled_from(["OK", "NO", "BAD"]), plain, codes),
    st.builds(r.UntaggedStatus, st.sampled_from(["OK", "NO", "BAD", "BYE", "PREAUTH"]), plain, codes),
    st.builds(r.CapabilityResponse, st.lists(idents, min_size=1).map(tuple)),
    st.builds(r.ExistsResponse, st.integers(0, 2**32)), st.builds(r.ExpungeResponse, numbers),
    st.builds(r.VanishedResponse, seqsets.filter(lambda s: not s.saved), st.booleans()),
    st.builds(r.FlagsResponse, flags),
    st.builds(r.ListResponse, flags, st.none() | st.sampled_from(["/", ".", '"', "\\"]), text),
    st.builds(r.LsubResponse, flags, st.none() | st.just("/"), text),
    st.builds(r.StatusResponse, text, st.lists(st.tuples(st.sampled_from(["MESSAGES", "SIZE"]), st.integers(0, 2**40))
                                               | st.tuples(st.just("MAILBOXID"), st.builds(r.ObjectId, objectids))).map(tuple)),
    st.builds(r.SearchResponse, st.lists(numbers).map(tuple), st.none() | st.integers(1, 2**63)),
    st.builds(r.SortResponse, st.lists(numbers).map(tuple)),
    st.builds(r.EsearchResponse, st.none() | idents, st.booleans(),
              st.lists(st.tuples(st.sampled_from(["MIN", "MAX", "COUNT"]), numbers)).map(tuple)),
    st.builds(r.ThreadResponse, st.lists(threads, max_size=3).map(tuple)),
    st.builds(r.EnabledResponse, st.lists(idents).map(tuple)),
    st.builds(r.IdResponse, st.none() | pairs),
    st.builds(r.NamespaceResponse, st.none() | st.lists(st.tuples(text, st.none() | st.just("/")), min_size=1).map(tuple),
              st.none(), st.none()),
    st.builds(r.XStateResponse, st.from_regex(r"[A-Za-z0-9_.-]{1,40}", fullmatch=True)),
)


@FAST
@given(responses, st.booleans())
def test_response_round_trip(response: r.Response, utf8: bool) -> None:
    assert parse_response(ResponseWriter(utf8).write(response), utf8=utf8) == response


values = st.recursive(
    st.none() | st.integers(0, 2**63) | text | st.binary(max_size=20),
    lambda v: st.lists(v, max_size=4).map(tuple), max_leaves=10)


def _wire_value(v: object, utf8: bool) -> object:
    """What a value looks like after the trip: strings that need a literal come back as bytes."""
    if isinstance(v, tuple):
        return tuple(_wire_value(x, utf8) for x in v)
    if isinstance(v, str):
        from imapd.protocol.wire import string_bytes
        return v if string_bytes(v, utf8).startswith(b'"') else v.encode()
    return v


@FAST
@given(st.integers(1, 2**32 - 1), st.lists(st.tuples(st.sampled_from(["ENVELOPE", "X", "BODY[1.TEXT]<0>"]), values), min_size=1, max_size=4),
       st.booleans())
def test_fetch_round_trip(seq: int, items: list[tuple[str, object]], utf8: bool) -> None:
    data = ResponseWriter(utf8).write(r.FetchResponse(seq, items))  # type: ignore[arg-type]
    parsed = parse_response(data, utf8=utf8)
    assert isinstance(parsed, r.FetchResponse)
    assert parsed.seq == seq
    assert list(parsed.items) == [(k, _wire_value(v, utf8)) for k, v in items]
