"""A write is SQL+files then an in-memory apply: the two halves can run on different threads."""

from __future__ import annotations

import threading

from imapd.store import (
    AppendItem,
    FlagsChanged,
    MessageEvent,
    MessagesAdded,
    MessagesExpunged,
    Store,
    UserStore,
)
from imapd.store.mailbox import Mailbox
from imapd.store.mailindex import IndexDelta

from .conftest import msg


def test_writes_on_a_worker_thread_hand_their_delta_to_the_applier(store: Store, alice: UserStore) -> None:
    mb = alice.open("INBOX")
    events: list[MessageEvent] = []
    mb.subscribe(events.append)
    handed: list[tuple[Mailbox, IndexDelta]] = []
    store.applier = lambda m, d: handed.append((m, d))
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(mb.store_flags([mb.append(msg(1))], "add", ["New"])))
    t.start()
    t.join()
    # the worker did the SQL and file work; the arrays and the feed have not moved yet
    assert mb.exists == 0 and events == [] and len(handed) == 2
    assert result[0].changed == [(1, ("New",), 3)]  # type: ignore[attr-defined]
    store.applier = None
    for m, d in handed:
        m.apply(d)  # the second was read before the first was applied: it is stale, so it is read again
    assert mb.exists == 1 and mb.flags(1) == ("New",) and mb.highestmodseq == 3
    assert [type(e) for e in events] == [MessagesAdded, FlagsChanged]
    mb.release()


def test_one_uid_expunge_replaces_arrays_and_keeps_the_old_ones(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    uids = mb.append_many([AppendItem(msg(i)) for i in range(2000)], fsync=False)
    mb.store_flags([uids[1001]], "add", ["Kw"])
    old = mb.uid_array
    events: list[MessageEvent] = []
    mb.subscribe(events.append)
    assert mb.expunge([uids[1000]]) == [uids[1000]]
    assert old.tolist() == uids  # a view's sequence map is untouched
    assert mb.uid_array is not old
    assert mb.uids().tolist() == uids[:1000] + uids[1001:]
    assert mb.flags(uids[1001]) == ("Kw",) and mb.modseq(uids[999]) == 2
    assert [type(e) for e in events] == [MessagesExpunged] and events[0].uids == [uids[1000]]  # type: ignore[union-attr]
    # many at once take the one-pass path, same result
    gone = uids[:200]
    mb.expunge(gone)
    assert mb.uids().tolist() == uids[200:1000] + uids[1001:]
    mb.release()
