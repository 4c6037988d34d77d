"""MULTIAPPEND (RFC 3502), CATENATE (RFC 4469), URL-PARTIAL (RFC 5550), REPLACE (RFC 8508): syntax.

Parsing of the RFCs' own examples, what must be refused, the serializer's round trip, the continuation
after each synchronizing literal, and the IMAP URL grammar.
"""

from __future__ import annotations

import datetime
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imapd.protocol import NEED_DATA, ServerConnection
from imapd.protocol import commands as c
from imapd.protocol.command_writer import write_command
from imapd.protocol.events import CommandReceived, ConnectionClosed, ContinuationRequest, ProtocolError
from imapd.protocol.fetch_items import BodySection
from imapd.protocol.imapurl import ImapUrl, UrlError, parse_imap_url

from .helpers import events_of, parse_one

T = c.CatenateText
U = c.CatenateUrl
M = c.AppendMessage
DRAFT_URL = "/Drafts;UIDVALIDITY=385759045/;UID=20"

RFC_3502_A003 = (
    b"A003 APPEND saved-messages (\\Seen) {310}\r\n" + b"m" * 310
    + b" (\\Seen) {328}\r\n" + b"n" * 328 + b"\r\n"
)

EXAMPLES: list[tuple[bytes, c.Command]] = [
    # RFC 3502 section 6, synchronizing literals
    (RFC_3502_A003, c.Append("A003", "saved-messages", (M(b"m" * 310, ("\\Seen",)), M(b"n" * 328, ("\\Seen",))))),
    # MULTIAPPEND mixing flags, dates, literal8 and a plain literal
    (b'a APPEND INBOX {1+}\r\nx () "01-Jan-2024 10:00:00 +0100" ~{2+}\r\n\x00y (\\Draft) {1+}\r\nz', c.Append(
        "a", "INBOX", (M(b"x"), M(b"\x00y", (), datetime.datetime(2024, 1, 1, 10, 0, tzinfo=datetime.timezone(
            datetime.timedelta(hours=1))), True), M(b"z", ("\\Draft",))))),
    # IMAPClient's multiappend puts two spaces between two literals: accepted
    (b"a APPEND X {1+}\r\nx  {1+}\r\ny", c.Append("a", "X", (M(b"x"), M(b"y")))),
    # RFC 4469 section 6, first example (literals as LITERAL+ here; the continuation test sends them sync)
    (b"A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL \"" + DRAFT_URL.encode()
     + b"/;section=HEADER\" TEXT {6+}\r\n\r\n--\r\n URL \"" + DRAFT_URL.encode() + b"/;section=1.MIME\" URL \""
     + DRAFT_URL.encode() + b"/;section=1\" TEXT {2+}\r\n--)", c.Append("A003", "Drafts", (M(
         b"", ("\\Seen", "\\Draft", "$MDNSent"), catenate=(
             U(DRAFT_URL + "/;section=HEADER"), T(b"\r\n--\r\n"), U(DRAFT_URL + "/;section=1.MIME"),
             U(DRAFT_URL + "/;section=1"), T(b"--"))),))),
    # RFC 4469 with MULTIAPPEND: a CATENATE message then a literal one; lower-case keywords, atom URL
    (b"a APPEND Sent catenate (url /INBOX;UID=1 text {1+}\r\n!) {2+}\r\nhi", c.Append(
        "a", "Sent", (M(b"", catenate=(U("/INBOX;UID=1"), T(b"!"))), M(b"hi")))),
    # RFC 6855 4: a UTF8 cat-part
    (b"a APPEND Sent CATENATE (UTF8 (~{2+}\r\nhi) URL \"/INBOX;UID=1\")", c.Append(
        "a", "Sent", (M(b"", catenate=(T(b"hi", utf8=True), U("/INBOX;UID=1"))),))),
    # RFC 8508 examples
    (b"A003 REPLACE 4 Drafts (\\Seen \\Draft) {5+}\r\nDraft", c.Replace(
        "A003", 4, "Drafts", M(b"Draft", ("\\Seen", "\\Draft")))),
    (b"A004 UID REPLACE 2000 Drafts (\\Seen \\Draft) {5}\r\nDraft", c.Replace(
        "A004", 2000, "Drafts", M(b"Draft", ("\\Seen", "\\Draft")), uid=True)),
    (b"a UID REPLACE 7 Drafts CATENATE (URL \"/Drafts;UID=7/;SECTION=HEADER\" TEXT {2+}\r\nhi)", c.Replace(
        "a", 7, "Drafts", M(b"", catenate=(U("/Drafts;UID=7/;SECTION=HEADER"), T(b"hi"))), uid=True)),
]


@pytest.mark.parametrize(("wire", "expected"), EXAMPLES, ids=[w[:30].decode("latin-1") for w, _ in EXAMPLES])
def test_parse_examples(wire: bytes, expected: c.Command) -> None:
    assert parse_one(wire) == expected


