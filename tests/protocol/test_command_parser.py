"""Table-driven command parsing, using the examples of RFC 3501/9051 and the extension RFCs."""

from __future__ import annotations

import datetime

import pytest

from imapd.protocol import commands as c
from imapd.protocol.events import ProtocolError
from imapd.protocol.fetch_items import BinarySize, BodySection, FetchAttr, FetchBody
from imapd.protocol.search_keys import (
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchSequence,
    SearchSize,
    SearchText,
)
from imapd.protocol.sequence import SequenceSet
from imapd.protocol.values import UndecodableName

from .helpers import events_of, parse_one

S = SequenceSet.parse
PST = datetime.timezone(datetime.timedelta(hours=-8))

EXAMPLES: list[tuple[bytes, c.Command]] = [
    # RFC 3501 section 6 / 8
    (b"abcd CAPABILITY", c.Capability("abcd")),
    (b"a002 NOOP", c.Noop("a002")),
    (b"A023 LOGOUT", c.Logout("A023")),
    (b"a001 STARTTLS", c.StartTLS("a001")),
    (b"A001 AUTHENTICATE GSSAPI", c.Authenticate("A001", "GSSAPI")),
    (b"a001 LOGIN SMITH SESAME", c.Login("a001", "SMITH", "SESAME")),
    (b'a001 login "fred" {4+}\r\npass', c.Login("a001", "fred", "pass")),
    (b"A142 SELECT INBOX", c.Select("A142", "INBOX")),
    (b"A142 select inbox", c.Select("A142", "INBOX")),
    (b"A932 EXAMINE blurdybloop", c.Examine("A932", "blurdybloop")),
    (b"A003 CREATE owatagusiam/", c.Create("A003", "owatagusiam/")),
    (b"A683 DELETE blurdybloop", c.Delete("A683", "blurdybloop")),
    (b"A683 RENAME blurdybloop sarasoop", c.Rename("A683", "blurdybloop", "sarasoop")),
    (b"A002 SUBSCRIBE #news.comp.mail.mime", c.Subscribe("A002", "#news.comp.mail.mime")),
    (b"A002 UNSUBSCRIBE #news.comp.mail.mime", c.Unsubscribe("A002", "#news.comp.mail.mime")),
    (b'A101 LIST "" ""', c.List("A101", "", ("",))),
    (b"A102 LIST #news.comp.mail.misc \"\"", c.List("A102", "#news.comp.mail.misc", ("",))),
    (b"A202 LIST ~/Mail/ %", c.List("A202", "~/Mail/", ("%",))),
    (b'A002 LSUB "#news." "comp.mail.*"', c.Lsub("A002", "#news.", "comp.mail.*")),
    (b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)", c.Status("A042", "blurdybloop", ("UIDNEXT", "MESSAGES"))),
    (
        b'A003 APPEND saved-messages (\\Seen) "07-Feb-1994 21:52:25 -0800" {5}\r\nhello',
        c.Append(
            "A003",
            "saved-messages",
            (c.AppendMessage(b"hello", ("\\Seen",), datetime.datetime(1994, 2, 7, 21, 52, 25, tzinfo=PST)),),
        ),
    ),
    (b"FXXZ CHECK", c.Check("FXXZ")),
    (b"A341 CLOSE", c.Close("A341")),
    (b"A202 EXPUNGE", c.Expunge("A202")),
    (
        b'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
        c.Search(
            "A282",
            SearchAnd(
                (
                    SearchFlag("\\Flagged"),
                    SearchDate("SINCE", datetime.date(1994, 2, 1)),
                    SearchNot(SearchText("FROM", "Smith")),
                )
            ),
        ),
    ),
    (
        b"A284 SEARCH CHARSET UTF-8 TEXT {6}\r\nXXXXXX",
        c.Search("A284", SearchText("TEXT", "XXXXXX"), charset="UTF-8"),
    ),
    (
        b'A285 SEARCH CHARSET ISO-8859-1 SUBJECT "caf\xe9"',
        c.Search("A285", SearchText("SUBJECT", b"caf\xe9"), charset="ISO-8859-1"),
    ),
    (b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])", c.Fetch(
        "A654",
        S("2:4"),
        (FetchAttr("FLAGS"), FetchBody(BodySection((), "HEADER.FIELDS", ("DATE", "FROM")))),
    )),
    (b"A003 STORE 2:4 +FLAGS (\\Deleted)", c.Store("A003", S("2:4"), "+", ("\\Deleted",))),
    (b"A003 STORE 2:4 -flags.silent \\deleted $Junk", c.Store("A003", S("2:4"), "-", ("\\Deleted", "$Junk"), silent=True)),
    (b"A003 COPY 2:4 MEETING", c.Copy("A003", S("2:4"), "MEETING")),
    (b"A999 UID FETCH 4827313:4828442 FLAGS", c.Fetch("A999", S("4827313:4828442"), (FetchAttr("FLAGS"),), uid=True)),
    (b"a FETCH 1 ALL", c.Fetch("a", S("1"), (
        FetchAttr("FLAGS"), FetchAttr("INTERNALDATE"), FetchAttr("RFC822.SIZE"), FetchAttr("ENVELOPE")))),
    (b"a FETCH 1 fast", c.Fetch("a", S("1"), (FetchAttr("FLAGS"), FetchAttr("INTERNALDATE"), FetchAttr("RFC822.SIZE")))),
    (b"a FETCH 1:* (BODY.PEEK[1.2.MIME] BODY[]<0.2048> BODY[3.TEXT])", c.Fetch("a", S("1:*"), (
        FetchBody(BodySection((1, 2), "MIME"), peek=True),
        FetchBody(BodySection(), partial=(0, 2048)),
        FetchBody(BodySection((3,), "TEXT")),
    ))),
    (b"a FETCH 1 BODY[HEADER.FIELDS.NOT (Received)]", c.Fetch("a", S("1"), (
        FetchBody(BodySection((), "HEADER.FIELDS.NOT", ("Received",))),))),
    # RFC 9051 / extensions
    (b"a UNSELECT", c.Unselect("a")),
    (b"A0004 MOVE 1:3 Archive", c.Move("A0004", S("1:3"), "Archive")),
    (b"a UID MOVE 42:69 foo", c.Move("a", S("42:69"), "foo", uid=True)),
    (b"A003 UID EXPUNGE 3000:3002", c.Expunge("A003", True, S("3000:3002"))),
    (b"t ENABLE CONDSTORE X-GOOD-IDEA", c.Enable("t", ("CONDSTORE", "X-GOOD-IDEA"))),
    (b'a023 ID ("name" "sodr" "version" "19.34" "vendor" NIL)', c.Id(
        "a023", (("name", "sodr"), ("version", "19.34"), ("vendor", None)))),
    (b"a ID NIL", c.Id("a", None)),
    (b"A001 NAMESPACE", c.Namespace("A001")),
    (b"a002 IDLE", c.Idle("a002")),
    # RFC 4959 SASL-IR
    (b"a AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=", c.Authenticate("a", "PLAIN", b"test\x00test\x00test")),
    (b"a AUTHENTICATE EXTERNAL =", c.Authenticate("a", "EXTERNAL", b"")),
    # RFC 7888 LITERAL+
    (b"A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man", c.Login("A001", "FRED FOOBAR", "fat man")),
    # RFC 7162 CONDSTORE / QRESYNC
    (b"a103 SELECT INBOX (CONDSTORE)", c.Select("a103", "INBOX", condstore=True)),
    (b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))", c.Select(
        "A02", "INBOX", qresync=c.QresyncParams(67890007, 20050715194045000, S("41,43:211,214:541")))),
    (b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 "
     b"15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))", c.Select(
        "B04", "INBOX", qresync=c.QresyncParams(67890007, 90060115194045000, S("1:29997"), (
            S("5000,7500,9000,9990:9999"),
            S("15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997"))))),
    (b"s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)", c.Fetch(
        "s100", S("300:500"), (FetchAttr("FLAGS"),), uid=True, changedsince=12345, vanished=True)),
    (b"a FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 12345)", c.Fetch(
        "a", S("1:*"), (FetchAttr("FLAGS"), FetchAttr("MODSEQ")), changedsince=12345)),
    (b"d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)", c.Store(
        "d105", S("7,5,9"), "+", ("\\Deleted",), silent=True, unchangedsince=320162338)),
    (b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338', c.Search(
        "a", SearchModSeq(620162338, ("/flags/\\draft", "all")))),
    (b"a SEARCH OR NOT MODSEQ 720162338 LARGER 50000", c.Search(
        "a", SearchOr(SearchNot(SearchModSeq(720162338)), SearchSize(True, 50000)))),
    (b"A042 STATUS blurdybloop (UIDNEXT MESSAGES HIGHESTMODSEQ SIZE)", c.Status(
        "A042", "blurdybloop", ("UIDNEXT", "MESSAGES", "HIGHESTMODSEQ", "SIZE"))),
    # RFC 4731 ESEARCH, RFC 5182 SEARCHRES
    (b"A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"", c.Search(
        "A282", SearchAnd((SearchFlag("\\Flagged"), SearchDate("SINCE", datetime.date(1994, 2, 1)),
                           SearchNot(SearchText("FROM", "Smith")))), return_options=("MIN", "COUNT"))),
    (b"A283 SEARCH RETURN () FLAGGED", c.Search("A283", SearchFlag("\\Flagged"), return_options=())),
    (b"A301 UID SEARCH RETURN (SAVE) SINCE 1-Jan-2004 NOT FROM \"Smith\" UID 380:500", c.Search(
        "A301", SearchAnd((SearchDate("SINCE", datetime.date(2004, 1, 1)), SearchNot(SearchText("FROM", "Smith")),
                           SearchSequence(S("380:500"), uid=True))), uid=True, return_options=("SAVE",))),
    (b"A302 COPY $ \"Other Messages\"", c.Copy("A302", SequenceSet(saved=True), "Other Messages")),
    (b"A303 UID SEARCH UID $ SMALLER 4096", c.Search("A303", SearchAnd((
        SearchSequence(SequenceSet(saved=True), uid=True), SearchSize(False, 4096))), uid=True)),
    # RFC 5256 SORT / THREAD, RFC 5267 ESORT, RFC 5957 DISPLAY
    (b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994", c.Sort(
        "A282", (c.SortKey("SUBJECT"),), "UTF-8", SearchDate("SINCE", datetime.date(1994, 2, 1)))),
    (b"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL", c.Sort(
        "A283", (c.SortKey("SUBJECT"), c.SortKey("DATE", True)), "UTF-8", SearchAll())),
    (b"A284 UID SORT (SUBJECT) US-ASCII TEXT \"not in mailbox\"", c.Sort(
        "A284", (c.SortKey("SUBJECT"),), "US-ASCII", SearchText("TEXT", "not in mailbox"), uid=True)),
    (b"A1 SORT RETURN (MIN MAX) (DISPLAYFROM REVERSE DISPLAYTO ARRIVAL CC FROM SIZE TO) UTF-8 UNDELETED", c.Sort(
        "A1", (c.SortKey("DISPLAYFROM"), c.SortKey("DISPLAYTO", True), c.SortKey("ARRIVAL"), c.SortKey("CC"),
               c.SortKey("FROM"), c.SortKey("SIZE"), c.SortKey("TO")), "UTF-8",
        SearchFlag("\\Deleted", False), return_options=("MIN", "MAX"))),
    (b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000", c.Thread(
        "A283", "ORDEREDSUBJECT", "UTF-8", SearchDate("SINCE", datetime.date(2000, 3, 5)))),
    (b"A284 UID THREAD REFERENCES US-ASCII TEXT \"gewp\"", c.Thread(
        "A284", "REFERENCES", "US-ASCII", SearchText("TEXT", "gewp"), uid=True)),
    # RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE
    (b'A02 LIST (SUBSCRIBED) "" "*"', c.List("A02", "", ("*",), ("SUBSCRIBED",))),
    (b'A03 LIST () "" "%" RETURN (CHILDREN)', c.List("A03", "", ("%",), (), ("CHILDREN",))),
    (b'A04 LIST (REMOTE SUBSCRIBED RECURSIVEMATCH) "" "*" RETURN (SUBSCRIBED)', c.List(
        "A04", "", ("*",), ("REMOTE", "SUBSCRIBED", "RECURSIVEMATCH"), ("SUBSCRIBED",))),
    (b'A05 LIST "" ("INBOX" "Drafts" %/%)', c.List("A05", "", ("INBOX", "Drafts", "%/%"))),
    (b'A10 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))', c.List(
        "A10", "", ("%",), (), ("STATUS",), ("MESSAGES", "UNSEEN"))),
    (b't1 LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)', c.List("t1", "", ("*",), ("SPECIAL-USE",), ("SPECIAL-USE",))),
    (b"t1 CREATE MySpecial (USE (\\Drafts \\Sent))", c.Create("t1", "MySpecial", ("\\Drafts", "\\Sent"))),
    # RFC 3516 BINARY
    (b"a FETCH 1 (BINARY[1.2]<0.100> BINARY.PEEK[3] BINARY.SIZE[2])", c.Fetch("a", S("1"), (
        FetchBody(BodySection((1, 2)), (0, 100), binary=True),
        FetchBody(BodySection((3,)), peek=True, binary=True),
        BinarySize((2,)),
    ))),
    (b"a APPEND foo ~{3+}\r\n\x00\x01\x02", c.Append("a", "foo", (c.AppendMessage(b"\x00\x01\x02", binary=True),))),
    # RFC 3502 MULTIAPPEND
    (b"A003 APPEND saved-messages (\\Seen) {3+}\r\nabc (\\Seen) {3+}\r\ndef", c.Append(
        "A003", "saved-messages", (c.AppendMessage(b"abc", ("\\Seen",)), c.AppendMessage(b"def", ("\\Seen",))))),
    # RFC 6855 UTF8=ACCEPT
    (b"a APPEND Sent UTF8 (~{2+}\r\nhi)", c.Append("a", "Sent", (c.AppendMessage(b"hi", binary=True, utf8=True),))),
    # mUTF-7 names
    (b"a SELECT ~peter/mail/&U,BTFw-/&ZeVnLIqe-", c.Select("a", "~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e")),
    # X-STATE
    (b"a X-STATE SAVE", c.XStateSave("a")),
    (b"a x-state restore abc-DEF_12.3", c.XStateRestore("a", "abc-DEF_12.3")),
    # search key coverage
    (b"a SEARCH HEADER X-Spam yes KEYWORD $Junk UNKEYWORD foo SENTON 2-Mar-2020 BEFORE \"3-Mar-2020\" NEW OLD", c.Search(
        "a", SearchAnd((SearchHeader("X-Spam", "yes"), SearchFlag("$Junk"), SearchFlag("foo", False),
                        SearchDate("SENTON", datetime.date(2020, 3, 2)), SearchDate("BEFORE", datetime.date(2020, 3, 3)),
                        SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False))), SearchFlag("\\Recent", False))))),
    (b"a SEARCH (OR 1:5 7 (ANSWERED UNDRAFT))", c.Search("a", SearchAnd((SearchOr(
        SearchSequence(S("1:5")), SearchSequence(S("7"))),
        SearchAnd((SearchFlag("\\Answered"), SearchFlag("\\Draft", False))))))),
]


