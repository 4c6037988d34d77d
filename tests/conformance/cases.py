"""The command sequences: what real clients (Roundcube, Thunderbird, mbsync, imaplib users) and test suites
send, plus the edge cases of RFC 3501/9051 and the extensions. Each runs on a fresh "work" copy of the corpus.

A step is one command without its tag; "!..." is sent raw (DONE, an answer to "+"); "@sleep S" waits;
"2>..." goes to a second session of the same user (another client changing the mailbox).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CASES", "Case"]


@dataclass(frozen=True)
class Case:
    name: str
    why: str
    steps: list[str | bytes]
    needs: tuple[str, ...] = ()
    cleanup: tuple[str, ...] = field(default=())
    login: bool = True  # False: the steps start at the greeting (<user>, <password>, <plain> are filled in)


S = "SELECT work"
E = "EXAMINE work"

CASES: list[Case] = [
    # ---------------------------------------------------------------- selection, sequence sets
    Case("select", "SELECT/EXAMINE responses (RFC 3501 6.3.1, RFC 9051 7.3)", [S, E, "CLOSE"]),
    Case("seqset-star", "* is the largest number in use; ranges may be reversed (RFC 3501 9 seq-range)", [
        E, "FETCH * (UID)", "FETCH *:5 (UID)", "FETCH 11:* (UID)", "FETCH 20:* (UID)", "FETCH 3,1,2 (UID)",
        "FETCH 1:3,2:4 (UID)", "UID FETCH 9:* (UID)", "UID FETCH 100:* (UID)", "UID FETCH 5:2 (FLAGS)",
        "UID FETCH 1,50 (UID)", "FETCH 12 (UID)", "FETCH 0 (UID)", "FETCH 1:0 (UID)", "UID FETCH 0:* (UID)",
        "FETCH 4294967296 (UID)", "UID SEARCH UID 100:*", "SEARCH 5:*"]),
    Case("seqset-empty-mailbox", "FETCH/SEARCH in an empty mailbox", [
        'CREATE "empty1"', 'SELECT "empty1"', "FETCH 1:* (UID)", "UID FETCH 1:* (UID)", "SEARCH ALL",
        "UID SEARCH 1:*", "FETCH * (UID)", "UID STORE 1:* +FLAGS (\\Seen)", "UID COPY 1:* work"], cleanup=("empty1",)),
    # ---------------------------------------------------------------- FETCH
    Case("fetch-macros", "ALL/FAST/FULL macros (RFC 3501 6.4.5)", [E, "FETCH 1:3 ALL", "FETCH 1:3 FAST", "FETCH 1 FULL"]),
    Case("fetch-envelope", "ENVELOPE of odd addresses, groups, encoded words (RFC 3501 7.4.2)", [
        E, "FETCH 1:* ENVELOPE"]),
    Case("fetch-bodystructure", "BODYSTRUCTURE of nested/rfc822/RFC 2231 (RFC 3501 7.4.2)", [
        E, "FETCH 1:* BODYSTRUCTURE"]),
    Case("fetch-body", "non-extensible BODY (RFC 3501 7.4.2)", [E, "FETCH 1:* BODY"]),
    Case("fetch-sections", "BODY[section] of every kind (RFC 3501 6.4.5)", [
        E, "FETCH 3 (BODY.PEEK[1] BODY.PEEK[1.1] BODY.PEEK[1.2.MIME] BODY.PEEK[2.MIME])",
        "FETCH 4 (BODY.PEEK[2] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1] BODY.PEEK[2.2])",
        "FETCH 4 (BODY.PEEK[2.HEADER.FIELDS (SUBJECT)] BODY.PEEK[2.1.MIME])",
        "FETCH 10 (BODY.PEEK[1] BODY.PEEK[1.HEADER] BODY.PEEK[1.TEXT] BODY.PEEK[1.1])",
        "FETCH 1 (BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[1.MIME] BODY.PEEK[TEXT])",
        "FETCH 7 (BODY.PEEK[1] BODY.PEEK[HEADER])", "FETCH 11 (BODY.PEEK[TEXT] BODY.PEEK[1] RFC822.SIZE)",
        "FETCH 3 BODY.PEEK[9]", "FETCH 3 BODY.PEEK[1.9.1]", "FETCH 3 BODY.PEEK[0]"]),
    Case("fetch-partial", "BODY[]<origin.octets> (RFC 3501 6.4.5)", [
        E, "FETCH 1 BODY.PEEK[]<0.10>", "FETCH 1 BODY.PEEK[]<10.5>", "FETCH 1 BODY.PEEK[]<100000.10>",
        "FETCH 1 BODY.PEEK[TEXT]<3.4>", "FETCH 1 BODY.PEEK[HEADER]<0.0>", "FETCH 1 BODY.PEEK[1]<2.1000>",
        "FETCH 3 BODY.PEEK[1.1]<0.3>", "FETCH 1 BINARY.PEEK[1]<0.5>", "FETCH 1 BODY.PEEK[]<5>"]),
    Case("fetch-header-fields", "HEADER.FIELDS and .NOT, case, order, absent fields", [
        E, "FETCH 1:2 BODY.PEEK[HEADER.FIELDS (subject FROM x-missing)]",
        "FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (Subject Date Message-ID)]",
        'FETCH 1 BODY.PEEK[HEADER.FIELDS ("Subject" {2}\r\nTo)]',
        "FETCH 2 (RFC822.HEADER RFC822.SIZE)", "FETCH 7 BODY.PEEK[HEADER.FIELDS (DATE FROM)]"]),
    Case("fetch-sets-seen", "BODY[] sets \\Seen and reports FLAGS; .PEEK does not (RFC 3501 6.4.5)", [
        S, "FETCH 3 BODY.PEEK[]<0.1>", "FETCH 3 FLAGS", "FETCH 3 BODY[]<0.1>", "FETCH 3 FLAGS",
        "FETCH 7 RFC822.TEXT", "FETCH 7 FLAGS", "FETCH 5 (RFC822.HEADER)", "FETCH 5 FLAGS"]),
    Case("fetch-examine-no-seen", "EXAMINE is read-only: BODY[] must not set \\Seen", [
        E, "FETCH 3 BODY[]<0.1>", "FETCH 3 FLAGS"]),
    Case("fetch-binary", "BINARY[] decodes, BINARY.SIZE (RFC 3516)", [
        E, "FETCH 2 (BINARY.PEEK[1] BINARY.SIZE[1])", "FETCH 3 (BINARY.SIZE[2] BINARY.PEEK[2])",
        "FETCH 6 BINARY.SIZE[1]", "FETCH 3 BINARY.PEEK[1]", "FETCH 1 BINARY.PEEK[]"], needs=("BINARY",)),
    Case("fetch-bad", "malformed FETCH must be BAD", [
        E, "FETCH 1 (FLAGS", "FETCH 1 FOO", "FETCH 1 BODY[HEADER.FIELDS ()]", "FETCH 1 BODY[1.]",
        "FETCH a (UID)", "FETCH 1 BODY[]<0.>", "FETCH", "FETCH 1", "FETCH 1 (UID) extra",
        "FETCH 1 BODY[TEXT.MIME]", "FETCH 1:* (UID)(FLAGS)"]),
    # ---------------------------------------------------------------- SEARCH
    Case("search-basic", "SEARCH keys (RFC 3501 6.4.4)", [
        E, "SEARCH ALL", "SEARCH SEEN", "SEARCH UNSEEN", "SEARCH DELETED", "SEARCH FLAGGED", "SEARCH DRAFT",
        "SEARCH ANSWERED", "SEARCH KEYWORD $Forwarded", "SEARCH UNKEYWORD $label1", "SEARCH NEW", "SEARCH OLD",
        "SEARCH RECENT", "SEARCH FROM alice", "SEARCH TO bob", "SEARCH CC frank", "SEARCH BCC x",
        "SEARCH SUBJECT quarterly", "SEARCH SUBJECT \"re: quart\"", "SEARCH HEADER Message-ID m3",
        "SEARCH HEADER X-Missing \"\"", "SEARCH HEADER Subject \"\"", "SEARCH BODY lorem", "SEARCH TEXT Alice",
        "SEARCH TEXT inner", "SEARCH BODY \"good \"", "SEARCH UID 2:4", "SEARCH 2:4 UNSEEN"]),
    Case("search-logic", "OR/NOT nesting and implicit AND", [
        E, "SEARCH OR SEEN FLAGGED", "SEARCH NOT SEEN", "SEARCH NOT NOT SEEN", "SEARCH OR (SEEN FLAGGED) DRAFT",
        "SEARCH OR OR SEEN FLAGGED DRAFT", "SEARCH (OR SEEN DRAFT) NOT DELETED", "SEARCH NOT (SEEN ANSWERED)",
        "SEARCH OR NOT SEEN NOT FLAGGED", "SEARCH ((SEEN))", "SEARCH OR 1:2 5"]),
    Case("search-dates", "date keys, INTERNALDATE vs Date: header (RFC 3501 6.4.4)", [
        E, "SEARCH SINCE 1-Mar-2024", "SEARCH BEFORE 2-Jan-2024", "SEARCH ON 2-Jan-2024", "SEARCH ON 02-Jan-2024",
        "SEARCH SENTSINCE 1-Jun-2024", "SEARCH SENTBEFORE 1-Feb-2024", "SEARCH SENTON 15-Apr-2024",
        "SEARCH SINCE 1-Jan-2025", "SEARCH SINCE \"1-Mar-2024\"", "SEARCH SINCE 32-Jan-2024",
        "SEARCH SINCE 1-Foo-2024", "SEARCH OLDER 1", "SEARCH YOUNGER 1"]),
    Case("search-size", "LARGER/SMALLER on RFC822.SIZE", [
        E, "SEARCH LARGER 1000", "SEARCH SMALLER 200", "SEARCH LARGER 0", "SEARCH SMALLER 0",
        "SEARCH LARGER abc", "FETCH 1:* RFC822.SIZE"]),
    Case("search-charset", "CHARSET argument and BADCHARSET (RFC 3501 6.4.4, 7.1)", [
        E, "SEARCH CHARSET UTF-8 SUBJECT r\u00e9union".encode(), "SEARCH CHARSET US-ASCII FROM chloe",
        "SEARCH CHARSET UTF-8 FROM \"Bob \u00d8deg\u00e5rd\"", "SEARCH CHARSET X-UNKNOWN FROM a",
        "SEARCH CHARSET ISO-8859-1 SUBJECT {7}\r\nR\xe9union".encode("latin-1"),
        "SEARCH CHARSET UTF-8 SUBJECT {8}\r\nr\u00e9union".encode(), "SEARCH SUBJECT \u6771\u4eac".encode()]),
    Case("search-bad", "malformed SEARCH must be BAD", [
        E, "SEARCH", "SEARCH FOO", "SEARCH OR SEEN", "SEARCH (SEEN", "SEARCH NOT", "SEARCH SINCE",
        "SEARCH KEYWORD", "SEARCH HEADER Subject", "SEARCH 1:a", "SEARCH SEEN)"]),
    Case("searchres", "SEARCH RETURN (SAVE) and $ (RFC 5182)", [
        S, "SEARCH RETURN (SAVE) SEEN", "FETCH $ (UID)", "UID SEARCH RETURN (SAVE) FLAGGED", "UID FETCH $ (FLAGS)",
        "SEARCH $", "UID SEARCH RETURN (SAVE MIN) ALL", "FETCH $ (UID)", "SEARCH RETURN (SAVE) UID 999",
        "FETCH $ (UID)", "UID SEARCH $ SEEN", "SEARCH RETURN (SAVE) 1:3", "UID STORE $ +FLAGS.SILENT (\\Flagged)",
        "FETCH 1:4 FLAGS", "SEARCH RETURN (SAVE) SEEN", "COPY $ work", "FETCH $,1 (UID)"], needs=("SEARCHRES",)),
    Case("esearch", "SEARCH RETURN (MIN MAX COUNT ALL) (RFC 4731)", [
        E, "SEARCH RETURN (MIN MAX COUNT) ALL", "SEARCH RETURN () SEEN", "SEARCH RETURN (ALL) SEEN",
        "UID SEARCH RETURN (COUNT) UNSEEN", "SEARCH RETURN (MIN) UID 100", "SEARCH RETURN (ALL) 1:*",
        "UID SEARCH RETURN (MAX) DELETED", "SEARCH RETURN (FOO) ALL"], needs=("ESEARCH",)),
    # ---------------------------------------------------------------- SORT / THREAD
    Case("sort", "SORT criteria (RFC 5256)", [
        E, "SORT (SUBJECT) UTF-8 ALL", "SORT (REVERSE DATE) UTF-8 ALL", "SORT (ARRIVAL) US-ASCII ALL",
        "UID SORT (REVERSE ARRIVAL) US-ASCII ALL", "SORT (FROM) UTF-8 ALL", "SORT (TO) UTF-8 ALL",
        "SORT (CC) UTF-8 ALL", "SORT (SIZE) UTF-8 ALL", "SORT (REVERSE SIZE SUBJECT) UTF-8 SEEN",
        "SORT (DISPLAYFROM) UTF-8 ALL", "SORT (DISPLAYTO) UTF-8 ALL", "SORT (DATE) UTF-8 ALL",
        "SORT (SUBJECT) X-UNKNOWN ALL", "SORT () UTF-8 ALL", "SORT (FOO) UTF-8 ALL", "SORT SUBJECT UTF-8 ALL"],
        needs=("SORT",)),
    Case("esort", "SORT RETURN (RFC 5267)", [
        E, "SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL", "UID SORT RETURN (ALL) (SUBJECT) UTF-8 ALL"],
        needs=("ESORT",)),
    Case("thread", "THREAD algorithms (RFC 5256)", [
        E, "THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL", "UID THREAD REFERENCES US-ASCII ALL",
        "THREAD REFERENCES UTF-8 SEEN", "THREAD FOO UTF-8 ALL", "THREAD REFS UTF-8 ALL"], needs=("THREAD=REFERENCES",)),
    # ---------------------------------------------------------------- STORE / CONDSTORE
    Case("store", "STORE forms and FETCH echo (RFC 3501 6.4.6)", [
        S, "STORE 1 +FLAGS (\\Flagged)", "STORE 1 -FLAGS (\\Flagged)", "STORE 2 FLAGS (\\Draft foo)",
        "STORE 2 FLAGS.SILENT ()", "STORE 3 +FLAGS.SILENT (\\Seen)", "FETCH 1:3 FLAGS",
        "STORE 1:2 +FLAGS \\Deleted", "STORE 4 +FLAGS (\\Recent)", "STORE 4 +FLAGS (\\Foo)",
        "STORE 5 FLAGS (a b c)", "UID STORE 5 -FLAGS (b)", "UID STORE 999 +FLAGS (\\Seen)", "FETCH 5 FLAGS",
        "STORE 1 FLAGS", "STORE 1 XFLAGS (\\Seen)", "STORE 1 +FLAGS ((\\Seen))"]),
    Case("store-examine", "STORE in a read-only mailbox must fail", [E, "STORE 1 +FLAGS (\\Flagged)"]),
    Case("condstore", "CONDSTORE: SELECT (CONDSTORE), MODSEQ, UNCHANGEDSINCE, CHANGEDSINCE (RFC 7162)", [
        "SELECT work (CONDSTORE)", "FETCH 1:3 (FLAGS)", "FETCH 1 (MODSEQ)", "STORE 1 +FLAGS (\\Flagged)",
        "STORE 1:3 (UNCHANGEDSINCE 1) +FLAGS (\\Answered)", "STORE 2 (UNCHANGEDSINCE 0) +FLAGS (\\Answered)",
        "UID STORE 1:* (UNCHANGEDSINCE 99999999) +FLAGS.SILENT (x1)", "SEARCH MODSEQ 2", "UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE 1)",
        "FETCH 1:* (FLAGS) (CHANGEDSINCE 99999999)", "SEARCH RETURN (ALL) MODSEQ 1"], needs=("CONDSTORE",)),
    Case("condstore-enable", "ENABLE CONDSTORE then STATUS/SELECT HIGHESTMODSEQ", [
        "ENABLE CONDSTORE", 'STATUS work (MESSAGES UIDNEXT UNSEEN HIGHESTMODSEQ)', S, "FETCH 1 (FLAGS)",
        "STORE 1 FLAGS.SILENT (\\Seen)", "NOOP"], needs=("CONDSTORE",)),
    Case("qresync", "SELECT (QRESYNC) with VANISHED (RFC 7162 3.2.5)", [
        "ENABLE QRESYNC", S, "STORE 2 +FLAGS.SILENT (\\Deleted)", "EXPUNGE", "UNSELECT",
        "SELECT work (QRESYNC (1 1))", "UNSELECT", "SELECT work (QRESYNC (1 1 1:20))", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
        "CLOSE"], needs=("QRESYNC",)),
    Case("qresync-vanished", "SELECT (QRESYNC (uidvalidity modseq known-uids)) reports VANISHED (EARLIER)", [
        "ENABLE QRESYNC", S, "UID STORE 2,4,6 +FLAGS.SILENT (\\Deleted)", "EXPUNGE", "UNSELECT",
        "SELECT work (QRESYNC (<uidvalidity> 1))", "UNSELECT",
        "SELECT work (QRESYNC (<uidvalidity> 1 1:11))", "UNSELECT",
        "SELECT work (QRESYNC (<uidvalidity> 1 1:11 (1:3 1:3)))", "UNSELECT",
        "EXAMINE work (QRESYNC (<uidvalidity> 99999999 1:11))", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
        "UID FETCH 1:5 (FLAGS) (CHANGEDSINCE 1 VANISHED)", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)"],
        needs=("QRESYNC",)),
    Case("condstore-implicit", "CHANGEDSINCE and MODSEQ enable CONDSTORE implicitly (RFC 7162 3.1)", [
        S, "FETCH 1:2 (FLAGS) (CHANGEDSINCE 1)", "STORE 1 +FLAGS (\\Flagged)", "SEARCH MODSEQ 1",
        "UID SEARCH RETURN (ALL MAX) MODSEQ 1"], needs=("CONDSTORE",)),
    Case("select-failure", "a failed SELECT leaves no mailbox selected (RFC 3501 6.3.1)", [
        S, 'SELECT "nosuch"', "FETCH 1 FLAGS", "NOOP", E, "CLOSE", S, "FETCH 6 FLAGS", "UNSELECT",
        "UNSELECT"]),
    Case("selected-mailbox-ops", "RENAME/DELETE/STATUS of the selected mailbox", [
        'CREATE "sel1"', 'COPY 1 sel1', 'SELECT "sel1"', 'STATUS "sel1" (MESSAGES)', 'RENAME "sel1" "sel2"',
        "NOOP", "FETCH 1 FLAGS", 'DELETE "sel2"', "NOOP"], cleanup=("sel1", "sel2")),
    Case("state-errors", "commands in the wrong state (RFC 3501 6.2)", [
        "LOGIN bench bench", "AUTHENTICATE PLAIN", "STARTTLS", "CAPABILITY", "CHECK", S, "CHECK",
        "UID EXPUNGE", "EXPUNGE 1", "COPY 1 work", "MOVE 1 work", 'SUBSCRIBE "nosuch"', 'LSUB "" "nosuch"',
        'UNSUBSCRIBE "nosuch"']),
    Case("fetch-edges", "FETCH edge cases: HEADER of a non-message part, huge partials, UID * forms", [
        E, "FETCH 3 BODY.PEEK[1.HEADER]", "FETCH 3 BODY.PEEK[2.HEADER]", "FETCH 3 BODY.PEEK[1.TEXT]",
        "FETCH 10 BODY.PEEK[HEADER.FIELDS (From)]", "FETCH 10 BODY.PEEK[1.HEADER.FIELDS (From)]",
        "FETCH 1 BODY.PEEK[]<0.4294967295>", "FETCH 1 BODY.PEEK[]<4294967296.1>", "UID FETCH *:* (UID)",
        "UID FETCH 4294967295 (UID)", "UID FETCH 4294967296 (UID)", "FETCH 11 (BODY.PEEK[TEXT] BODY.PEEK[1])",
        "FETCH 11 BINARY.SIZE[1]", "FETCH 1:2 (RFC822.SIZE) (FOO)", "FETCH 1 (BODY.PEEK[]<0.3> BODY.PEEK[]<3.3>)",
        "FETCH 7 ENVELOPE", "FETCH 10 BODY.PEEK[1]"]),
    Case("search-edges", "SEARCH edge cases: repeated keys, UID with NOT, * in an empty set", [
        E, "SEARCH SEEN SEEN", "SEARCH ALL ALL", "UID SEARCH NOT UID 1:5", "SEARCH UID *", "SEARCH *",
        "SEARCH 11:*", "SEARCH 12:*", "UID SEARCH UID 12:*", "SEARCH HEADER subject QUARTERLY",
        "SEARCH HEADER FROM \"Alice Martin\"", "SEARCH TEXT ipsum", "SEARCH BODY attached",
        "SEARCH HEADER Content-Type multipart", "SEARCH NOT HEADER Content-Type \"\"", "SEARCH BODY R\u00e9union".encode(),
        "SEARCH CHARSET UTF-8 BODY R\u00e9union".encode(), "SEARCH CHARSET UTF-8 BODY \u00e0".encode(),
        "SEARCH OR OR OR SEEN DRAFT FLAGGED DELETED", "SEARCH NOT OR SEEN DRAFT", "SEARCH OR (NOT SEEN) (NOT DRAFT)"]),
    Case("append-binary", "APPEND with literal8 (RFC 3516) and a NUL outside one", [
        b"APPEND work ~{8}\r\nA: b\r\n\r\n\x00", b"APPEND work {8}\r\nA: b\r\n\r\n\x00", E,
        "FETCH 12:* (RFC822.SIZE BINARY.SIZE[1])"], needs=("BINARY",)),
    Case("list-more", "LIST references and patterns", [
        'LIST "INBOX" "*"', 'LIST "" "%/%"', 'LIST "" "*" RETURN (CHILDREN SPECIAL-USE)', 'LIST "" "Tr*sh"',
        'LIST "" "%" RETURN (STATUS (MESSAGES UIDNEXT))', 'LIST "" work', 'LIST "" WORK', 'LIST "" "*rk"']),
    Case("qresync-not-enabled", "QRESYNC parameter before ENABLE must be BAD (RFC 7162 3.2.5)", [
        "SELECT work (QRESYNC (1 1))", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)"], needs=("QRESYNC",)),
    # ---------------------------------------------------------------- EXPUNGE / COPY / MOVE
    Case("expunge", "EXPUNGE, UID EXPUNGE, CLOSE (RFC 3501 6.4.3, RFC 4315)", [
        S, "STORE 1,3 +FLAGS.SILENT (\\Deleted)", "UID EXPUNGE 3", "EXPUNGE", "SEARCH DELETED", "CLOSE",
        S, "FETCH 1:* (UID)"]),
    Case("copy-move", "COPYUID, MOVE (RFC 4315, RFC 6851)", [
        'CREATE "dest1"', S, "COPY 1:2 dest1", "UID COPY 4,5 dest1", "COPY 99 dest1", "COPY 1 nosuch",
        "MOVE 1 dest1", "UID MOVE 4:5 dest1", "UID MOVE 99 dest1", 'STATUS dest1 (MESSAGES UIDNEXT)',
        "FETCH 1:* (UID)"], cleanup=("dest1",)),
    Case("append", "APPENDUID, flags, dates, TRYCREATE (RFC 3501 6.3.11, RFC 4315)", [
        b'APPEND work (\\Seen $x) "14-Jul-2024 10:00:00 +0200" {21}\r\nSubject: t\r\n\r\nhello\r\n',
        b"APPEND work {4}\r\nab\r\n", b"APPEND nosuch {4}\r\nab\r\n",
        b'APPEND work "bad date" {4}\r\nab\r\n', b"APPEND work (\\Recent) {4}\r\nab\r\n",
        b"APPEND work {0}\r\n", b"APPEND work {4+}\r\nab\r\n", E, "FETCH 12:* (FLAGS INTERNALDATE RFC822.SIZE)"]),
    # ---------------------------------------------------------------- mailboxes
    Case("list", "LIST patterns, LIST-EXTENDED, LIST-STATUS, SPECIAL-USE (RFC 3501 6.3.8, 5258, 5819, 6154)", [
        'CREATE "lst/a/b"', 'CREATE "lst/c"', 'LIST "" "*"', 'LIST "" "%"', 'LIST "" "lst/%"', 'LIST "" ""',
        'LIST "lst" "%"', 'LIST "lst/" "%"', 'LIST "" "LST/*"', 'LIST "" "inbox"', 'LIST "" "*" RETURN (CHILDREN)',
        'LIST (SUBSCRIBED) "" "*"', 'LIST "" "*" RETURN (SUBSCRIBED SPECIAL-USE)', 'LIST (SPECIAL-USE) "" "*"',
        'LIST "" "lst/*" RETURN (STATUS (MESSAGES UNSEEN))', 'LIST "" ("INBOX" "lst")', 'LSUB "" "*"',
        'LIST (RECURSIVEMATCH) "" "*"', 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', 'LIST "" "*" RETURN (FOO)',
        'LIST ""', 'LIST "" "*" RETURN'], cleanup=("lst/a/b", "lst/a", "lst/c", "lst")),
    Case("mailbox-ops", "CREATE/DELETE/RENAME/SUBSCRIBE (RFC 3501 6.3)", [
        'CREATE "mb1"', 'CREATE "mb1"', 'CREATE "mb1/"', 'CREATE "INBOX"', 'CREATE "inbox"', 'DELETE "nosuch"',
        'RENAME "mb1" "mb2"', 'RENAME "mb2" "work"', 'RENAME "nosuch" "x"', 'SUBSCRIBE "mb2"', 'LSUB "" "mb*"',
        'UNSUBSCRIBE "mb2"', 'UNSUBSCRIBE "mb2"', 'DELETE "mb2"', 'DELETE "INBOX"', 'CREATE "a/b/c"', 'DELETE "a"',
        'LIST "" "a*"', 'DELETE "a/b"', 'LIST "" "a*"', 'CREATE ""', 'RENAME "a" "a/b/x"'],
        cleanup=("mb1", "mb2", "a/b/c", "a/b", "a", "mb1/")),
    Case("rename-inbox", "RENAME INBOX moves the messages, INBOX stays (RFC 3501 6.3.5)", [
        b"APPEND INBOX {20}\r\nSubject: x\r\n\r\nbody\r\n", 'RENAME INBOX "inbox-old"', 'STATUS INBOX (MESSAGES)',
        'STATUS "inbox-old" (MESSAGES)', 'LIST "" "INBOX*"'], cleanup=("inbox-old",)),
    Case("status", "STATUS items (RFC 3501 6.3.10, RFC 9051 6.3.11)", [
        'STATUS work (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)', 'STATUS work (SIZE)', 'STATUS work (DELETED)',
        'STATUS work (MESSAGES UIDNEXT UNSEEN HIGHESTMODSEQ)', 'STATUS nosuch (MESSAGES)', 'STATUS work ()',
        'STATUS work (FOO)', 'STATUS work MESSAGES'], needs=("CONDSTORE",)),
    Case("mutf7", "mailbox names in modified UTF-7 (RFC 3501 5.1.3)", [
        'CREATE "Entw&APw-rfe"', 'LIST "" "Entw*"', 'SELECT "Entw&APw-rfe"', 'CREATE "bad&Jjo"', 'CREATE "&U,BTFw-"',
        'LIST "" "&U,BTFw-"', 'STATUS "Entw&APw-rfe" (MESSAGES)', 'CREATE "x&-y"', 'LIST "" "x*"'],
        cleanup=("Entw&APw-rfe", "&U,BTFw-", "x&-y", "bad&Jjo")),
    Case("utf8-accept", "ENABLE UTF8=ACCEPT then UTF-8 mailbox names (RFC 6855)", [
        "ENABLE UTF8=ACCEPT", 'CREATE "Entw\u00fcrfe2"'.encode(), 'LIST "" "Entw*"', 'SELECT "Entw\u00fcrfe2"'.encode()],
        needs=("UTF8=ACCEPT",), cleanup=("Entw&APw-rfe2",)),
    Case("namespace-id-enable", "NAMESPACE, ID, ENABLE (RFC 2342, 2971, 5161)", [
        "NAMESPACE", 'ID ("name" "conform" "version" "1")', "ID NIL", "ID (\"a\")", "ENABLE", "ENABLE FOO",
        "ENABLE CONDSTORE CONDSTORE", "NOOP"]),
    Case("idle", "IDLE/DONE, and a bad continuation (RFC 2177)", ["SELECT work", "IDLE", "!DONE", "IDLE", "!bogus"],
         needs=("IDLE",)),
    Case("metadata", "GETMETADATA/SETMETADATA as Roundcube sends them (RFC 5464)", [
        'GETMETADATA "" /shared/comment', 'GETMETADATA work (/private/comment /shared/comment)',
        'SETMETADATA work (/private/comment "hello")', 'GETMETADATA work /private/comment',
        'GETMETADATA (DEPTH 1) "" /private', 'SETMETADATA work (/private/comment NIL)',
        'GETMETADATA work /private/comment', 'SETMETADATA work (/bogus "x")'], needs=("METADATA",)),
    # ---------------------------------------------------------------- syntax
    Case("literals", "literals, LITERAL+, LITERAL-, quoted escapes (RFC 3501 4.3, RFC 7888)", [
        b"SELECT {4}\r\nwork", b"SELECT {4+}\r\nwork", b'SEARCH SUBJECT "quart\\"erly"', b'SEARCH SUBJECT "a\\\\b"',
        b'STATUS "wo\\rk" (MESSAGES)', b'SEARCH SUBJECT "unterminated', b"SEARCH SUBJECT {3}\r\nQua",
        b'LIST "" {1+}\r\n*', b"NOOP {0}\r\n"]),
    Case("malformed", "malformed commands: BAD with text, never a crash or a hang (RFC 3501 7.1.3)", [
        "", "FOO", "NOOP extra", "LOGIN a", "SELECT", 'SELECT "', "CAPABILITY x", "LIST", "CREATE",
        "UID", "UID FOO", "STATUS work", "SEARCH", "CHECK", "EXPUNGE", "CLOSE", "COPY 1", "FETCH 1 FLAGS"]),
    Case("malformed-2", "more malformed input (a fresh session: 20 BADs in a row end one)", [
        "\x01\x02", "NOOP\t", "noop", "a b c", "LOGIN", "SELECT work work", "SELECT (work)", "CREATE a b",
        "RENAME a", "DELETE", "SUBSCRIBE", "LSUB", "STATUS work (MESSAGES", "APPEND", "APPEND work",
        "APPEND work (\\Seen", "APPEND work {x}", "UID SEARCH", "LOGOUT"]),
    Case("not-selected", "selected-state commands in authenticated state must fail", [
        "FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL", "UID FETCH 1 UID", "EXPUNGE", "CLOSE",
        "UNSELECT", "MOVE 1 work", "CHECK"]),
    Case("roundcube", "rcube_imap_generic's sequence for a mailbox listing", [
        "ENABLE QRESYNC", 'LIST "" "*" RETURN (SUBSCRIBED SPECIAL-USE)', 'LIST (SUBSCRIBED) "" "*" RETURN (SPECIAL-USE)',
        'STATUS work (MESSAGES UIDNEXT UNSEEN HIGHESTMODSEQ)', "SELECT work (CONDSTORE)",
        "UID SORT (REVERSE ARRIVAL) US-ASCII ALL", "UID SORT (REVERSE DATE) UTF-8 ALL UNDELETED",
        "UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE 1)",
        "UID FETCH 1:11 (UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (DATE FROM TO SUBJECT "
        "CONTENT-TYPE CC REPLY-TO LIST-POST DISPOSITION-NOTIFICATION-TO X-PRIORITY)])",
        "UID FETCH 3 (BODYSTRUCTURE)", "UID FETCH 3 (BODY.PEEK[1.1.MIME] BODY.PEEK[1.1])",
        "UID SEARCH UNDELETED UNSEEN", "UID THREAD REFS UTF-8 ALL", "UID SEARCH RETURN (COUNT) UNSEEN",
        'GETMETADATA work (/private/vendor/kolab/folder-type /shared/vendor/kolab/folder-type)',
        "UID STORE 3 +FLAGS.SILENT (\\Seen)", "UID STORE 1 +FLAGS.SILENT (\\Deleted)", "UID EXPUNGE 1",
        "UID SEARCH ALL", "CLOSE"], needs=("QRESYNC",)),
    Case("roundcube-search", "Roundcube's quick search: OR HEADER ... with literals, CHARSET UTF-8", [
        E, b"UID SEARCH CHARSET UTF-8 OR OR HEADER SUBJECT {7+}\r\nr\xc3\xa9union HEADER FROM {7+}\r\nr\xc3\xa9union "
           b"BODY {7+}\r\nr\xc3\xa9union UNDELETED",
        "UID SEARCH CHARSET UTF-8 OR HEADER SUBJECT planning HEADER FROM planning NOT DELETED",
        "UID SEARCH CHARSET UTF-8 OR OR OR HEADER FROM bob HEADER TO bob HEADER CC bob HEADER BCC bob",
        "UID SEARCH RETURN (COUNT) UNDELETED UNSEEN", "UID SEARCH UNDELETED SINCE 1-Mar-2024 BEFORE 1-Jul-2024",
        "UID SEARCH RETURN (MIN MAX COUNT ALL) UNDELETED FLAGGED",
        "UID SEARCH HEADER MESSAGE-ID <m2@example.net>", "UID SEARCH LARGER 500 SMALLER 1000"]),
    Case("thunderbird", "Thunderbird's lower-case sequence on opening a folder", [
        'select "work" (CONDSTORE)', "UID fetch 1:* (FLAGS)",
        "UID fetch 1:3 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID "
        "Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])",
        "UID fetch 3 (UID RFC822.SIZE BODY.PEEK[])", "UID fetch 4 (UID RFC822.SIZE BODYSTRUCTURE)",
        "UID fetch 4 (BODY.PEEK[2.1.MIME] BODY.PEEK[2.2])", "UID store 3 +Flags (\\Seen)",
        "UID fetch 3 (FLAGS)", 'lsub "" "*"', 'list (SUBSCRIBED) "" "*" RETURN (SPECIAL-USE)', "noop",
        'UID copy 1 "Trash"', 'UID store 1 +Flags (\\Deleted)', "UID expunge 1", "close"]),
    Case("two-sessions", "another session's STORE/EXPUNGE/APPEND as seen by NOOP, FETCH and UID FETCH (RFC 3501 "
         "7.4.1: no EXPUNGE during FETCH/STORE/SEARCH)", [
        S, '2>SELECT work', '2>STORE 1 +FLAGS.SILENT (\\Flagged)', "NOOP", '2>STORE 2 +FLAGS.SILENT (\\Deleted)',
        "2>EXPUNGE", "FETCH 1:3 (FLAGS)", "STORE 1 -FLAGS.SILENT (\\Flagged)", "SEARCH ALL", "NOOP",
        b"2>APPEND work {20}\r\nSubject: x\r\n\r\nbody\r\n", "UID FETCH 1:* (FLAGS)", "NOOP",
        "2>STORE 3 +FLAGS.SILENT (\\Deleted)", "2>EXPUNGE", "UID SEARCH ALL", "UID FETCH 3:5 (UID)", "NOOP"]),
    Case("two-sessions-condstore", "another session's changes with CONDSTORE/QRESYNC enabled", [
        "ENABLE QRESYNC", S, "2>SELECT work", "2>STORE 1 +FLAGS.SILENT (\\Flagged)", "NOOP",
        "2>UID STORE 4 +FLAGS.SILENT (\\Deleted)", "2>UID EXPUNGE 4", "NOOP",
        "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)"], needs=("QRESYNC",)),
    Case("idle-push", "IDLE reports another session's changes, DONE ends it (RFC 2177)", [
        S, "2>SELECT work", "IDLE", "2>STORE 1 +FLAGS.SILENT (\\Flagged)",
        b"2>APPEND work {20}\r\nSubject: x\r\n\r\nbody\r\n", "2>STORE 3 +FLAGS.SILENT (\\Deleted)", "2>EXPUNGE",
        "@sleep 1.5", "!DONE", "NOOP"], needs=("IDLE",)),
    Case("not-authenticated", "commands before login, LOGIN forms (RFC 3501 6.1, 6.2)", [
        "CAPABILITY", "NOOP", 'ID ("name" "conform")', "SELECT work", "LIST \"\" \"*\"", "ENABLE CONDSTORE",
        "LOGIN <user> wrong-password", "LOGIN", "LOGIN <user>", '"LOGIN" <user> <password>',
        "LOGIN <user> <password>", "LOGIN <user> <password>", "SELECT work", "LOGOUT"], login=False),
    Case("login-literal", "LOGIN with a literal password and quoted user", [
        b'LOGIN "<user>" {5}\r\nbench', "NOOP"], login=False),
    Case("authenticate", "AUTHENTICATE PLAIN with SASL-IR, with a continuation, cancelled, malformed (RFC 4959, "
         "RFC 3501 6.2.2)", [
        "AUTHENTICATE PLAIN", "!*", "AUTHENTICATE PLAIN", "!!!!notbase64", "AUTHENTICATE PLAIN =",
        "AUTHENTICATE FOO", "AUTHENTICATE PLAIN", "!<plain>", "AUTHENTICATE PLAIN <plain>", "NOOP"], login=False),
    Case("hostile", "hostile input: answered at once (BAD/NO with a code), never a hang", [
        'CREATE "' + "a" * 200 + '"', 'LIST "" "' + "*a" * 40 + 'b"', 'LIST "" "' + "%" * 300 + 'b"',
        'LIST "" "' + "*" * 300 + '"', "APPEND work {99999999999}", "SEARCH SUBJECT {4294967296}",
        E, "SEARCH " + "(" * 200 + "ALL" + ")" * 200, "SEARCH " + "NOT " * 300 + "ALL",
        "SEARCH " + ",".join(str(i) for i in range(1, 3000, 2)),
        "FETCH 1 BODY.PEEK[HEADER.FIELDS (" + " ".join(f"X-H{i}" for i in range(1000)) + ")]",
        b'SELECT "a\x00b"', "NOOP " + "a" * 70000], cleanup=("a" * 200,)),
    Case("rev2", "ENABLE IMAP4rev2 then SELECT/FETCH (RFC 9051)", [
        "ENABLE IMAP4rev2", S, "SEARCH ALL", "FETCH 1 (FLAGS)", "LIST \"\" \"*\""], needs=("IMAP4REV2",)),
]
