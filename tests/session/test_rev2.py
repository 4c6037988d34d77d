"""IMAP4rev2 (RFC 9051) per session: what ``ENABLE IMAP4rev2`` changes, against a real server, with the
RFC's own examples where it gives one; and that a session which does not enable it stays IMAP4rev1."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.conftest import RunningServer
from tests.rawimap import RawIMAP


def _append(c: RawIMAP, mailbox: str, subject: str, flags: str = "") -> None:
    data = f"From: a@example.org\r\nSubject: {subject}\r\n\r\nbody {subject}\r\n".encode()
    c.ok(f"APPEND {mailbox} ({flags}) ".encode() + b"{%d+}\r\n" % len(data) + data)


def _login(server: RunningServer, user: str = "alice", *, rev2: bool = False) -> RawIMAP:
    c = RawIMAP(server.host, server.port)
    c.ok(f"LOGIN {user} {server.users[user]}")
    if rev2:
        assert c.ok("ENABLE IMAP4rev2") == [b"* ENABLED IMAP4rev2"]
    return c


@pytest.fixture
def rev2(server: RunningServer) -> Iterator[RawIMAP]:
    c = _login(server, rev2=True)
    yield c
    c.close()


@pytest.fixture
def rev1(server: RunningServer) -> Iterator[RawIMAP]:
    c = _login(server)
    yield c
    c.close()


def _box(server: RunningServer, name: str, subjects: list[str], flags: str = "") -> None:
    """A fresh mailbox ``name`` holding ``subjects``, filled by a session of its own."""
    c = _login(server)
    c.command(f"DELETE {name}")
    c.ok(f"CREATE {name}")
    for s in subjects:
        _append(c, name, s, flags)
    c.close()


def test_advertised_beside_rev1_and_enabled_once(server: RunningServer, rev2: RawIMAP) -> None:
    caps = rev2.ok("CAPABILITY")[0].split()
    assert b"IMAP4rev1" in caps and b"IMAP4rev2" in caps
    assert b"IMAP4rev2" in rev2.greeting
    assert rev2.ok("ENABLE IMAP4rev2") == [b"* ENABLED"]  # RFC 5161 3.2: only what is newly enabled
    _, tagged = rev2.command("ENABLE")
    assert b"BAD" in tagged


def test_select_has_list_and_no_recent_or_unseen(server: RunningServer, rev2: RawIMAP, rev1: RawIMAP) -> None:
    # RFC 9051 6.3.2: FLAGS, EXISTS, LIST required; OK UIDVALIDITY/UIDNEXT/PERMANENTFLAGS; no RECENT or
    # [UNSEEN n] (3501's example had both).
    _box(server, "Sel", ["one", "two", "three"])
    lines = rev2.ok("SELECT Sel")
    assert b"* 3 EXISTS" in lines
    assert [ln for ln in lines if ln.startswith(b"* LIST ")] == [b'* LIST (\\HasNoChildren) "/" "Sel"']
    assert not [ln for ln in lines if b"RECENT" in ln or b"[UNSEEN" in ln], lines
    assert any(ln.startswith(b"* OK [UIDVALIDITY ") for ln in lines)
    assert any(ln.startswith(b"* OK [UIDNEXT 4]") for ln in lines)
    assert any(ln.startswith(b"* OK [PERMANENTFLAGS (") for ln in lines)
    assert any(ln.startswith(b"* FLAGS (") and b"\\Recent" not in ln for ln in lines)
    # the same SELECT in an IMAP4rev1 session keeps RECENT and UNSEEN, and sends no LIST
    lines = rev1.ok("EXAMINE Sel")
    assert any(re.fullmatch(rb"\* \d+ RECENT", ln) for ln in lines)
    assert any(ln.startswith(b"* OK [UNSEEN 1]") for ln in lines)
    assert not [ln for ln in lines if ln.startswith(b"* LIST ")]


def test_select_list_gives_the_servers_spelling_of_inbox(server: RunningServer, rev2: RawIMAP) -> None:
    lines = rev2.ok("EXAMINE inbox")
    assert [ln for ln in lines if ln.startswith(b"* LIST ")] == [b'* LIST (\\HasNoChildren) "/" "INBOX"']
    lines = rev2.ok("SELECT INBOX")
    assert lines[0] == b"* OK [CLOSED] Previous mailbox closed"  # RFC 9051 6.3.2, also without QRESYNC


def test_no_recent_anywhere_and_rev1_keeps_it(server: RunningServer, rev2: RawIMAP) -> None:
    _box(server, "Rec", ["a", "b"])
    rev2.ok("SELECT Rec")
    fetched = rev2.ok("FETCH 1:* (FLAGS)")
    assert fetched == [b"* 1 FETCH (FLAGS ())", b"* 2 FETCH (FLAGS ())"]
    # new mail: EXISTS without RECENT, in NOOP and in IDLE
    other = _login(server)
    _append(other, "Rec", "c")
    untagged = rev2.ok("NOOP")
    assert untagged == [b"* 3 EXISTS"], untagged
    rev2.sock.sendall(b"i1 IDLE\r\n")
    assert rev2.readline().startswith(b"+ ")
    _append(other, "Rec", "d")
    lines = rev2.read_until(rb"^\* 4 EXISTS$")
    rev2.sock.sendall(b"DONE\r\n")
    lines += rev2.read_until(rb"^i1 OK")
    assert not [ln for ln in lines if b"RECENT" in ln], lines
    assert rev2.ok("FETCH 4 (FLAGS)") == [b"* 4 FETCH (FLAGS ())"]
    # the rev2 session claimed nothing: the next IMAP4rev1 SELECT is the first to be told (RFC 3501 2.3.2)
    lines = other.ok("SELECT Rec")
    assert b"* 4 RECENT" in lines, lines
    assert other.ok("FETCH 4 (FLAGS)") == [b"* 4 FETCH (FLAGS (\\Recent))"]
    other.close()


@pytest.mark.parametrize("criteria", ["RECENT", "NEW", "OLD", "NOT RECENT", "OR SEEN NEW", "(ALL OLD)"])
def test_search_recent_new_old_are_refused(server: RunningServer, rev2: RawIMAP, criteria: str) -> None:
    rev2.ok("EXAMINE INBOX")
    for command in (f"SEARCH {criteria}", f"UID SEARCH {criteria}", f"SORT (ARRIVAL) UTF-8 {criteria}",
                    f"THREAD REFERENCES UTF-8 {criteria}", f"SEARCH RETURN (COUNT) {criteria}"):
        untagged, tagged = rev2.command(command)
        assert b" BAD " in tagged and not untagged, (command, untagged, tagged)


def test_search_answers_esearch(server: RunningServer, rev2: RawIMAP) -> None:
    _box(server, "Es", ["x1", "x2", "x3", "x4"])
    rev2.ok("SELECT Es")
    rev2.ok("STORE 2,4 +FLAGS (\\Flagged)")
    # RFC 9051 6.4.4: SEARCH without RETURN is RETURN (ALL); nothing found is an ESEARCH with no data
    assert rev2.command("SEARCH FLAGGED", "A282") == ([b'* ESEARCH (TAG "A282") ALL 2,4'], b"A282 OK SEARCH completed")
    untagged, _ = rev2.command('SEARCH TEXT "string not in mailbox"', "A283")
    assert untagged == [b'* ESEARCH (TAG "A283")']
    untagged, _ = rev2.command("UID SEARCH 1:3", "A284")
    uids = rev2.ok("UID FETCH 1:3 (UID)")
    first, last = (re.search(rb"UID (\d+)", uids[i]).group(1) for i in (0, 2))  # type: ignore[union-attr]
    assert untagged == [b'* ESEARCH (TAG "A284") UID ALL ' + first + b":" + last]
    untagged, _ = rev2.command("SEARCH RETURN (MIN COUNT) FLAGGED", "A285")
    assert untagged == [b'* ESEARCH (TAG "A285") MIN 2 COUNT 2']
    untagged, _ = rev2.command("SEARCH CHARSET UTF-8 ALL", "A286")
    assert untagged == [b'* ESEARCH (TAG "A286") ALL 1:4']
    # with a MODSEQ criterion (CONDSTORE): the highest MODSEQ in the ESEARCH, not "* SEARCH ... (MODSEQ n)"
    untagged, _ = rev2.command("SEARCH MODSEQ 1", "A287")
    assert [ln for ln in untagged if ln.startswith(b"* ESEARCH")] == untagged[-1:], untagged
    assert re.fullmatch(rb'\* ESEARCH \(TAG "A287"\) ALL 1:4 MODSEQ \d+', untagged[-1]), untagged


def test_rev1_search_status_and_names_unchanged(server: RunningServer, rev1: RawIMAP) -> None:
    _box(server, "Old", ["o1", "o2"])
    rev1.ok("SELECT Old")
    assert rev1.ok("SEARCH ALL") == [b"* SEARCH 1 2"]
    assert rev1.ok("SEARCH RECENT") in ([b"* SEARCH"], [b"* SEARCH 1 2"])
    assert rev1.ok("STATUS INBOX (RECENT)")[0].startswith(b'* STATUS "INBOX" (RECENT ')


def test_status_recent_is_refused(server: RunningServer, rev2: RawIMAP) -> None:
    _box(server, "St", ["s1", "s2"])
    assert rev2.ok("STATUS St (MESSAGES SIZE UIDNEXT)")[0].startswith(b'* STATUS "St" (MESSAGES 2 SIZE ')
    for command in ("STATUS St (RECENT)", "STATUS St (MESSAGES RECENT)",
                    'LIST "" "St" RETURN (STATUS (RECENT))'):
        untagged, tagged = rev2.command(command)
        assert b" BAD " in tagged and not untagged, (command, untagged)
    lines = rev2.ok('LIST "" "St" RETURN (STATUS (MESSAGES))')
    assert lines == [b'* LIST (\\HasNoChildren) "/" "St"', b'* STATUS "St" (MESSAGES 2)']


def test_mailbox_names_are_utf8(server: RunningServer, rev2: RawIMAP, rev1: RawIMAP) -> None:
    # RFC 9051 5.1: once IMAP4rev2 is enabled, names are UTF-8 both ways, not modified UTF-7
    rev2.command('DELETE "Entwürfe-rev2"'.encode())
    rev2.ok('CREATE "Entwürfe-rev2"'.encode())
    assert rev2.ok('LIST "" "Entw*rev2"') == ['* LIST (\\HasNoChildren) "/" "Entwürfe-rev2"'.encode()]
    assert rev1.ok('LIST "" "Entw*rev2"') == [b'* LIST (\\HasNoChildren) "/" "Entw&APw-rfe-rev2"']
    lines = rev2.ok('SELECT "Entwürfe-rev2"'.encode())
    assert ['* LIST (\\HasNoChildren) "/" "Entwürfe-rev2"'.encode()] == [ln for ln in lines if b"LIST" in ln]
    assert rev2.ok('STATUS "Entwürfe-rev2" (MESSAGES)'.encode()) == ['* STATUS "Entwürfe-rev2" (MESSAGES 0)'.encode()]
    # a modified UTF-7 spelling is just another name now
    _, tagged = rev2.command('SELECT "Entw&APw-rfe-rev2"')
    assert b"NO [NONEXISTENT]" in tagged


def test_lsub_still_works_and_check_is_accepted(server: RunningServer, rev2: RawIMAP) -> None:
    # LSUB is deprecated in RFC 9051 but not removed; CHECK is gone from the grammar, we accept it as NOOP
    rev2.ok("SUBSCRIBE INBOX")
    assert b'* LSUB () "/" "INBOX"' in rev2.ok('LSUB "" "INBOX"')
    rev2.ok("SELECT INBOX")
    rev2.ok("CHECK")


@pytest.mark.parametrize(("create", "select"), [
    (["Par", "Par/Kid"], "Par"),                          # \HasChildren
    (["Par2/Kid"], "Par2/Kid"),                           # a child of an implied parent
    (["Arch (USE (\\Archive))"], "Arch"),                 # special use
    (["INBOX/Sub"], "INBOX"),                             # INBOX with a child
])
def test_select_list_attributes_are_those_of_list(server: RunningServer, rev2: RawIMAP, create: list[str],
                                                   select: str) -> None:
    # RFC 9051 6.3.2: "The list of mailbox attributes MUST be accurate": the same ones LIST gives
    try:
        for name in create:
            rev2.ok(f"CREATE {name}")
        listed = rev2.ok(f'LIST "" "{select}"')
        lines = rev2.ok(f'EXAMINE "{select}"')
        assert [ln for ln in lines if ln.startswith(b"* LIST ")] == listed, (lines, listed)
        assert b"Children" in listed[0]
    finally:
        rev2.command("UNSELECT")
        for name in reversed(create):
            rev2.command(f"DELETE {name.split(' ')[0]}")