@pytest.mark.parametrize(("wire", "expected"), EXAMPLES, ids=[w[:40].decode("latin-1") for w, _ in EXAMPLES])
def test_parse_examples(wire: bytes, expected: c.Command) -> None:
    assert parse_one(wire) == expected


@pytest.mark.parametrize("name", [b"&Jjo", b"a&b", b"!#$&'+,-.0123456789:;<=>?@^_`|[}"])
def test_names_not_modified_utf7_parse_but_are_marked(name: bytes) -> None:
    # Valid syntax (RFC 3501 9: astring), invalid modified UTF-7 (5.1.3): the command decides, not BAD.
    cmd = parse_one(b"a SELECT " + name)
    assert isinstance(cmd, c.Select) and isinstance(cmd.mailbox, UndecodableName)
    assert cmd.mailbox == name.decode()
    listing = parse_one(b'a LIST "" ' + name)
    assert isinstance(listing, c.List) and isinstance(listing.patterns[0], UndecodableName)


def test_utf8_mode_mailbox_names() -> None:
    assert parse_one('a SELECT "Entw\u00fcrfe"'.encode(), utf8=True) == c.Select("a", "Entw\u00fcrfe")
    assert parse_one(b"a SELECT &AOk-", utf8=True) == c.Select("a", "&AOk-")