@pytest.mark.parametrize("cmd", [cmd for _, cmd in EXAMPLES], ids=[w[:30].decode("latin-1") for w, _ in EXAMPLES])
def test_written_commands_parse_back(cmd: c.Command) -> None:
    assert parse_one(write_command(cmd)) == cmd


BAD = [
    b"a APPEND Drafts CATENATE ()",                          # at least one part
    b"a APPEND Drafts CATENATE (TEXT \"quoted\")",          # TEXT takes a literal
    b"a APPEND Drafts CATENATE (TEXT ~{1+}\r\nx)",          # ... not a literal8
    b"a APPEND Drafts CATENATE (FILE {1+}\r\nx)",           # unknown part
    b"a APPEND Drafts CATENATE (URL \"/INBOX;UID=1\"",      # unclosed
    b"a APPEND Drafts CATENATE URL \"/INBOX;UID=1\"",       # no parentheses
    b"a APPEND Drafts CATENATE (URL \"/INBOX;UID=1\")) ",   # trailing garbage
    b"a APPEND Drafts {1+}\r\nx garbage",                  # not a second message
    b"a REPLACE 0 Drafts {1+}\r\nx",                       # message numbers start at 1
    b"a REPLACE 1 Drafts",                                  # no message
    b"a REPLACE 1 Drafts {1+}\r\nx {1+}\r\ny",            # REPLACE takes one message only
    b"a UID REPLACE * Drafts {1+}\r\nx",                   # one number, not a set
]


@pytest.mark.parametrize("wire", BAD, ids=[w[:40].decode("latin-1") for w in BAD])
def test_refused(wire: bytes) -> None:
    events = events_of(wire + b"\r\nb NOOP\r\n")
    assert isinstance(events[0], ProtocolError) and events[0].tag == "a" and not events[0].fatal, events
    assert events[1:] == [CommandReceived(c.Noop("b"))]


def test_every_synchronizing_literal_gets_its_continuation() -> None:
    """RFC 3502 and RFC 4469 examples with synchronizing literals: one ``+`` per literal, one command."""
    conn = ServerConnection()
    conn.receive_data(b"A003 APPEND saved-messages (\\Seen) {3}\r\n")
    assert conn.next_event() == ContinuationRequest()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"abc (\\Seen) {3}\r\n")
    assert conn.next_event() == ContinuationRequest()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"def CATENATE (TEXT {2}\r\n")
    assert conn.next_event() == ContinuationRequest()
    conn.receive_data(b"gh URL \"/INBOX;UID=1\" TEXT {1}\r\n")
    assert conn.next_event() == ContinuationRequest()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"i)\r\n")
    assert conn.next_event() == CommandReceived(c.Append("A003", "saved-messages", (
        M(b"abc", ("\\Seen",)), M(b"def", ("\\Seen",)), M(b"", catenate=(T(b"gh"), U("/INBOX;UID=1"), T(b"i")))),
    ))


def test_a_multiappend_cut_off_yields_no_command() -> None:
    """All or none on the wire: a MULTIAPPEND whose client goes away mid-way never becomes a command."""
    events = events_of([b"a APPEND INBOX {3+}\r\nabc {3}\r\n", b"de"], eof=True)
    assert events == [ContinuationRequest(), ConnectionClosed()]


def test_an_oversized_message_refuses_the_whole_multiappend() -> None:
    events = events_of(b"a APPEND INBOX {3+}\r\nabc {2000+}\r\n" + b"x" * 2000 + b"\r\nb NOOP\r\n", max_literal=1000)
    assert events == [ProtocolError("a", "TOOBIG", "Literal too large"), CommandReceived(c.Noop("b"))]


# -- IMAP URLs -----------------------------------------------------------------------------------------------
URLS: list[tuple[str, ImapUrl]] = [
    (DRAFT_URL + "/;section=HEADER", ImapUrl("Drafts", 20, 385759045, BodySection((), "HEADER"))),
    (DRAFT_URL + "/;section=1.MIME", ImapUrl("Drafts", 20, 385759045, BodySection((1,), "MIME"))),
    # RFC 4469's second example leaves out the "/" before ;section
    ("/INBOX;UIDVALIDITY=785799047/;UID=113330;section=1.5.9", ImapUrl("INBOX", 113330, 785799047,
                                                                       BodySection((1, 5, 9)))),
    ("/inbox/;uid=4", ImapUrl("INBOX", 4)),
    ("/Dr%C3%A4fts/2024/;UID=9", ImapUrl("Dr\u00e4fts/2024", 9)),
    # RFC 5550 partial, with and without a length
    ("/INBOX/;UID=4/;PARTIAL=0.1024", ImapUrl("INBOX", 4, partial=(0, 1024))),
    ("/INBOX/;UID=4/;SECTION=TEXT/;PARTIAL=17", ImapUrl("INBOX", 4, section=BodySection((), "TEXT"), partial=(17, None))),
    ("/INBOX/;UID=4/;SECTION=HEADER.FIELDS%20(To%20From)", ImapUrl(
        "INBOX", 4, section=BodySection((), "HEADER.FIELDS", ("To", "From")))),
    ("imap://alice@mail.example.org/INBOX/;UID=4", ImapUrl("INBOX", 4, user="alice", absolute=True,
                                                          host="mail.example.org")),
    ("IMAP://a%40b;AUTH=*@host:143/Sent;UIDVALIDITY=3/;UID=1", ImapUrl(
        "Sent", 1, 3, user="a@b", absolute=True, host="host")),
    ("imap://host/INBOX/;UID=1", ImapUrl("INBOX", 1, absolute=True, host="host")),
]


