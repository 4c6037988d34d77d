"""RFC conformance of what we already serve (issue 17): exact exchanges, taken from the RFC text.

Each test names the section it checks; docs/clients.md lists them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.rawimap import RawIMAP


def plain(subject: str, body: str = "hello\r\n", extra: str = "") -> bytes:
    return (f"From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\n{extra}"
            f"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n\r\n{body}").encode()


def login(server: RunningServer, user: str = "alice") -> RawIMAP:
    c = RawIMAP(server.host, server.port)
    c.ok(f"LOGIN {user} {server.users[user]}")
    return c


def append(c: RawIMAP, mailbox: str, data: bytes, flags: str = "") -> None:
    c.sock.sendall(f"ap APPEND {mailbox} ({flags}) {{{len(data)}+}}\r\n".encode() + data + b"\r\n")
    line = c.readline()
    assert line.startswith(b"ap OK"), line


def create(server: RunningServer, mailbox: str, messages: list[bytes], user: str = "alice") -> None:
    c = login(server, user)
    c.ok(f"CREATE {mailbox}")
    for m in messages:
        append(c, mailbox, m)
    c.close()


def untagged(lines: list[bytes], word: bytes) -> list[bytes]:
    return [line for line in lines if re.match(rb"\* (\d+ )?" + word + rb"\b", line)]


@pytest.fixture
def alice(server: RunningServer) -> Iterator[RawIMAP]:
    c = login(server)
    yield c
    c.close()


# -- \Recent: RFC 3501 2.3.2, 6.3.1, 6.3.2, 7.3.2, 7.4.1, 6.4.4 ----------------------------------------------
def test_recent_first_select_claims_examine_only_looks(server: RunningServer) -> None:
    create(server, "R1", [plain("one"), plain("two")])
    a, b, c = login(server), login(server), login(server)
    # Mail delivered before anyone selected the mailbox is \Recent for the first session to SELECT it.
    assert c.ok("STATUS R1 (MESSAGES RECENT)") == [b"* STATUS \"R1\" (MESSAGES 2 RECENT 2)"]
    # EXAMINE sees \Recent but MUST NOT take it away (RFC 3501 6.3.2).
    lines = b.ok("EXAMINE R1")
    assert b"* 2 RECENT" in lines
    assert b.ok("FETCH 1:* FLAGS") == [b"* 1 FETCH (FLAGS (\\Recent))", b"* 2 FETCH (FLAGS (\\Recent))"]
    assert c.ok("STATUS R1 (RECENT)") == [b"* STATUS \"R1\" (RECENT 2)"]
    lines = a.ok("SELECT R1")
    assert b"* 2 EXISTS" in lines and b"* 2 RECENT" in lines
    assert a.ok("FETCH 1:* FLAGS") == [b"* 1 FETCH (FLAGS (\\Recent))", b"* 2 FETCH (FLAGS (\\Recent))"]
    assert a.ok("SEARCH RECENT") == [b"* SEARCH 1 2"]
    assert a.ok("SEARCH NEW") == [b"* SEARCH 1 2"]
    assert a.ok("SEARCH OLD") == [b"* SEARCH"]
    # Every later session sees them without \Recent, and STATUS from a third session counts none.
    assert b"* 0 RECENT" in b.ok("SELECT R1")
    assert b.ok("FETCH 1:* FLAGS") == [b"* 1 FETCH (FLAGS ())", b"* 2 FETCH (FLAGS ())"]
    assert b.ok("SEARCH OLD") == [b"* SEARCH 1 2"]
    assert c.ok("STATUS R1 (RECENT)") == [b"* STATUS \"R1\" (RECENT 0)"]
    # \Seen does not end \Recent: NEW is RECENT UNSEEN.
    a.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
    assert a.ok("SEARCH NEW") == [b"* SEARCH 2"]
    assert a.ok("SEARCH RECENT") == [b"* SEARCH 1 2"]
    for x in (a, b, c):
        x.close()


def test_recent_new_mail_goes_to_exactly_one_session(server: RunningServer) -> None:
    create(server, "R2", [plain("old")])
    a, b, c = login(server), login(server), login(server)
    a.ok("SELECT R2")
    b.ok("SELECT R2")
    append(c, "R2", plain("new"))
    # RFC 3501 7.3.2: RECENT comes with the new size; exactly one session is told it is \Recent.
    assert a.ok("NOOP") == [b"* 2 EXISTS", b"* 2 RECENT"]
    assert b.ok("NOOP") == [b"* 2 EXISTS", b"* 0 RECENT"]
    assert a.ok("FETCH 2 FLAGS") == [b"* 2 FETCH (FLAGS (\\Recent))"]
    assert b.ok("FETCH 2 FLAGS") == [b"* 2 FETCH (FLAGS ())"]
    assert a.ok("SEARCH RECENT") == [b"* SEARCH 1 2"]
    assert b.ok("SEARCH RECENT") == [b"* SEARCH"]
    assert c.ok("STATUS R2 (RECENT)") == [b"* STATUS \"R2\" (RECENT 0)"]
    # IDLE pushes the same pair (the session in IDLE is the first to be told).
    b.sock.sendall(b"i1 IDLE\r\n")
    assert b.readline() == b"+ idling\r\n"
    append(c, "R2", plain("newer"))
    assert b.read_until(rb"RECENT") == [b"* 3 EXISTS", b"* 1 RECENT"]
    b.sock.sendall(b"DONE\r\n")
    assert b.readline().startswith(b"i1 OK")
    assert a.ok("NOOP") == [b"* 3 EXISTS", b"* 2 RECENT"]
    assert b.ok("FETCH 3 FLAGS") == [b"* 3 FETCH (FLAGS (\\Recent))"]
    # A session that closes takes its \Recent with it: nobody gets those messages as \Recent again.
    a.ok("CLOSE")
    assert b"* 0 RECENT" in a.ok("SELECT R2")
    for x in (a, b, c):
        x.close()


def test_recent_claims_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data), stdin="secret1")
    srv = start_server(data)
    srv.users["alice"] = "secret1"
    try:
        create(srv, "Seen", [plain("a"), plain("b")])
        create(srv, "Unseen", [plain("c")])
        a = login(srv)
        assert b"* 2 RECENT" in a.ok("SELECT Seen")
        a.close()
    finally:
        stop_server(srv)
    srv = start_server(data)
    srv.users["alice"] = "secret1"
    try:
        a = login(srv)
        assert a.ok("STATUS Seen (RECENT)") == [b"* STATUS \"Seen\" (RECENT 0)"]
        assert a.ok("STATUS Unseen (RECENT)") == [b"* STATUS \"Unseen\" (RECENT 1)"]
        assert b"* 0 RECENT" in a.ok("SELECT Seen")
        assert b"* 1 RECENT" in a.ok("SELECT Unseen")
        a.close()
    finally:
        stop_server(srv)


# -- mailbox names: RFC 3501 5.1.3 (modified UTF-7), 6.3.1, 6.3.8 ---------------------------------------------
_NOT_MUTF7 = "!#$&'+,-.0123456789:;<=>?@^_`|[}"  # valid astring syntax, '&' starts no valid base64 run


@pytest.mark.parametrize(("command", "answer"), [
    (f"SELECT {_NOT_MUTF7}", rb"NO \[NONEXISTENT\]"),
    (f"EXAMINE {_NOT_MUTF7}", rb"NO \[NONEXISTENT\]"),
    (f"STATUS {_NOT_MUTF7} (MESSAGES)", rb"NO \[NONEXISTENT\]"),
    (f"DELETE {_NOT_MUTF7}", rb"NO \[NONEXISTENT\]"),
    (f"CREATE {_NOT_MUTF7}", rb"NO \[CANNOT\]"),
    (f"RENAME INBOX {_NOT_MUTF7}", rb"NO \[CANNOT\]"),
    (f"LIST \"\" {_NOT_MUTF7}", rb"OK"),
    (f"LIST \"\" {_NOT_MUTF7}*", rb"OK"),
    (f"LSUB \"\" {_NOT_MUTF7}", rb"OK"),
    ("SELECT &Jjo", rb"NO \[NONEXISTENT\]"),
    ("SUBSCRIBE a&b", rb"NO \[CANNOT\]"),
    ("UNSUBSCRIBE a&b", rb"NO \[NONEXISTENT\]"),
    ("APPEND a&b {1+}\r\nx", rb"NO \[NONEXISTENT\]"),  # not TRYCREATE: it cannot be created
])
def test_names_that_are_not_modified_utf7(alice: RawIMAP, command: str, answer: bytes) -> None:
    lines, tagged = alice.command(command)
    assert lines == []
    assert re.match(rb"t\d+ " + answer, tagged), tagged


def test_name_not_modified_utf7_never_names_a_decoded_mailbox(alice: RawIMAP) -> None:
    # "a&b" decoded is no valid name, and must not reach the mailbox whose decoded name is "a&b" ("a&-b").
    alice.ok("CREATE a&-b")
    assert alice.ok('LIST "" a*') == [b'* LIST (\\HasNoChildren) "/" "a&-b"']
    _, tagged = alice.command("SELECT a&b")
    assert tagged.startswith(b"t") and b" NO [NONEXISTENT]" in tagged
    alice.ok("SELECT a&-b")
    for command in ("UID COPY 1:* a&b", "UID MOVE 1:* a&b"):
        _, tagged = alice.command(command)
        assert b" NO [NONEXISTENT]" in tagged, (command, tagged)
    # A failed SELECT deselects (RFC 3501 6.3.1), also when the name is not modified UTF-7.
    lines, tagged = alice.command("SELECT a&b")
    assert lines == [b"* OK [CLOSED] Previous mailbox closed"] and b" NO [NONEXISTENT]" in tagged
    _, tagged = alice.command("CLOSE")
    assert b" BAD " in tagged
    alice.ok("DELETE a&-b")


# -- LSUB: RFC 3501 6.3.9 ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("pattern", "expected"), [
    ("ls/%", [b'* LSUB (\\Noselect) "/" "ls/b"']),           # the RFC's example: a/b/c subscribed, a/% -> a/b
    ("l%", [b'* LSUB (\\Noselect) "/" "ls"']),
    ("ls/b/%", [b'* LSUB () "/" "ls/b/c"']),
    ("ls/*", [b'* LSUB () "/" "ls/b/c"']),
    ("ls/b/c", [b'* LSUB () "/" "ls/b/c"']),
    ("ls/x%", []),
])
def test_lsub_returns_unsubscribed_parents_as_noselect(server: RunningServer, pattern: str,
                                                       expected: list[bytes]) -> None:
    c = login(server, "bob")
    c.command("CREATE ls/b/c")
    c.command("SUBSCRIBE ls/b/c")
    assert c.ok(f'LSUB "" {pattern}') == expected
    c.close()


# -- LIST-EXTENDED: RFC 5258 3.5 and its examples ------------------------------------------------------------
def test_list_recursivematch_childinfo_only_for_parents_listed_for_their_children(server: RunningServer) -> None:
    c = login(server, "bob")
    for name in ("rm/Foo/Bar", "rm/Foo2/Bar", "rm/Baz"):
        c.ok(f"CREATE {name}")
    for name in ("rm/Foo/Bar", "rm/Foo2", "rm/Foo2/Bar", "rm/Baz", "rm/Ghost/Child"):
        c.ok(f"SUBSCRIBE {name}")
    assert c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" rm/%') == [
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "rm/Baz"',
        b'* LIST (\\HasChildren) "/" "rm/Foo" ("CHILDINFO" ("SUBSCRIBED"))',
        b'* LIST (\\HasChildren \\Subscribed) "/" "rm/Foo2"',
        b'* LIST (\\NonExistent) "/" "rm/Ghost" ("CHILDINFO" ("SUBSCRIBED"))',
    ]
    # Without RECURSIVEMATCH no CHILDINFO and no unsubscribed parents.
    assert c.ok('LIST (SUBSCRIBED) "" rm/%') == [
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "rm/Baz"',
        b'* LIST (\\HasChildren \\Subscribed) "/" "rm/Foo2"',
    ]
    c.close()


# -- binary parts: RFC 3501 4.3 (no NUL in a literal), RFC 3516 4.1-4.3; QP: RFC 2045 6.7 ----------------------
_BLOB = bytes(range(256))


def _binary_message() -> bytes:
    return (b"From: a@example.org\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + _BLOB)


def test_binary_part_goes_base64_in_body_and_raw_in_binary(server: RunningServer) -> None:
    c = login(server)
    c.ok("CREATE Bin")
    data = _binary_message()
    c.sock.sendall(b"ap APPEND Bin ~{%d+}\r\n" % len(data) + data + b"\r\n")
    assert c.readline().startswith(b"ap OK")
    c.ok("SELECT Bin")
    b64 = b"".join(__import__("base64").b64encode(_BLOB[i:i + 57]) + b"\r\n" for i in range(0, 256, 57))
    lines = c.ok("FETCH 1 (BODY.PEEK[1])")
    assert lines == [b"* 1 FETCH (BODY[1] {%d}\r\n" % len(b64) + b64 + b")"]
    lines = c.ok("FETCH 1 (BODY.PEEK[1]<0.10>)")
    assert lines == [b"* 1 FETCH (BODY[1]<0> {10}\r\n" + b64[:10] + b")"]
    whole = c.ok("FETCH 1 (BODY.PEEK[])")[0]
    assert b"\0" not in whole and b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 in whole
    assert c.ok("FETCH 1 (BINARY.PEEK[1])") == [b"* 1 FETCH (BINARY[1] ~{256}\r\n" + _BLOB + b")"]
    assert c.ok("FETCH 1 (BINARY.SIZE[1])") == [b"* 1 FETCH (BINARY.SIZE[1] 256)"]
    c.close()


_QP_BODY = (b"Trailing blanks are transport padding    \r\n"
            b"and a soft break= \r\n"
            b"may have them too=\t\r\n"
            b" =3D done\r\n")
_QP_DECODED = b"Trailing blanks are transport padding\r\nand a soft breakmay have them too = done\r\n"


@pytest.mark.parametrize(("item", "expected"), [
    ("BINARY.SIZE[1]", b"BINARY.SIZE[1] %d" % len(_QP_DECODED)),
    ("BINARY.PEEK[1]", b"BINARY[1] ~{%d}\r\n" % len(_QP_DECODED) + _QP_DECODED),
    ("BINARY.PEEK[1]<0.20>", b"BINARY[1]<0> ~{20}\r\n" + _QP_DECODED[:20]),
    ("BINARY.PEEK[1]<37.10>", b"BINARY[1]<37> ~{10}\r\n" + _QP_DECODED[37:47]),
])
def test_binary_decodes_quoted_printable_per_rfc2045(server: RunningServer, item: str, expected: bytes) -> None:
    c = login(server)
    if b"Qp" not in b"".join(c.ok('LIST "" Qp')):
        create(server, "Qp", [plain("qp", body=_QP_BODY.decode(),
                                    extra="MIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n")])
    c.ok("EXAMINE Qp")
    assert c.ok(f"FETCH 1 ({item})") == [b"* 1 FETCH (" + expected + b")"]
    c.close()


# -- ESEARCH with CONDSTORE: RFC 7162 3.1.10 (RFC 4731) ------------------------------------------------------
def test_esearch_min_max_modseq_is_that_of_the_returned_messages(server: RunningServer) -> None:
    create(server, "Es", [plain("1"), plain("2"), plain("3")])
    c = login(server)
    c.ok("SELECT Es")
    c.ok("STORE 3 +FLAGS.SILENT (\\Flagged)")
    c.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    c.ok("STORE 2 +FLAGS.SILENT (\\Answered)")
    modseq = {}
    for line in untagged(c.ok("FETCH 1:3 (MODSEQ)"), b"FETCH"):
        m = re.match(rb"\* (\d) FETCH \(MODSEQ \((\d+)\)\)", line)
        assert m, line
        modseq[int(m.group(1))] = int(m.group(2))
    assert modseq[1] < modseq[2] and modseq[3] < modseq[1]
    cases = [
        ("MIN", f"MIN 1 MODSEQ {modseq[1]}"),
        ("MAX", f"MAX 3 MODSEQ {modseq[3]}"),
        ("MIN MAX", f"MIN 1 MAX 3 MODSEQ {modseq[1]}"),
        ("COUNT", f"COUNT 3 MODSEQ {modseq[2]}"),
        ("MIN ALL", f"MIN 1 ALL 1:3 MODSEQ {modseq[2]}"),
    ]
    # RFC 7162 3.1.9: SORT with a MODSEQ criterion reports the highest MODSEQ too; THREAD is not extended.
    assert c.ok("SORT (REVERSE SUBJECT) UTF-8 MODSEQ 1") == [f"* SORT 3 2 1 (MODSEQ {modseq[2]})".encode()]
    assert c.ok(f"SORT (ARRIVAL) UTF-8 MODSEQ {modseq[2] + 1}") == [b"* SORT"]
    for options, answer in cases:
        lines, tagged = c.command(f"SEARCH RETURN ({options}) MODSEQ 1", tag="e1")
        assert tagged.startswith(b"e1 OK"), tagged
        assert lines == [f'* ESEARCH (TAG "e1") {answer}'.encode()], options
    c.close()


# -- CONDSTORE and implicit \Seen: RFC 7162 3.2.4; one rule for every flag-change FETCH ----------------------
def test_condstore_fetch_that_sets_seen_carries_uid_and_modseq(server: RunningServer) -> None:
    create(server, "Cs", [plain("1", body="x\r\n"), plain("2", body="y\r\n")])
    c = login(server)
    c.ok("ENABLE CONDSTORE")
    c.ok("SELECT Cs")
    uid1, uid2 = (int(x) for x in c.ok("UID SEARCH ALL")[0].split()[2:])
    body = plain("2", body="y\r\n")
    lines = c.ok("FETCH 2 (BODY[] FLAGS)")
    m = re.fullmatch(rb"\* 2 FETCH \(UID (\d+) BODY\[\] \{(\d+)\}\r\n(.*) FLAGS \(\\Seen \\Recent\) MODSEQ \((\d+)\)\)",
                     lines[0], re.DOTALL)
    assert m and len(lines) == 1, lines
    assert int(m.group(1)) == uid2 and m.group(3) == body
    lines = c.ok("FETCH 1 (BODY[])")
    m = re.fullmatch(rb"\* 1 FETCH \(UID (\d+) BODY\[\] \{\d+\}\r\n.* FLAGS \(\\Seen \\Recent\) MODSEQ \((\d+)\)\)",
                     lines[0], re.DOTALL)
    assert m and int(m.group(1)) == uid1, lines
    # A second FETCH sets nothing: no unsolicited FLAGS, MODSEQ or UID.
    lines = c.ok("FETCH 1 (BODY[])")
    assert re.fullmatch(rb"\* 1 FETCH \(BODY\[\] \{\d+\}\r\n.*\)", lines[0], re.DOTALL), lines
    # STORE under CONDSTORE: UID, FLAGS and MODSEQ (3.2.4), also without a UID command.
    lines = c.ok("STORE 1 +FLAGS (\\Flagged)")
    assert re.fullmatch(rb"\* 1 FETCH \(UID %d FLAGS \(\\Flagged \\Seen \\Recent\) MODSEQ \(\d+\)\)" % uid1,
                        lines[0]), lines
    c.close()


def test_flag_updates_from_another_session_one_rule(server: RunningServer) -> None:
    create(server, "Fu", [plain("1")])
    a, b, q = login(server), login(server), login(server)
    q.ok("ENABLE QRESYNC")
    for x in (a, b, q):
        x.ok("SELECT Fu")
    uid = int(a.ok("UID SEARCH ALL")[0].split()[2])
    b.ok("STORE 1 +FLAGS.SILENT (\\Answered)")
    assert a.ok("NOOP") == [b"* 1 FETCH (FLAGS (\\Answered \\Recent))"]  # no CONDSTORE: FLAGS only
    lines = q.ok("NOOP")  # QRESYNC implies CONDSTORE (RFC 7162 3.2.3): UID and MODSEQ
    assert re.fullmatch(rb"\* 1 FETCH \(UID %d FLAGS \(\\Answered\) MODSEQ \(\d+\)\)" % uid, lines[0]), lines
    for x in (a, b, q):
        x.close()


# -- keywords: RFC 3501 7.2.6 (FLAGS), 7.1 (PERMANENTFLAGS) before a FETCH shows them ------------------------
_SYSTEM = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft"


def test_new_keyword_is_announced_before_use_to_every_session(server: RunningServer) -> None:
    create(server, "Kw", [plain("1")])
    a, b, e = login(server), login(server), login(server)
    a.ok("SELECT Kw")
    b.ok("SELECT Kw")
    e.ok("EXAMINE Kw")
    assert b.ok("STORE 1 +FLAGS ($Work)") == [
        b"* FLAGS (" + _SYSTEM + b" $Work)",
        b"* OK [PERMANENTFLAGS (" + _SYSTEM + b" $Work \\*)] Flags permitted",
        b"* 1 FETCH (FLAGS ($Work))",
    ]
    assert a.ok("NOOP") == [
        b"* FLAGS (" + _SYSTEM + b" $Work)",
        b"* OK [PERMANENTFLAGS (" + _SYSTEM + b" $Work \\*)] Flags permitted",
        b"* 1 FETCH (FLAGS ($Work \\Recent))",
    ]
    # A FETCH (no other updates allowed there) still says FLAGS first.
    assert e.ok("FETCH 1 FLAGS") == [
        b"* FLAGS (" + _SYSTEM + b" $Work)",
        b"* OK [PERMANENTFLAGS ()] No permanent flags permitted",
        b"* 1 FETCH (FLAGS ($Work))",
    ]
    assert a.ok("NOOP") == []
    # In IDLE the same three come at once.
    a.sock.sendall(b"i2 IDLE\r\n")
    assert a.readline() == b"+ idling\r\n"
    b.ok("STORE 1 +FLAGS.SILENT ($Later)")
    assert a.read_until(rb"FETCH") == [
        b"* FLAGS (" + _SYSTEM + b" $Work $Later)",
        b"* OK [PERMANENTFLAGS (" + _SYSTEM + b" $Work $Later \\*)] Flags permitted",
        b"* 1 FETCH (FLAGS ($Work $Later \\Recent))",
    ]
    a.sock.sendall(b"DONE\r\n")
    assert a.readline().startswith(b"i2 OK")
    for x in (a, b, e):
        x.close()


# -- SORT: RFC 5256 2.1 (base subject), 3 (i;ascii-casemap), RFC 5957 (DISPLAYFROM/DISPLAYTO) ---------------
_SORTED = [
    # (subject, From, To, Cc)
    ("_under", "Zed <zed@example.org>", "undisclosed-recipients:;", "group: a@b.example;"),
    ("apple", "bob@example.org", "Yann <y@example.org>", "<c@example.org>"),
    ("Re: [list] Banana (fwd)", "Amy <amy@example.org>", "team: Xavier <x@example.org>;", "zz@example.org"),
    ("[bracket]", "lists: carl@example.org;", "w@example.org", "b@example.org"),
]


@pytest.mark.parametrize(("keys", "expected"), [
    # "_UNDER" and "[BRACKET]" sort after the letters under i;ascii-casemap (lower-casing put them first);
    # "Re: [list] Banana (fwd)" has the base subject "Banana", "[bracket]" keeps its blob (nothing follows).
    ("SUBJECT", "2 3 4 1"),
    ("REVERSE SUBJECT", "1 4 3 2"),
    # first From address: a group's name ("lists") is the key
    ("FROM", "3 2 4 1"),
    ("DISPLAYFROM", "3 2 4 1"),
    # first To: "team" and "undisclosed-recipients" are groups
    ("TO", "3 1 4 2"),
    ("DISPLAYTO", "3 1 4 2"),
    # first Cc: "group"
    ("CC", "4 2 1 3"),
])
def test_sort_keys_and_comparator(server: RunningServer, keys: str, expected: str) -> None:
    c = login(server)
    if b"SortKeys" not in b"".join(c.ok('LIST "" SortKeys')):
        create(server, "SortKeys", [plain(subj, extra=f"Cc: {cc}\r\n").replace(
            b"From: a@example.org\r\nTo: b@example.org", f"From: {frm}\r\nTo: {to}".encode())
            for subj, frm, to, cc in _SORTED])
    c.ok("EXAMINE SortKeys")
    assert c.ok(f"SORT ({keys}) UTF-8 ALL") == [f"* SORT {expected}".encode()]
    c.close()


# -- THREAD=REFERENCES: RFC 5256 section 4, step 1C -----------------------------------------------------------
def test_thread_references_own_references_replace_a_guess(server: RunningServer) -> None:
    def msg(mid: str, refs: str, date: str) -> bytes:
        extra = f"Message-ID: <{mid}@x>\r\n" + (f"References: {refs}\r\n" if refs else "")
        return plain(mid, extra=extra).replace(b"Mon, 02 Nov 2026 10:00:00", date.encode())
    create(server, "Thr", [
        msg("m1", "", "Mon, 02 Nov 2026 10:05:00"),
        msg("m2", "<m1@x> <m3@x>", "Mon, 02 Nov 2026 10:02:00"),  # guesses m1 -> m3 -> m2
        msg("m3", "<m2@x>", "Mon, 02 Nov 2026 10:00:00"),         # its own parent would be a loop
    ])
    c = login(server)
    c.ok("EXAMINE Thr")
    assert c.ok("THREAD REFERENCES UTF-8 ALL") == [b"* THREAD (3 2)(1)"]
    c.close()


def test_recent_is_claimed_once_across_server_processes(tmp_path: Path) -> None:
    # Two server processes over one data directory (as workers would be): the claim lives in the index.
    data = tmp_path / "data"
    data.mkdir()
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data), stdin="secret1")
    one, two = start_server(data), start_server(data)
    try:
        for srv in (one, two):
            srv.users["alice"] = "secret1"
        create(one, "Shared", [plain("before")])
        a, b = login(one), login(two)
        assert b"* 1 RECENT" in a.ok("SELECT Shared")
        assert b"* 0 RECENT" in b.ok("SELECT Shared")
        imapd_cli("deliver", "alice", "--mailbox", "Shared", "--data-dir", str(data), stdin=plain("delivered"))
        got_b = b.ok("NOOP")  # the second process is told first this time
        got_a = a.ok("NOOP")
        assert untagged(got_b, b"EXISTS") == [b"* 2 EXISTS"] and b"* 1 RECENT" in got_b, got_b
        assert untagged(got_a, b"EXISTS") == [b"* 2 EXISTS"] and b"* 1 RECENT" in got_a, got_a  # its old one
        assert b.ok("FETCH 2 FLAGS") == [b"* 2 FETCH (FLAGS (\\Recent))"]
        assert a.ok("FETCH 2 FLAGS") == [b"* 2 FETCH (FLAGS ())"]
        a.close()
        b.close()
    finally:
        stop_server(one)
        stop_server(two)
