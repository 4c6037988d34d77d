"""Response serialization: RFC examples, hostile strings, parse-back, and FETCH speed."""

from __future__ import annotations

import time

import pytest

from imapd.protocol import Atom, Literal8, Raw, SequenceSet
from imapd.protocol import responses as r
from imapd.protocol.response_codes import (
    AppendUidCode,
    BadCharsetCode,
    CapabilityCode,
    Code,
    CopyUidCode,
    ModifiedCode,
    NumberCode,
    PermanentFlagsCode,
)
from imapd.protocol.response_parser import parse_response
from imapd.protocol.response_writer import ResponseWriter

S = SequenceSet.parse
W = ResponseWriter()

EXAMPLES: list[tuple[r.Response, bytes]] = [
    (r.TaggedResponse("a1", "OK", "done"), b"a1 OK done\r\n"),
    (r.TaggedResponse("A142", "OK", "SELECT completed", Code("READ-WRITE")), b"A142 OK [READ-WRITE] SELECT completed\r\n"),
    (r.TaggedResponse("a", "NO", "x", Code("TRYCREATE")), b"a NO [TRYCREATE] x\r\n"),
    (r.TaggedResponse("a", "OK", "done", AppendUidCode(38505, S("3955"))), b"a OK [APPENDUID 38505 3955] done\r\n"),
    (r.TaggedResponse("a", "OK", "Done", CopyUidCode(38505, S("304,319:320"), S("3956:3958"))),
     b"a OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"),
    (r.TaggedResponse("d105", "OK", "Conditional STORE failed", ModifiedCode(S("7,9"))),
     b"d105 OK [MODIFIED 7,9] Conditional STORE failed\r\n"),
    (r.TaggedResponse("a", "NO", "stale", Code("X-STATE-STALE")), b"a NO [X-STATE-STALE] stale\r\n"),
    (r.UntaggedStatus("OK", "Predicted next UID", NumberCode("UIDNEXT", 4392)), b"* OK [UIDNEXT 4392] Predicted next UID\r\n"),
    (r.UntaggedStatus("OK", "Limited", PermanentFlagsCode(("\\Deleted", "\\Seen", "\\*"))),
     b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n"),
    (r.UntaggedStatus("OK", "ready", CapabilityCode(("IMAP4rev1", "LITERAL+"))), b"* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n"),
    (r.TaggedResponse("a", "NO", "bad charset", BadCharsetCode(("UTF-8",))), b'a NO [BADCHARSET ("UTF-8")] bad charset\r\n'),
    (r.UntaggedStatus("BYE", "Autologout; idle for too long"), b"* BYE Autologout; idle for too long\r\n"),
    (r.UntaggedStatus("OK", "", NumberCode("HIGHESTMODSEQ", 715194045007)), b"* OK [HIGHESTMODSEQ 715194045007]\r\n"),
    (r.ContinuationResponse("Ready"), b"+ Ready\r\n"),
    (r.CapabilityResponse(("IMAP4rev1", "STARTTLS", "AUTH=GSSAPI")), b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI\r\n"),
    (r.ExistsResponse(23), b"* 23 EXISTS\r\n"),
    (r.RecentResponse(5), b"* 5 RECENT\r\n"),
    (r.ExpungeResponse(3), b"* 3 EXPUNGE\r\n"),
    (r.VanishedResponse(S("405,407,410,425"), earlier=True), b"* VANISHED (EARLIER) 405,407,410,425\r\n"),
    (r.VanishedResponse(S("505,507")), b"* VANISHED 505,507\r\n"),
    (r.FlagsResponse(("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")),
     b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"),
    (r.ListResponse(("\\Noselect",), "/", "~/Mail/foo"), b'* LIST (\\Noselect) "/" "~/Mail/foo"\r\n'),
    (r.ListResponse((), None, "\u53f0\u5317"), b'* LIST () NIL "&U,BTFw-"\r\n'),
    (r.ListResponse(("\\NonExistent",), "/", "Fruit", (("CHILDINFO", ("SUBSCRIBED",)),)),
     b'* LIST (\\NonExistent) "/" "Fruit" ("CHILDINFO" ("SUBSCRIBED"))\r\n'),
    (r.LsubResponse((), ".", "#news.comp.mail.mime"), b'* LSUB () "." "#news.comp.mail.mime"\r\n'),
    (r.StatusResponse("blurdybloop", (("MESSAGES", 231), ("UIDNEXT", 44292))),
     b'* STATUS "blurdybloop" (MESSAGES 231 UIDNEXT 44292)\r\n'),
    (r.SearchResponse((2, 84, 882)), b"* SEARCH 2 84 882\r\n"),
    (r.SearchResponse(()), b"* SEARCH\r\n"),
    (r.SearchResponse((2, 5, 6), 917162500), b"* SEARCH 2 5 6 (MODSEQ 917162500)\r\n"),
    (r.EsearchResponse("A282", False, (("MIN", 2), ("COUNT", 3))), b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n'),
    (r.EsearchResponse("A283", True, (("ALL", S("4:18,21,28")),)), b'* ESEARCH (TAG "A283") UID ALL 4:18,21,28\r\n'),
    (r.SortResponse((5, 3, 4, 1, 2)), b"* SORT 5 3 4 1 2\r\n"),
    (r.ThreadResponse(((2,), (3, 6, (4, 23), (44, 7, 96)))), b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"),
    (r.ThreadResponse((((3,), (5,)),)), b"* THREAD ((3)(5))\r\n"),
    (r.ThreadResponse(()), b"* THREAD\r\n"),
    (r.EnabledResponse(("CONDSTORE",)), b"* ENABLED CONDSTORE\r\n"),
    (r.IdResponse((("name", "Cyrus"), ("version", None))), b'* ID ("name" "Cyrus" "version" NIL)\r\n'),
    (r.IdResponse(None), b"* ID NIL\r\n"),
    (r.NamespaceResponse((("", "/"),), None, (("Public Folders/", "/"),)),
     b'* NAMESPACE (("" "/")) NIL (("Public Folders/" "/"))\r\n'),
    (r.XStateResponse("abc.DEF-_1"), b"* X-STATE abc.DEF-_1\r\n"),
    (r.FetchResponse(12, [("FLAGS", [Atom("\\Seen")]), ("INTERNALDATE", "17-Jul-1996 02:44:25 -0700"), ("UID", 7)]),
     b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" UID 7)\r\n'),
    (r.FetchResponse(1, [("BODY[]", b"a\r\nb"), ("ENVELOPE", (None, "", 'q"\\'))]),
     b'* 1 FETCH (BODY[] {4}\r\na\r\nb ENVELOPE (NIL "" "q\\"\\\\"))\r\n'),
    (r.FetchResponse(1, [("BINARY[1]", Literal8(b"\x00\xff"))]), b"* 1 FETCH (BINARY[1] ~{2}\r\n\x00\xff)\r\n"),
]


@pytest.mark.parametrize(("response", "wire"), EXAMPLES, ids=[w[:40].decode("latin-1") for _, w in EXAMPLES])
def test_serialize_examples(response: r.Response, wire: bytes) -> None:
    assert W.write(response) == wire


def test_raw_values_are_verbatim() -> None:
    assert W.write(r.FetchResponse(1, [("BODYSTRUCTURE", Raw(b'("TEXT" "PLAIN")'))])) == (
        b'* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN"))\r\n'
    )


@pytest.mark.parametrize("value", ["", "a\r\nb", "caf\u00e9", "x\x00y", "z" * 5000, '"\\', "\ud800"])
def test_strings_never_break_the_line(value: str) -> None:
    data = W.write(r.FetchResponse(1, [("X", value)]))
    parsed = parse_response(data)
    assert isinstance(parsed, r.FetchResponse)
    got = parsed.items[0][1]
    assert (got.decode("utf-8", "replace") if isinstance(got, bytes) else got) in (value, value.encode("utf-8", "replace").decode())


def test_status_text_is_sanitized() -> None:
    assert W.write(r.TaggedResponse("a", "NO", "bad\r\nthing \u00e9")) == b"a NO bad  thing ?\r\n"


def test_utf8_mode_quotes_utf8() -> None:
    w = ResponseWriter(utf8=True)
    assert w.write(r.ListResponse((), "/", "Entw\u00fcrfe")) == '* LIST () "/" "Entw\u00fcrfe"\r\n'.encode()
    assert W.write(r.FetchResponse(1, [("X", "\u00e9")])) == b"* 1 FETCH (X {2}\r\n\xc3\xa9)\r\n"


@pytest.mark.parametrize(("response", "wire"), EXAMPLES, ids=[w[:40].decode("latin-1") for _, w in EXAMPLES])
def test_parse_back_examples(response: r.Response, wire: bytes) -> None:
    parsed = parse_response(wire)
    if isinstance(response, r.FetchResponse):
        assert isinstance(parsed, r.FetchResponse)
        assert W.write(parsed) == wire
    else:
        assert parsed == response


def test_fetch_serialization_is_fast() -> None:
    flags = [Atom("\\Seen"), Atom("$Forwarded")]
    responses = [
        r.FetchResponse(i, [("UID", i + 1000), ("FLAGS", flags), ("MODSEQ", (i * 7,)), ("RFC822.SIZE", 4242)])
        for i in range(1, 5001)
    ]
    write = W.write
    best = 1.0
    for _ in range(5):
        start = time.thread_time()  # CPU time: other processes on a busy machine do not count
        for resp in responses:
            write(resp)
        best = min(best, time.thread_time() - start)
    assert best < 0.1, best  # a few ms in practice; loose bound for slow CI machines
