from __future__ import annotations

import asyncio
import os
import shutil
import time

from imapd.store import FlagsChanged, MessageEvent, MessagesAdded, MessagesExpunged, Store, UserStore

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
