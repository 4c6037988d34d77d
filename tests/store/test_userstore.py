from __future__ import annotations

import os

import pytest

from imapd.store import (
    CannotDeleteInbox,
    InvalidMailboxName,
    MailboxExists,
    MailboxHasChildren,
    MailboxListChanged,
    NoSuchMailbox,
    NoSuchUser,
    Store,
    UserStore,
)

from .conftest import msg


def names(us: UserStore) -> list[str]:
    return [m.name for m in us.list_mailboxes()]


def test_new_user_layout(store: Store, alice: UserStore) -> None:
    root = os.path.join(store.data_dir, "mail", "alice")
    for d in ("cur", "new", "tmp", ".Sent/cur", ".Drafts/new", ".Trash/tmp", ".Junk/cur", ".Archive/cur"):
        assert os.path.isdir(os.path.join(root, d)), d
    assert os.path.exists(os.path.join(root, "imapd-index.sqlite"))
    info = {m.name: m for m in alice.list_mailboxes()}
    assert {n: m.special_use for n, m in info.items()} == {
        "INBOX": None, "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
        "Archive": "\\Archive"}
    assert all(m.subscribed for m in info.values())
    assert names(alice)[0] == "INBOX"


def test_unknown_user(store: Store) -> None:
    with pytest.raises(NoSuchUser):
        store.user("nobody")
    with pytest.raises(NoSuchUser):
        store.user("../etc")


def test_create_with_parents_and_dots(store: Store, alice: UserStore) -> None:
    events: list[MailboxListChanged] = []
    store.feed.subscribe_user("alice", events.append)
    alice.create_mailbox("Projects/v1.2/Notes", "\\Flagged")
    info = {m.name: m for m in alice.list_mailboxes()}
    assert info["Projects"].has_children and not info["Projects"].noselect
    assert info["Projects/v1.2"].has_children
    assert info["Projects/v1.2/Notes"].special_use == "\\Flagged"
    assert os.path.isdir(os.path.join(alice.root, ".Projects.v1\\2e2.Notes", "cur"))
    assert [e.name for e in events if e.kind == "created"] == ["Projects", "Projects/v1.2", "Projects/v1.2/Notes"]
    with pytest.raises(MailboxExists):
        alice.create_mailbox("Projects")
    with pytest.raises(MailboxExists):
        alice.create_mailbox("inbox")
    for bad in ("../x", "a//b", "/abs", "x\x01"):
        with pytest.raises(InvalidMailboxName):
            alice.create_mailbox(bad)
    assert not os.path.exists(os.path.join(os.path.dirname(alice.root), "x"))


def test_uidvalidity_never_repeats(alice: UserStore) -> None:
    alice.create_mailbox("X")
    v1 = alice.status("X").uidvalidity
    alice.delete_mailbox("X")
    alice.create_mailbox("X")
    assert alice.status("X").uidvalidity > v1


def test_delete(alice: UserStore) -> None:
    with pytest.raises(CannotDeleteInbox):
        alice.delete_mailbox("INBOX")
    alice.create_mailbox("A/B")
    with pytest.raises(MailboxHasChildren):
        alice.delete_mailbox("A")
    mb = alice.open("A/B")
    mb.append(msg())
    mb.release()
    alice.delete_mailbox("A/B")
    alice.delete_mailbox("A")
    assert "A" not in names(alice)
    assert not any(n in (".A", ".A.B") or n.startswith("imapd-trash") for n in os.listdir(alice.root))
    with pytest.raises(NoSuchMailbox):
        alice.delete_mailbox("A")


def test_rename_keeps_ids_and_children(alice: UserStore) -> None:
    alice.create_mailbox("Work/2024")
    mb = alice.open("Work")
    mb.append(msg(1))
    before = alice.status("Work")
    child_id = alice.status("Work/2024").mailbox_id
    alice.subscribe("Work/2024")
    alice.rename_mailbox("Work", "Old/Job")
    assert set(names(alice)) >= {"Old", "Old/Job", "Old/Job/2024"}
    assert "Work" not in names(alice)
    after = alice.status("Old/Job")
    assert (after.mailbox_id, after.uidvalidity, after.messages) == (before.mailbox_id, before.uidvalidity, 1)
    assert alice.status("Old/Job/2024").mailbox_id == child_id
    assert "Old/Job/2024" in alice.subscriptions()
    assert mb.name == "Old/Job" and mb.read_message(1) == msg(1)
    mb.release()
    with pytest.raises(MailboxExists):
        alice.rename_mailbox("Old/Job", "Sent")
    with pytest.raises(InvalidMailboxName):
        alice.rename_mailbox("Old", "Old/Sub")


def test_rename_inbox_moves_messages(alice: UserStore) -> None:
    inbox = alice.open("INBOX")
    inbox.append(msg(1))
    inbox.append(msg(2))
    v = inbox.uidvalidity
    alice.rename_mailbox("INBOX", "Saved")
    assert inbox.exists == 0 and inbox.uidvalidity == v
    st = alice.status("Saved")
    assert st.messages == 2
    inbox.append(msg(3))
    assert inbox.uids().tolist() == [3]  # UIDs are never reused
    inbox.release()


def test_subscriptions_may_not_exist(alice: UserStore) -> None:
    alice.subscribe("Ghost/Folder")
    assert "Ghost/Folder" in alice.subscriptions()
    alice.unsubscribe("Ghost/Folder")
    assert "Ghost/Folder" not in alice.subscriptions()
    alice.unsubscribe("Sent")
    assert not {m.name: m for m in alice.list_mailboxes()}["Sent"].subscribed


def test_external_folder_is_indexed_and_implied_parent(alice: UserStore) -> None:
    os.makedirs(os.path.join(alice.root, ".Lists.python\\2edev", "cur"))
    os.makedirs(os.path.join(alice.root, ".Lists.python\\2edev", "new"))
    os.makedirs(os.path.join(alice.root, ".Lists.python\\2edev", "tmp"))
    info = {m.name: m for m in alice.list_mailboxes()}
    assert info["Lists/python.dev"].mailbox_id is not None
    assert info["Lists"].noselect and info["Lists"].has_children and info["Lists"].mailbox_id is None
    with pytest.raises(NoSuchMailbox):
        alice.open("Lists")


def test_close_idle_users_gives_back_the_index(tmp_path: os.PathLike[str]) -> None:
    from imapd.store.store import Store

    store = Store(tmp_path)
    store.create_user("a")
    store.create_user("b")
    mb = store.user("b").open("INBOX")
    assert store.close_idle_users(keep={"x"}) == 1  # "a" closed; "b" has an open mailbox
    assert store.close_idle_users(keep=set()) == 0
    mb.release()
    assert store.close_idle_users(keep={"b"}) == 0
    assert store.close_idle_users(keep=set()) == 1
    assert "INBOX" in {m.name for m in store.user("a").list_mailboxes()}  # reopens on demand
    store.close()