@pytest.mark.parametrize(("url", "expected"), URLS, ids=[u for u, _ in URLS])
def test_urls(url: str, expected: ImapUrl) -> None:
    assert parse_imap_url(url) == expected


BAD_URLS = [
    "",
    "/Drafts",                                   # no message
    "/Drafts;UIDVALIDITY=1",                     # still no message
    "INBOX/;UID=1",                              # relative to what?
    "//host/INBOX/;UID=1",                       # network-path reference
    "http://host/INBOX/;UID=1",
    "imap:///INBOX/;UID=1",                      # no host
    "imap://host",                               # no path
    "/INBOX/;UID=0",
    "/INBOX/;UID=99999999999",
    "/INBOX/;UID=1;UID=2",
    "/INBOX/;UID=1;UIDVALIDITY=3",               # out of order
    "/INBOX/;UIDVALIDITY=3/;UID=1",              # UIDVALIDITY belongs to the mailbox
    "/INBOX/;UID=1/;SECTION=",
    "/INBOX/;UID=1/;SECTION=1.BOGUS",
    "/INBOX/;UID=1/;SECTION=0",
    "/INBOX/;UID=1/;PARTIAL=1.0",                # a length is non-zero
    "/INBOX/;UID=1/;PARTIAL=.5",
    "/INBOX/;UID=1/;URLAUTH=anonymous:internal:0123", # no URLAUTH here
    "/INBOX/;UID=1/;EXPIRE=2030-01-01T00:00:00Z",
    "/INBOX?SUBJECT%20x",                        # a message list
    "/INBOX/;UID=1 ",
    "/%FF/;UID=1",                               # not UTF-8
    "/;UID=1",                                   # no mailbox
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_urls(url: str) -> None:
    with pytest.raises(UrlError):
        parse_imap_url(url)


URL_ALPHABET = "/;=.%0123456789ABCDEFimapINBOXUIDVALIDTYSECTNHRPL:@()*-_~&'!$+,xyz\u00e4 ]<>"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=URL_ALPHABET, max_size=80) | st.from_regex(
    r"(imap://[a-z]{0,3}@h)?/[A-Za-z%0-9]{0,6}(;UIDVALIDITY=[0-9]{1,3})?/?;UID=[0-9]{0,3}(/?;SECTION=[A-Z0-9.%()]{0,12})?"
    r"(/?;PARTIAL=[0-9.]{0,5})?", fullmatch=True))
def test_url_parser_only_ever_raises_url_error(url: str) -> None:
    try:
        parsed = parse_imap_url(url)
    except UrlError:
        return
    assert parsed.uid >= 1 and parsed.mailbox


mailbox_names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(
    lambda n: n.upper() != "INBOX")


@settings(max_examples=200, deadline=None)
@given(mailbox_names, st.integers(1, 2**32 - 1), st.none() | st.integers(1, 2**32 - 1),
       st.none() | st.sampled_from([BodySection((1, 2)), BodySection((), "TEXT"), BodySection((3,), "MIME"),
                                    BodySection((), "HEADER.FIELDS", ("Subject", "To"))]),
       st.none() | st.tuples(st.integers(0, 2**32 - 1), st.none() | st.integers(1, 2**32 - 1)),
       st.none() | st.sampled_from(["alice", "a@b.example", "\u00fcser"]))
def test_a_url_built_from_its_parts_parses_back(mailbox: str, uid: int, uidvalidity: int | None,
                                                section: BodySection | None, partial: tuple[int, int | None] | None,
                                                user: str | None) -> None:
    url = "/" + quote(mailbox, safe="")
    if uidvalidity is not None:
        url += f";UIDVALIDITY={uidvalidity}"
    url += f"/;UID={uid}"
    if section is not None:
        url += "/;SECTION=" + quote(str(section), safe="()")
    if partial is not None:
        url += f"/;PARTIAL={partial[0]}" + (f".{partial[1]}" if partial[1] is not None else "")
    if user is not None:
        url = "imap://" + quote(user, safe="") + "@mail.example" + url
    assert parse_imap_url(url) == ImapUrl(mailbox, uid, uidvalidity, section, partial, user, user is not None,
                                          "mail.example" if user is not None else "")
