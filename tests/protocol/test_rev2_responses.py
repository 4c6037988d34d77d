"""The response shapes an IMAP4rev2 (RFC 9051) session is sent that an IMAP4rev1 one is not, serialized
and parsed back: RFC 9051's examples, and UTF-8 where RFC 3501 had modified UTF-7."""

from __future__ import annotations

import pytest

from imapd.protocol import SequenceSet
from imapd.protocol import commands as c
from imapd.protocol import responses as r
from imapd.protocol.response_codes import Code
from imapd.protocol.response_parser import parse_response
from imapd.protocol.response_writer import ResponseWriter

from .helpers import parse_one

S = SequenceSet.parse
UTF8 = ResponseWriter(utf8=True)  # what a session writes once IMAP4rev2 is enabled
REV1 = ResponseWriter()

EXAMPLES: list[tuple[r.Response, bytes]] = [
    (r.EnabledResponse(("IMAP4rev2",)), b"* ENABLED IMAP4rev2\r\n"),  # RFC 9051 6.3.1
    (r.EnabledResponse(()), b"* ENABLED\r\n"),
    # RFC 9051 6.4.4: SEARCH answers ESEARCH; nothing found is the tag alone (with UID for UID SEARCH)
    (r.EsearchResponse("A283", False, ()), b'* ESEARCH (TAG "A283")\r\n'),
    (r.EsearchResponse("A284", True, ()), b'* ESEARCH (TAG "A284") UID\r\n'),
    (r.EsearchResponse("A285", False, (("ALL", S("43")),)), b'* ESEARCH (TAG "A285") ALL 43\r\n'),
    (r.EsearchResponse("A286", True, (("ALL", S("1:3,5")), ("MODSEQ", 917162500))),
     b'* ESEARCH (TAG "A286") UID ALL 1:3,5 MODSEQ 917162500\r\n'),
    # RFC 9051 6.3.2: the LIST response of SELECT, and [CLOSED] before it when a mailbox was selected
    (r.ListResponse(("\\HasNoChildren",), "/", "INBOX"), b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'),
    (r.UntaggedStatus("OK", "Previous mailbox closed", Code("CLOSED")), b"* OK [CLOSED] Previous mailbox closed\r\n"),
    # RFC 9051 7.1 response codes
    (r.TaggedResponse("a", "NO", "has children", Code("HASCHILDREN")), b"a NO [HASCHILDREN] has children\r\n"),
    (r.TaggedResponse("a", "NO", "cannot decode", Code("UNKNOWN-CTE")), b"a NO [UNKNOWN-CTE] cannot decode\r\n"),
    (r.TaggedResponse("a", "NO", "gone", Code("NONEXISTENT")), b"a NO [NONEXISTENT] gone\r\n"),
    # STATUS SIZE (RFC 9051 6.3.11), part of the base protocol now
    (r.StatusResponse("blurdybloop", (("MESSAGES", 231), ("SIZE", 44292))),
     b'* STATUS "blurdybloop" (MESSAGES 231 SIZE 44292)\r\n'),
]


@pytest.mark.parametrize(("response", "wire"), EXAMPLES, ids=[w[:40].decode("latin-1") for _, w in EXAMPLES])
def test_serialize_and_parse_back(response: r.Response, wire: bytes) -> None:
    assert UTF8.write(response) == wire
    assert parse_response(wire, utf8=True) == response


@pytest.mark.parametrize(("response", "rev2", "rev1"), [
    (r.ListResponse(("\\HasNoChildren",), "/", "Entwürfe"),
     '* LIST (\\HasNoChildren) "/" "Entwürfe"\r\n'.encode(), b'* LIST (\\HasNoChildren) "/" "Entw&APw-rfe"\r\n'),
    (r.StatusResponse("台北", (("MESSAGES", 1),)),
     '* STATUS "台北" (MESSAGES 1)\r\n'.encode(), b'* STATUS "&U,BTFw-" (MESSAGES 1)\r\n'),
    (r.ListResponse(("\\NonExistent", "\\Subscribed"), "/", "Café"),
     '* LIST (\\NonExistent \\Subscribed) "/" "Café"\r\n'.encode(), b'* LIST (\\NonExistent \\Subscribed) "/" "Caf&AOk-"\r\n'),
])
def test_mailbox_names_are_utf8_not_modified_utf7(response: r.Response, rev2: bytes, rev1: bytes) -> None:
    # RFC 9051 5.1: an IMAP4rev2 session names mailboxes in UTF-8; IMAP4rev1 keeps modified UTF-7
    assert UTF8.write(response) == rev2
    assert REV1.write(response) == rev1
    assert parse_response(rev2, utf8=True) == response
    assert parse_response(rev1) == response


@pytest.mark.parametrize("line", [b"t1 ENABLE IMAP4rev2", b"t1 ENABLE imap4REV2", b"t1 ENABLE IMAP4REV2"])
def test_enable_imap4rev2_parses_case_insensitively(line: bytes) -> None:
    # the session keeps the upper-case name, as statecodec's EXTENSION_REGISTRY spells it
    assert parse_one(line) == c.Enable("t1", ("IMAP4REV2",))
