"""The full-text queue of APPEND and LMTP (``TextBackfill.queued``): messages queued back to back on the
user's lane, while a flush is already due, are written by that one flush, in one FTS5 transaction, and
none is left behind (the network loop is woken only for the first)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from imapd import textbackfill
from imapd.lanes import LanePool
from imapd.store import AppendItem, Store
from imapd.store.fts import fts_path
from imapd.textbackfill import TextBackfill


def msg(n: int) -> bytes:
    return f"Subject: queued {n}\r\nMessage-ID: <{n}@example.org>\r\n\r\nbody okapi{n}\r\n".encode()


def indexed(path: str) -> tuple[list[int], set[int]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT uid, seq FROM docs").fetchall()
    return sorted(uid for uid, _ in rows), {seq for _, seq in rows}


async def test_back_to_back_messages_share_one_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textbackfill, "FLUSH_DELAY", 0.3)
    store = Store(tmp_path / "data", durability="normal")
    user = store.create_user("alice")
    lanes = LanePool()
    backfill = TextBackfill(store, lanes, first_delay=3600)  # (the backfill itself stays out of this)
    backfill.start()
    store.on_text_queued = backfill.queued
    mailbox = user.open("INBOX")
    try:
        async def append(n: int) -> None:
            mailbox.append_many([AppendItem(msg(n))], text_later=True)

        for n in range(5):
            await lanes.run("alice", "APPEND", append(n))
        assert user.texts.queued == 5
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while user.texts.queued and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await lanes.run("alice", "sync", asyncio.sleep(0))  # the flush job has ended
        uids, seqs = indexed(fts_path(user.root, mailbox.mailbox_id))
        assert uids == [1, 2, 3, 4, 5]
        assert len(seqs) == 1  # one transaction
    finally:
        await backfill.stop()
        mailbox.release()
        lanes.stop()
        store.close()
