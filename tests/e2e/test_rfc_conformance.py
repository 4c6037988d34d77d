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
