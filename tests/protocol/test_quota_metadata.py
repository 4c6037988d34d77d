"""QUOTA (RFC 9208) and METADATA (RFC 5464) on the wire: parsing, serializing, round trips, with the
examples of the RFCs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imapd.protocol import commands as c
from imapd.protocol import responses as r
from imapd.protocol.command_writer import write_command
from imapd.protocol.events import ProtocolError
from imapd.protocol.response_codes import Code
from imapd.protocol.response_writer import ResponseWriter

from .helpers import events_of, parse_one

W = ResponseWriter()

EXAMPLES: list[tuple[bytes, c.Command]] = [
    # RFC 9208 4.1
    (b'G0001 GETQUOTA "!partition.sda4"', c.GetQuota("G0001", "!partition.sda4")),
    (b'a GETQUOTA ""', c.GetQuota("a", "")),
    (b"G0002 GETQUOTAROOT INBOX", c.GetQuotaRoot("G0002", "INBOX")),
    (b"G0002 getquotaroot inbox", c.GetQuotaRoot("G0002", "INBOX")),
    (b'S0000 SETQUOTA "User quota" (STORAGE 510)', c.SetQuota("S0000", "User quota", (("STORAGE", 510),))),
    (b'S1 SETQUOTA "" (storage 1 MESSAGE 9223372036854775807)',
     c.SetQuota("S1", "", (("STORAGE", 1), ("MESSAGE", 2**63 - 1)))),
    (b'S2 SETQUOTA "" ()', c.SetQuota("S2", "", ())),
    # RFC 5464 4.2 (options before the mailbox, as the grammar says, and after it, as its examples do)
    (b'a GETMETADATA "" /private/vendor/vendor.foo/comment',
     c.GetMetadata("a", "", ("/private/vendor/vendor.foo/comment",))),
    (b'a GETMETADATA "INBOX" (/shared/comment /private/comment)',
     c.GetMetadata("a", "INBOX", ("/shared/comment", "/private/comment"))),
    (b'a GETMETADATA (MAXSIZE 1024) "INBOX" ("/shared/comment" "/private/comment")',
     c.GetMetadata("a", "INBOX", ("/shared/comment", "/private/comment"), 1024, 0)),
    (b'a GETMETADATA "INBOX" (MAXSIZE 1024) ("/shared/comment" "/private/comment")',
     c.GetMetadata("a", "INBOX", ("/shared/comment", "/private/comment"), 1024, 0)),
    (b'a GETMETADATA "INBOX" (DEPTH 1) (/private/filters/values)',
     c.GetMetadata("a", "INBOX", ("/private/filters/values",), None, 1)),
    (b'a GETMETADATA (DEPTH infinity MAXSIZE 10) "" /shared',
     c.GetMetadata("a", "", ("/shared",), 10, None)),
    # RFC 5464 4.3
    (b"a SETMETADATA INBOX (/private/comment {33}\r\nMy new comment across\r\ntwo lines.)",
     c.SetMetadata("a", "INBOX", (("/private/comment", b"My new comment across\r\ntwo lines."),))),
    (b"a SETMETADATA INBOX (/private/comment NIL)", c.SetMetadata("a", "INBOX", (("/private/comment", None),))),
    (b'a SETMETADATA INBOX (/shared/comment "Shared comment" /private/comment "My comment")',
     c.SetMetadata("a", "INBOX", (("/shared/comment", b"Shared comment"), ("/private/comment", b"My comment")))),
    (b'a SETMETADATA "" (/shared/vendor/x ~{3+}\r\na\x00b)', c.SetMetadata("a", "", (("/shared/vendor/x", b"a\x00b"),))),
]


@pytest.mark.parametrize(("wire", "expected"), EXAMPLES, ids=[w[:40].decode("latin-1") for w, _ in EXAMPLES])
def test_parse_examples(wire: bytes, expected: c.Command) -> None:
    assert parse_one(wire) == expected
    assert parse_one(write_command(expected)) == expected


BAD = [
    b"a GETQUOTA",
    b"a GETQUOTAROOT",
    b'a SETQUOTA "" (STORAGE)',
    b'a SETQUOTA "" (STORAGE 1 STORAGE 2)',
    b'a SETQUOTA "" STORAGE 1',
    b"a GETMETADATA INBOX",
    b'a GETMETADATA (MAXSIZE 1024) "INBOX" "/shared/comment" ',
    b"a GETMETADATA (DEPTH 2) INBOX /shared/comment",
    b"a GETMETADATA (DEPTH 1 DEPTH 0) INBOX /shared/comment",
    b"a GETMETADATA (MAXSIZE -1) INBOX /shared/comment",
    b"a GETMETADATA (FOO 1) INBOX /shared/comment",
    b"a SETMETADATA INBOX ()",
    b"a SETMETADATA INBOX (/private/comment)",
    b"a SETMETADATA INBOX /private/comment x",
]


@pytest.mark.parametrize("wire", BAD, ids=[w.decode("latin-1") for w in BAD])
def test_bad_commands_are_syntax_errors_and_resynchronize(wire: bytes) -> None:
    events = events_of(wire + b"\r\na2 NOOP\r\n")
    assert isinstance(events[0], ProtocolError), events
    assert events[0].tag == "a" and not events[0].fatal
    assert events[1:] == [events_of(b"a2 NOOP\r\n")[0]]


RESPONSES: list[tuple[r.Response, bytes]] = [
    # RFC 9208 4.3
    (r.QuotaResponse("", (("STORAGE", 10, 512),)), b'* QUOTA "" (STORAGE 10 512)\r\n'),
    (r.QuotaResponse("!partition.sda4", (("STORAGE", 104, 10923847),)),
     b'* QUOTA "!partition.sda4" (STORAGE 104 10923847)\r\n'),
    (r.QuotaResponse("", (("STORAGE", 10, 512), ("MESSAGE", 3, 100))), b'* QUOTA "" (STORAGE 10 512 MESSAGE 3 100)\r\n'),
    (r.QuotaRootResponse("INBOX", ("",)), b'* QUOTAROOT "INBOX" ""\r\n'),
    (r.QuotaRootResponse("comp.mail.mime", ()), b'* QUOTAROOT "comp.mail.mime"\r\n'),
    (r.TaggedResponse("A003", "NO", "APPEND Failed", Code("OVERQUOTA")), b"A003 NO [OVERQUOTA] APPEND Failed\r\n"),
    # RFC 5464 4.4
    (r.MetadataResponse("", (("/private/vendor/vendor.foo/comment", b"My comment"),)),
     b'* METADATA "" (/private/vendor/vendor.foo/comment "My comment")\r\n'),
    (r.MetadataResponse("INBOX", (("/shared/comment", b"Shared comment"), ("/private/comment", b"My comment"))),
     b'* METADATA "INBOX" (/shared/comment "Shared comment" /private/comment "My comment")\r\n'),
    (r.MetadataResponse("INBOX", (("/private/comment", b"two\r\nlines"),)),
     b'* METADATA "INBOX" (/private/comment {10}\r\ntwo\r\nlines)\r\n'),
    (r.MetadataResponse("INBOX", (("/private/x", b'say "hi"\\'),)), b'* METADATA "INBOX" (/private/x "say \\"hi\\"\\\\")\r\n'),
    (r.MetadataResponse("INBOX", (("/private/x", b"a\x00b"),)), b'* METADATA "INBOX" (/private/x ~{3}\r\na\x00b)\r\n'),
    (r.MetadataResponse("INBOX", (("/private/x", None),)), b'* METADATA "INBOX" (/private/x NIL)\r\n'),
    (r.MetadataResponse("Entw&APw-rfe", (("/private/x", b"\xc3\xa9"),)),
     b'* METADATA "Entw&-APw-rfe" (/private/x {2}\r\n\xc3\xa9)\r\n'),
    (r.TaggedResponse("a", "OK", "GETMETADATA complete", Code("METADATA", "LONGENTRIES 2199")),
     b"a OK [METADATA LONGENTRIES 2199] GETMETADATA complete\r\n"),
    (r.TaggedResponse("a", "NO", "SETMETADATA failed", Code("METADATA", "MAXSIZE 1024")),
     b"a NO [METADATA MAXSIZE 1024] SETMETADATA failed\r\n"),
    (r.TaggedResponse("a", "NO", "SETMETADATA failed", Code("METADATA", "TOOMANY")),
     b"a NO [METADATA TOOMANY] SETMETADATA failed\r\n"),
    (r.TaggedResponse("a", "NO", "SETMETADATA failed", Code("METADATA", "NOPRIVATE")),
     b"a NO [METADATA NOPRIVATE] SETMETADATA failed\r\n"),
]


@pytest.mark.parametrize(("response", "wire"), RESPONSES, ids=[w[:40].decode("latin-1") for _, w in RESPONSES])
def test_serialize(response: r.Response, wire: bytes) -> None:
    assert W.write(response) == wire


entry_names = st.from_regex(r"/(private|shared)(/[a-z0-9.]{1,6}){1,3}", fullmatch=True)
roots = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.builds(c.GetQuota, st.just("t"), roots),
    st.builds(c.SetQuota, st.just("t"), roots,
              st.dictionaries(st.sampled_from(["STORAGE", "MESSAGE", "MAILBOX"]), st.integers(0, 2**63 - 1)).map(
                  lambda d: tuple(d.items()))),
    st.builds(c.GetMetadata, st.just("t"), st.sampled_from(["", "INBOX", "a b", "Sent"]),
              st.lists(entry_names, min_size=1, max_size=3).map(tuple), st.none() | st.integers(0, 2**31),
              st.sampled_from([0, 1, None])),
    st.builds(c.SetMetadata, st.just("t"), st.sampled_from(["", "INBOX", "x/y"]),
              st.lists(st.tuples(entry_names, st.none() | st.binary(max_size=40)), min_size=1, max_size=3).map(tuple)),
))
def test_round_trip(cmd: c.Command) -> None:
    assert parse_one(write_command(cmd)) == cmd
