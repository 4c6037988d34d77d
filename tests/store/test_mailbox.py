from __future__ import annotations

import os
from array import array

import pytest

from imapd.store import (
    AppendItem,
    FlagsChanged,
    InvalidFlag,
    MessageEvent,
    MessagesAdded,
    MessagesExpunged,
    NoSuchMailbox,
    Store,
    UserStore,
)
from imapd.store.flags import parse_info

from .conftest import msg


def cur_names(path: str) -> list[str]:
    return sorted(os.listdir(os.path.join(path, "cur")))


def test_append_assigns_increasing_uids_and_writes_flags(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    u1 = mb.append(msg(1), ["\\Seen"], internaldate=1_600_000_000)
    u2 = mb.append(msg(2), ["\\Flagged", "$Label1"])
    assert (u1, u2) == (1, 2)
    assert mb.uids() == array("I", [1, 2])
    assert mb.uidnext == 3
    assert mb.exists == 2
    assert mb.flags(1) == ("\\Seen",)
    assert mb.flags(2) == ("\\Flagged", "$Label1")
    assert mb.flags(3) is None
    names = cur_names(mb.path)
    assert sorted(parse_info(n)[1:] for n in names) == [(1, 0), (4, 1)]  # file names need not sort by UID
    assert os.listdir(os.path.join(mb.path, "tmp")) == []
    assert mb.read_message(1) == msg(1)
    info = mb.message_info([1, 2, 99])
    assert [i.uid for i in info] == [1, 2]
    assert info[0].internaldate == 1_600_000_000 and info[0].size == len(msg(1))
    assert info[0].emailid != info[1].emailid
    with open(os.path.join(mb.path, "dovecot-keywords")) as f:
        assert f.read() == "0 $Label1\n"
    mb.release()


def test_append_many_is_one_modseq(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    before = mb.highestmodseq
    uids = mb.append_many([AppendItem(msg(i)) for i in range(5)])
    assert uids == [1, 2, 3, 4, 5]
    assert mb.highestmodseq == before + 1
    assert {mb.modseq(u) for u in uids} == {before + 1}
    mb.release()


def test_invalid_flags(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    for bad in (["\\Recent"], ["\\Bogus"], ["has space"], ["a(b"]):
        with pytest.raises(InvalidFlag):
            mb.append(msg(), bad)
    assert mb.exists == 0
    assert cur_names(mb.path) == []
    mb.release()


def test_store_flags_modes_and_unchangedsince(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    mb.append_many([AppendItem(msg(i)) for i in range(3)])
    m0 = mb.highestmodseq
    r = mb.store_flags([1, 2], "add", ["\\Seen", "work"])
    assert r.failed == []
    assert r.changed == [(1, ("\\Seen", "work"), m0 + 1), (2, ("\\Seen", "work"), m0 + 1)]
    r = mb.store_flags([1, 2], "add", ["\\Seen"])
    assert r.changed == [] and mb.highestmodseq == m0 + 1
    r = mb.store_flags([1], "remove", ["work"])
    assert r.changed == [(1, ("\\Seen",), m0 + 2)]
    r = mb.store_flags([1, 2, 3], "replace", ["\\Answered"], unchanged_since=m0 + 1)
    assert r.failed == [1]
    assert [c[0] for c in r.changed] == [2, 3]
    assert mb.flags(1) == ("\\Seen",)
    assert mb.flags(2) == ("\\Answered",)
    # on-disk names follow
    assert sorted(parse_info(n)[1] for n in cur_names(mb.path)) == [1, 2, 2]
    assert mb.changed_since(m0 + 2) == [(2, ("\\Answered",), m0 + 3), (3, ("\\Answered",), m0 + 3)]
    mb.release()


def test_keywords_case_insensitive_and_listed(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    mb.append(msg(), ["$Junk"])
    mb.store_flags([1], "add", ["$junk", "Other"])
    assert mb.flags(1) == ("$Junk", "Other")
    assert mb.keywords() == ["$Junk", "Other"]
    mb.release()


def test_expunge_history(store: Store) -> None:
    store.history_limit = 4
    us = store.create_user("bob")
    mb = us.open("INBOX")
    mb.append_many([AppendItem(msg(i)) for i in range(10)])
    m = mb.highestmodseq
    assert mb.expunge([2, 3, 99]) == [2, 3]
    assert mb.uids().tolist() == [1, 4, 5, 6, 7, 8, 9, 10]
    assert mb.expunged_since(m) == ([2, 3], True)
    assert mb.expunged_since(0) == ([2, 3], True)
    for u in (4, 5, 6):
        mb.expunge([u])
    # limit 4 rows: the oldest op (2,3) was trimmed
    uids, complete = mb.expunged_since(0)
    assert uids == [4, 5, 6] and not complete
    uids, complete = mb.expunged_since(m + 1)
    assert uids == [4, 5, 6] and complete
    assert len(cur_names(mb.path)) == 5
    mb.release()


def test_copy_and_move(alice: UserStore) -> None:
    inbox = alice.open("INBOX")
    inbox.append_many([AppendItem(msg(i), ("\\Seen", "tag")) for i in range(3)])
    archive = alice.open("Archive")
    pairs = inbox.copy([1, 3], archive)
    assert pairs == [(1, 1), (3, 2)]
    assert archive.uids().tolist() == [1, 2]
    assert archive.flags(2) == ("\\Seen", "tag")
    src = os.stat(inbox.message_path(1))
    dst = os.stat(archive.message_path(1))
    assert (src.st_ino, src.st_dev) == (dst.st_ino, dst.st_dev)  # hard link
    a_info = archive.message_info([1])[0]
    assert a_info.emailid == inbox.message_info([1])[0].emailid
    pairs = inbox.move([2, 3], "Trash")
    assert pairs == [(2, 1), (3, 2)]
    assert inbox.uids().tolist() == [1]
    assert inbox.expunged_since(0)[0] == [2, 3]
    st = alice.status("Trash")
    assert (st.messages, st.unseen, st.uidnext) == (2, 0, 3)
    assert alice.open("Trash").read_message(2) == msg(2)
    with pytest.raises(NoSuchMailbox):
        inbox.copy([1], "Nope")
    inbox.release()
    archive.release()


def test_change_feed_events(store: Store, alice: UserStore) -> None:
    mb = alice.open("INBOX")
    events: list[MessageEvent] = []
    sub = mb.subscribe(events.append)
    mb.append(msg(1))
    mb.store_flags([1], "add", ["\\Seen"])
    mb.sync()  # own writes: nothing new
    mb.expunge([1])
    assert [type(e) for e in events] == [MessagesAdded, FlagsChanged, MessagesExpunged]
    assert [e.modseq for e in events] == sorted(e.modseq for e in events)
    sub.cancel()
    mb.append(msg(2))
    assert len(events) == 3
    mb.release()


def test_copy_publishes_to_open_destination(alice: UserStore) -> None:
    inbox = alice.open("INBOX")
    trash = alice.open("Trash")
    events: list[MessageEvent] = []
    trash.subscribe(events.append)
    inbox.append(msg())
    inbox.move([1], "Trash")
    assert isinstance(events[0], MessagesAdded) and events[0].uids == [1]
    assert trash.exists == 1
    inbox.release()
    trash.release()


def test_registry_shares_objects_and_on_idle(store: Store, alice: UserStore) -> None:
    a = alice.open("INBOX")
    b = store.open_mailbox("alice", "inbox")
    assert a is b and a.refcount == 2
    idle = []
    store.on_idle = idle.append
    a.release()
    assert idle == []
    b.release()
    assert idle == [a]
    assert store.open_mailbox("alice", "INBOX") is a  # still registered: warm
    a.release()
    store.evict(a)
    c = alice.open("INBOX")
    assert c is not a
    c.release()


def test_two_processes_views_converge(tmp_path: object, store: Store, alice: UserStore) -> None:
    other = Store(store.data_dir, durability="normal")
    try:
        mine = alice.open("INBOX")
        theirs = other.open_mailbox("alice", "INBOX")
        theirs.append(msg(1), ["\\Seen"])
        assert mine.exists == 0
        mine.sync()
        assert mine.uids().tolist() == [1] and mine.flags(1) == ("\\Seen",)
        mine.store_flags([1], "replace", [])
        theirs.sync()
        assert theirs.flags(1) == ()
        assert theirs.highestmodseq == mine.highestmodseq
    finally:
        other.close()


def test_status_and_unseen(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    mb.append_many([AppendItem(msg(i), ("\\Seen",) if i % 2 else ()) for i in range(4)])
    st = mb.status()
    assert (st.messages, st.unseen, st.uidnext) == (4, 2, 5)
    assert st.size == sum(len(msg(i)) for i in range(4))
    mb.release()
    st2 = alice.status("INBOX")
    assert st2 == st
    assert mb.first_unseen_uid() == 1


def test_metadata_cache(alice: UserStore) -> None:
    from imapd.store.metadata import mime_available

    if not mime_available():
        pytest.skip("imapd.mime.parse_message not available yet")
    mb = alice.open("INBOX")
    mb.append(msg(7))
    meta = mb.metadata(1)
    assert meta is not None
    row = alice.index.conn.execute("SELECT meta FROM messages WHERE uid=1").fetchone()
    assert row[0] is not None
    mb.release()


def test_deleted_mailbox_object(alice: UserStore) -> None:
    mb = alice.open("Junk")
    alice.delete_mailbox("Junk")
    assert mb.deleted
    with pytest.raises(NoSuchMailbox):
        mb.append(msg())
