"""Deliveries queued for the full-text index (``append_many(text_later=True)``): nothing is indexed until
``flush()`` (or the user's ``close()``), then all of it in one go; without a hook the index is written at
once, as for APPEND."""

from __future__ import annotations

from imapd.store import Store, UserStore
from imapd.store.mailbox import AppendItem
from imapd.store.textindexes import TextIndexes

from .conftest import msg


def _indexed(alice: UserStore, mailbox_id: int) -> int:
    ti = alice.texts.get(mailbox_id)
    assert ti is not None
    return ti.count()[0]


def test_queued_until_flush(store: Store, alice: UserStore) -> None:
    calls: list[tuple[TextIndexes, int, int]] = []
    store.on_text_queued = lambda texts, count, size: calls.append((texts, count, size))
    mb = alice.open("INBOX")
    try:
        for n in range(3):
            mb.append_many([AppendItem(msg(n, "zebracorn"), (), None)], text_later=True)
        assert [c for _, c, _ in calls] == [1, 2, 3] and all(t is alice.texts for t, _, _ in calls)
        assert [s for _, _, s in calls] == [sum(len(msg(n, "zebracorn")) for n in range(k)) for k in (1, 2, 3)]
        assert alice.texts.queued == 3
        assert _indexed(alice, mb.mailbox_id) == 0
        alice.texts.flush()
        assert alice.texts.queued == 0
        assert _indexed(alice, mb.mailbox_id) == 3
        ti = alice.texts.get(mb.mailbox_id)
        assert ti is not None and ti.search("body", "zebracorn") == {1, 2, 3}
    finally:
        mb.release()


def test_close_writes_the_queue(tmp_path: object, store: Store, alice: UserStore) -> None:
    store.on_text_queued = lambda texts, count, size: None  # never flushed by anyone
    mb = alice.open("INBOX")
    mailbox_id = mb.mailbox_id
    mb.append_many([AppendItem(msg(1), (), None)], text_later=True)
    mb.release()
    store.remove_user("alice")  # closes the user's index, as an idle close or a stop does
    again = store.user("alice")
    assert _indexed(again, mailbox_id) == 1


def test_without_hook_indexed_at_once(store: Store, alice: UserStore) -> None:
    mb = alice.open("INBOX")
    try:
        mb.append_many([AppendItem(msg(1), (), None)], text_later=True)
        assert alice.texts.queued == 0
        assert _indexed(alice, mb.mailbox_id) == 1
    finally:
        mb.release()


def test_expunged_before_the_flush_is_never_indexed(store: Store, alice: UserStore) -> None:
    """A draft saved and replaced within the flush delay: the expunged copy leaves the queue too."""
    store.on_text_queued = lambda texts, count, size: None
    mb = alice.open("INBOX")
    try:
        first = mb.append_many([AppendItem(msg(1, "zebracorn"), (), None)], text_later=True)
        second = mb.append_many([AppendItem(msg(2, "zebracorn"), (), None)], text_later=True)
        mb.expunge(first)
        assert alice.texts.queued == 1
        alice.texts.flush()
        assert _indexed(alice, mb.mailbox_id) == 1
        ti = alice.texts.get(mb.mailbox_id)
        assert ti is not None and ti.search("body", "zebracorn") == set(second)
    finally:
        mb.release()