BAD: list[tuple[bytes, str | None]] = [
    (b"a FOO", "a"),
    (b"+a NOOP", None),
    (b"a NOOP extra", "a"),
    (b'a LOGIN "unterminated', "a"),
    (b"a LOGIN fred", "a"),
    (b"a SELECT \xc3\xa9t\xc3\xa9", "a"),
    (b"a STORE 1 +FLAGS (\\Recent)", "a"),
    (b"a STORE 1 +FLAGS (\\Bogus)", "a"),
    (b"a FETCH 0:3 FLAGS", "a"),
    (b"a FETCH 1 (FLAGS", "a"),
    (b"a FETCH 1 BODY[MIME]", "a"),
    (b"a FETCH 1 BINARY[1.TEXT]", "a"),
    # section-part = nz-number *("." nz-number): found by the differential check (tests/conformance)
    (b"a FETCH 1 BODY[1.]", "a"),
    (b"a FETCH 1 BODY[1..2]", "a"),
    (b"a FETCH 1 BODY.PEEK[2..MIME]", "a"),
    (b"a FETCH 1 BODY[0]", "a"),
    (b"a FETCH 1 FLAGS (VANISHED)", "a"),
    (b"a FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)", "a"),
    (b"a SEARCH", "a"),
    (b"a SEARCH FROB", "a"),
    (b"a SEARCH SINCE 31-Feb-2020", "a"),
    (b"a SEARCH 1:5,$", "a"),
    (b"a UID NOOP", "a"),
    (b"a X-STATE RESTORE ab/cd", "a"),
    (b"a LIST (BOGUS) \"\" *", "a"),
    (b"a STATUS foo (BOGUS)", "a"),
    (b"a SORT (BOGUS) UTF-8 ALL", "a"),
    (b"a APPEND foo (\\Seen)", "a"),
    (b"a AUTHENTICATE PLAIN !!!", "a"),
    (b"a NOOP\x00", "a"),
    (b"a SEARCH " + b"(" * 100 + b"ALL" + b")" * 100, "a"),
    (b"a SEARCH " + b"NOT " * 100 + b"ALL", "a"),
    (b"", None),
]


@pytest.mark.parametrize(("wire", "tag"), BAD, ids=[w[:30].decode("latin-1") for w, _ in BAD])
def test_bad_commands(wire: bytes, tag: str | None) -> None:
    events = events_of(wire + b"\r\na2 NOOP\r\n")
    assert isinstance(events[0], ProtocolError), events
    assert events[0].tag == tag
    assert not events[0].fatal
    assert events[1:] == [events_of(b"a2 NOOP\r\n")[0]]  # the stream resynchronised
