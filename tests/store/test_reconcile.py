from __future__ import annotations

import asyncio
import os
import shutil
import time

import pytest

from imapd.store import (
    AppendItem,
    FlagsChanged,
    MessageEvent,
    MessagesAdded,
    MessagesExpunged,
    Store,
    UserStore,
)

from .conftest import msg


def drop_into_new(path: str, name: str, data: bytes) -> None:
    tmp = os.path.join(path, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(path, "new", name))


def test_external_delivery_rename_and_delete(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    events: list[MessageEvent] = []
    mb.subscribe(events.append)
    mb.append(msg(0))
    drop_into_new(mb.path, "1700000000.M1P1.mx,S=999", msg(1))
    drop_into_new(mb.path, "1700000001.M2P1.mx", msg(2))
    mb.sync()
    assert mb.uids().tolist() == [1, 2, 3]
    assert os.listdir(os.path.join(mb.path, "new")) == []
    cur = sorted(os.listdir(os.path.join(mb.path, "cur")))
    assert "1700000000.M1P1.mx,S=999:2," in cur
    info = {i.uid: i for i in mb.message_info([2, 3])}
    assert info[2].internaldate == 1700000000 and info[2].size == 999  # from the name, no stat
    assert info[3].size == len(msg(2))
    assert mb.read_message(3) == msg(2)
    # an MUA renames a file to set flags
    src = os.path.join(mb.path, "cur", "1700000000.M1P1.mx,S=999:2,")
    os.rename(src, src + "FS")
    # another deletes one
    os.unlink(mb.message_path(3))
    mb.sync()
    assert mb.flags(2) == ("\\Flagged", "\\Seen")
    assert mb.uids().tolist() == [1, 2]
    assert mb.expunged_since(0)[0] == [3]
    kinds = [type(e) for e in events]
    assert kinds == [MessagesAdded, MessagesAdded, MessagesExpunged, FlagsChanged]
    n = len(events)
    mb.sync()
    mb.sync()
    assert len(events) == n  # nothing changed, nothing published
    mb.release()


def test_sync_fast_path_does_not_scan(alice: UserStore, monkeypatch: object) -> None:
    mb = alice.open("INBOX")
    mb.append(msg())
    time.sleep(1.1)  # let the directory mtimes age past the dirty window
    mb.sync()
    import imapd.store.maildir as md

    calls = []
    orig = md.scan_names

    def counting(path: str):  # type: ignore[no-untyped-def]
        calls.append(path)
        return orig(path)

    monkeypatch.setattr(md, "scan_names", counting)  # type: ignore[attr-defined]
    mb.sync()
    mb.append(msg(2))
    mb.store_flags([1, 2], "add", ["\\Seen"])
    mb.sync()
    assert calls == []
    mb.release()


def test_status_sees_deliveries_without_open(alice: UserStore) -> None:
    path = alice.folder_path("Archive")
    drop_into_new(path, "1700000000.M9P9.mx", msg(9))
    st = alice.status("Archive")
    assert st.messages == 1 and st.unseen == 1


def test_folder_removed_externally(alice: UserStore) -> None:
    alice.create_mailbox("Gone")
    mb = alice.open("Gone")
    shutil.rmtree(alice.folder_path("Gone"))
    assert "Gone" not in [m.name for m in alice.list_mailboxes()]
    assert mb.deleted
    mb.release()


async def test_watcher_syncs_open_mailbox(store: Store, alice: UserStore) -> None:
    mb = alice.open("INBOX")
    events: list[MessageEvent] = []
    mb.subscribe(events.append)
    stop = asyncio.Event()
    task = asyncio.create_task(store.watch(stop_event=stop, debounce_ms=20))
    await asyncio.sleep(0.3)
    mb.append(msg(0))  # own write: exactly one event
    drop_into_new(mb.path, "1700000000.M5P5.mx", msg(5))
    for _ in range(100):
        await asyncio.sleep(0.05)
        if mb.exists == 2:
            break
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert mb.exists == 2
    added = [u for e in events if isinstance(e, MessagesAdded) for u in e.uids]
    assert added == [1, 2]
    mb.release()


async def test_watcher_sees_a_big_batch_in_one_directory(store: Store, alice: UserStore) -> None:
    """Many files of one directory in one batch are looked at per directory: still every name in cur/
    counts (the removed ones are expunged) and new/ deliveries are picked up."""
    mb = alice.open("INBOX")
    mb.append_many([AppendItem(msg(i), (), None) for i in range(10)])
    events: list[MessageEvent] = []
    mb.subscribe(events.append)
    stop = asyncio.Event()
    task = asyncio.create_task(store.watch(stop_event=stop, debounce_ms=50))
    await asyncio.sleep(0.3)
    cur = os.path.join(mb.path, "cur")
    gone = sorted(os.listdir(cur))[:6]
    for name in gone:
        os.unlink(os.path.join(cur, name))
    for i in range(5):
        drop_into_new(mb.path, f"1700000000.M{i}P7.mx", msg(20 + i))
    for _ in range(100):
        await asyncio.sleep(0.05)
        if mb.exists == 9:
            break
    stop.set()
    await asyncio.wait_for(task, 5)
    assert mb.exists == 9
    expunged = sorted(u for e in events if isinstance(e, MessagesExpunged) for u in e.uids)
    assert len(expunged) == 6
    mb.release()


def _recorded_cur_mtime(us: UserStore, mailbox_id: int) -> int:
    with us.index.lock:
        return int(us.index.conn.execute("SELECT cur_mtime FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()[0])


@pytest.fixture
def long_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 10 s timestamp tick, so that setting an mtime back (how these tests make a change "in the same
    tick") stays physically possible however slowly the test runs."""
    import imapd.store.reconcile as rc

    monkeypatch.setattr(rc, "_FINE_TICK_NS", 10_000_000_000, raising=False)
    monkeypatch.setattr(rc, "_SECOND_NS", 10_000_000_000, raising=False)


@pytest.mark.usefixtures("long_tick")
def test_foreign_rename_in_the_tick_of_our_own_write_is_found(alice: UserStore) -> None:
    """own_write_end records cur/'s mtime; a foreign rename in the same timestamp tick leaves that mtime
    unchanged. Here the tick is made certain by setting the mtime back to what our write left."""
    mb = alice.open("INBOX")
    mb.append(msg(1))
    with alice.index.write() as conn:  # settled, as after a quiet minute
        st = os.stat(os.path.join(mb.path, "cur")).st_mtime_ns
        conn.execute("UPDATE mailboxes SET cur_mtime=? WHERE id=?", (st, mb.mailbox_id))
    mb.append(msg(2))  # own write: cur/ gets mtime M
    cur = os.path.join(mb.path, "cur")
    m = os.stat(cur).st_mtime_ns
    assert abs(_recorded_cur_mtime(alice, mb.mailbox_id)) == m
    # an MUA flags message 1 by renaming its file, within the same tick
    [name] = [n for n in os.listdir(cur) if n == mb.index_rows([1], "fname")[0][1]]
    os.rename(os.path.join(cur, name), os.path.join(cur, name + "F"))
    os.utime(cur, ns=(m, m))
    mb.sync()
    assert mb.flags(1) == ("\\Flagged",)
    mb.release()


@pytest.mark.usefixtures("long_tick")
def test_moves_from_new_in_the_same_tick_are_found(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    drop_into_new(mb.path, "1700000000.M1P1.mx", msg(1))
    mb.sync()  # moves new/ -> cur/, cur/ gets mtime M
    cur = os.path.join(mb.path, "cur")
    m = os.stat(cur).st_mtime_ns
    with open(os.path.join(cur, "1700000001.M2P1.mx:2,S"), "wb") as f:
        f.write(msg(2))
    os.utime(cur, ns=(m, m))
    mb.sync()
    assert mb.uids().tolist() == [1, 2] and mb.flags(2) == ("\\Seen",)
    mb.release()


def checks_settled(us: UserStore, mailbox_id: int, path: str) -> bool:
    return _recorded_cur_mtime(us, mailbox_id) == os.stat(os.path.join(path, "cur")).st_mtime_ns


def test_syncs_right_after_own_writes_do_not_rescan(alice: UserStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The just-written case: one listing check (names only) verifies a racy mtime, never a full scan,
    and once the tick has passed the next syncs are two stats, as when settled."""
    import imapd.store.maildir as md
    import imapd.store.reconcile as rc

    mb = alice.open("INBOX")
    mb.append(msg(0))
    time.sleep(1.1)
    mb.sync()
    scans: list[str] = []
    checks: list[int] = []
    orig_scan, orig_check = md.scan_names, rc._listing_matches

    def scan(path: str) -> object:
        scans.append(path)
        return orig_scan(path)

    def check(*args: object) -> bool:
        checks.append(1)
        return orig_check(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(md, "scan_names", scan)
    monkeypatch.setattr(rc, "_listing_matches", check)
    for write in (lambda: mb.append(msg(1)), lambda: mb.store_flags([1], "add", ["\\Seen"]),
                  lambda: mb.expunge([2])):
        write()
        checks.clear()
        for _ in range(5):
            mb.sync()
            time.sleep(0.05)
        assert scans == []
        # a sync inside the tick verifies and must stay racy; the first one after it settles the record
        assert len(checks) <= 2
        assert checks_settled(alice, mb.mailbox_id, mb.path)
    mb.release()


@pytest.mark.usefixtures("long_tick")
def test_foreign_change_after_a_racy_verify_is_found(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    mb.append(msg(1))
    mb.sync()  # verifies the racy record right away (still within the tick: stays racy)
    cur = os.path.join(mb.path, "cur")
    m = os.stat(cur).st_mtime_ns
    [name] = os.listdir(cur)
    os.rename(os.path.join(cur, name), os.path.join(cur, name + "S"))
    os.utime(cur, ns=(m, m))
    mb.sync()
    assert mb.flags(1) == ("\\Seen",)
    mb.release()


async def _start_watch(store: Store) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(store.watch(stop_event=stop, debounce_ms=20))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if store.watching:
            break
    assert store.watching
    return stop, task


async def test_watched_foreign_rename_in_the_tick_of_own_write_is_pushed(store: Store, alice: UserStore) -> None:
    mb = alice.open("INBOX")
    mb.append(msg(1))
    events: list[MessageEvent] = []
    mb.subscribe(events.append)
    stop, task = await _start_watch(store)
    try:
        mb.append(msg(2))  # own write while watched: cur/'s mtime is trusted at once ...
        cur = os.path.join(mb.path, "cur")
        m = os.stat(cur).st_mtime_ns
        assert _recorded_cur_mtime(alice, mb.mailbox_id) == m
        name = mb.index_rows([1], "fname")[0][1]
        os.rename(os.path.join(cur, name), os.path.join(cur, name + "F"))  # ... a foreign rename, same tick
        os.utime(cur, ns=(m, m))
        mb.sync()  # the mtime alone cannot tell
        for _ in range(100):
            await asyncio.sleep(0.02)
            if mb.flags(1) == ("\\Flagged",):
                break
        assert mb.flags(1) == ("\\Flagged",)  # the watcher checked the names it saw against the index
        assert [(type(e), getattr(e, "changes", None)) for e in events][-1] == (
            FlagsChanged, [(1, ("\\Flagged",), mb.highestmodseq)])
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert not store.watching
    mb.release()


async def test_watched_own_and_other_process_writes_cost_no_listing(
        store: Store, alice: UserStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import imapd.store.maildir as md
    import imapd.store.reconcile as rc

    mb = alice.open("INBOX")
    mb.append_many([AppendItem(msg(i)) for i in range(50)], fsync=False)
    other = Store(store.data_dir, durability="normal")  # another server process's index connection
    omb = other.open_mailbox("alice", "INBOX")
    stop, task = await _start_watch(store)
    looks: list[str] = []
    orig_scan, orig_check = md.scan_names, rc._listing_matches

    def scan(path: str) -> object:
        if path.endswith("cur"):
            looks.append("scan")
        return orig_scan(path)

    def check(*args: object) -> bool:
        looks.append("check")
        return orig_check(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(md, "scan_names", scan)
    monkeypatch.setattr(rc, "_listing_matches", check)
    try:
        for write in (lambda: mb.store_flags([1], "add", ["\\Seen"]), lambda: omb.store_flags([2], "add", ["X"]),
                      lambda: mb.expunge([3]), lambda: omb.expunge([4])):
            write()
            for _ in range(5):
                mb.sync()
                await asyncio.sleep(0.03)  # the watcher's batches arrive meanwhile
        assert looks == []
        assert mb.flags(2) == ("X",) and 4 not in mb
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        other.close()
    mb.release()


async def test_what_the_watcher_vouched_for_is_checked_after_it_stops(store: Store, alice: UserStore) -> None:
    mb = alice.open("INBOX")
    mb.append(msg(1))
    stop, task = await _start_watch(store)
    mb.append(msg(2))  # trusted at once while watched
    cur = os.path.join(mb.path, "cur")
    m = os.stat(cur).st_mtime_ns
    assert _recorded_cur_mtime(alice, mb.mailbox_id) == m
    stop.set()
    await asyncio.wait_for(task, 5)
    assert _recorded_cur_mtime(alice, mb.mailbox_id) == -m  # racy again: the next look verifies
    name = mb.index_rows([1], "fname")[0][1]
    os.rename(os.path.join(cur, name), os.path.join(cur, name + "T"))  # in the tick, unseen by any watcher
    os.utime(cur, ns=(m, m))
    mb.sync()
    assert mb.flags(1) == ("\\Deleted",)
    mb.release()
