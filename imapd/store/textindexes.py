"""The full-text indexes of one user's mailboxes (:mod:`imapd.store.fts`): open, feed, backfill, remove.

Who writes what, always on the thread of the store call that caused it (a session's lane, never the network
loop): an APPEND or an LMTP delivery queues its messages, with the bytes and parsed metadata it has at hand
(``add(..., later=True)``), so that its tagged OK or 250 does not wait for the index and the queue is
written in one transaction (an FTS5 commit costs about 1.5-1.7 ms of CPU for one 3 KB message, 0.4 ms a
message for 16), when ``Store.on_text_queued`` has :meth:`TextIndexes.flush` run on the
user's lane (a SEARCH meanwhile scans the queued messages, as any the index lacks; what a process dies with
is left to the backfill, like mail of other writers); EXPUNGE and MOVE remove theirs; messages that arrive
any other way (COPY, a foreign Maildir writer found by the reconcile, mail from before the index existed)
are left to the backfill, which :meth:`TextIndexes.backfill` does in bounded steps that the server schedules
in the background (``imapd/textbackfill.py``) and ``imapd index rebuild-fts`` runs to the end. Every failure
here is logged and swallowed: the index only narrows a search, and a message it lacks is scanned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from imapd.store.fts import TextDocument, TextIndex, fts_path, remove_fts
from imapd.store.mailindex import mailbox_identity, select_rows
from imapd.store.metadata import search_document

if TYPE_CHECKING:
    from imapd.store.userstore import UserStore

__all__ = ["TextIndexes"]

log = logging.getLogger(__name__)

_READ_BATCH = 64
_INLINE_REMOVE = 256
_WINDOW = 1024


class TextIndexes:
    def __init__(self, owner: UserStore) -> None:
        self.owner = owner
        self._open: dict[int, TextIndex] = {}
        self._lock = threading.Lock()
        self._queued: dict[int, list[tuple[int, bytes, bytes | None]]] = {}
        self._queued_bytes = 0

    @property
    def enabled(self) -> bool:
        return self.owner.store.fts

    def get(self, mailbox_id: int) -> TextIndex | None:
        """The mailbox's full-text index, opened (or created) on first use; None when disabled or broken."""
        if not self.enabled:
            return None
        with self._lock:
            ti = self._open.get(mailbox_id)
            if ti is not None:
                return ti
            index = self.owner.index
            try:
                with index.lock:
                    ident = mailbox_identity(index.conn, mailbox_id)
                if ident is None:
                    return None
                ti = TextIndex(fts_path(self.owner.root, mailbox_id), ident[1], ident[0])
            except (OSError, sqlite3.Error) as exc:
                log.warning("full-text index of %s/%d unavailable: %s", self.owner.user, mailbox_id, exc)
                return None
            self._open[mailbox_id] = ti
            return ti

    def stale(self, mailbox_id: int) -> None:
        """Tell the server's backfill that this mailbox may hold messages the index lacks."""
        hook = self.owner.store.on_text_stale
        if hook is not None and self.enabled:
            hook(self.owner.user, mailbox_id)

    def add(self, mailbox_id: int, items: Sequence[tuple[int, bytes, bytes | None]], *,
            later: bool = False) -> None:
        """Index new messages ``(uid, raw, metadata blob)`` (APPEND); ``later``: queue them for
        :meth:`flush` if the store has someone to call it (``Store.on_text_queued``), else index now."""
        hook = self.owner.store.on_text_queued
        if later and hook is not None and items and self.enabled:
            with self._lock:
                queue = self._queued.setdefault(mailbox_id, [])
                queue.extend(items)
                count = sum(len(q) for q in self._queued.values())
                self._queued_bytes += sum(len(raw) for _, raw, _ in items)
                size = self._queued_bytes
            hook(self, count, size)
            return
        ti = self.get(mailbox_id)
        if ti is None or not items:
            return
        docs: list[tuple[int, TextDocument | None]] = [(uid, search_document(raw, blob)) for uid, raw, blob in items]
        try:
            ti.add(docs)
        except sqlite3.Error as exc:
            log.warning("full-text indexing in %s/%d failed (backfill will retry): %s", self.owner.user,
                        mailbox_id, exc)
            self.stale(mailbox_id)

    @property
    def queued(self) -> int:
        """Messages waiting for :meth:`flush`."""
        with self._lock:
            return sum(len(q) for q in self._queued.values())

    def flush(self) -> None:
        """Index what :meth:`add` queued, one transaction per mailbox (on the user's lane)."""
        with self._lock:
            queued, self._queued, self._queued_bytes = self._queued, {}, 0
        for mailbox_id, items in queued.items():
            self.add(mailbox_id, items)

    def remove(self, mailbox_id: int, uids: Sequence[int]) -> None:
        """Forget expunged messages; many are left to the backfill's purge (an FTS5 delete costs about
        what the insert did, and a big EXPUNGE should not wait for it). Searches never depend on it:
        UIDs are not reused, and the searcher drops UIDs that left the mailbox. Messages still queued are
        taken off the queue (a draft saved and replaced within the flush delay is never indexed)."""
        if not uids:
            return
        with self._lock:
            queue = self._queued.get(mailbox_id)
            if queue:
                gone = set(uids)
                kept = [item for item in queue if item[0] not in gone]
                if len(kept) != len(queue):
                    self._queued_bytes -= sum(len(item[1]) for item in queue if item[0] in gone)
                    if kept:
                        self._queued[mailbox_id] = kept
                    else:
                        del self._queued[mailbox_id]
        ti = self.get(mailbox_id)
        if ti is None:
            return
        if len(uids) > _INLINE_REMOVE:
            self.stale(mailbox_id)
            return
        try:
            ti.remove(uids)
        except sqlite3.Error as exc:
            log.warning("full-text removal in %s/%d failed (purged later): %s", self.owner.user, mailbox_id, exc)

    def drop(self, mailbox_id: int) -> None:
        """The mailbox is gone (DELETE, vanished folder, index rebuild): close and delete its file."""
        with self._lock:
            ti = self._open.pop(mailbox_id, None)
            dropped = self._queued.pop(mailbox_id, [])
            self._queued_bytes -= sum(len(raw) for _, raw, _ in dropped)
        if ti is not None:
            with contextlib.suppress(sqlite3.Error):
                ti.close()
        with contextlib.suppress(OSError):
            remove_fts(self.owner.root, mailbox_id)

    def close(self) -> None:
        self.flush()  # the user's index is being closed (idle, or the process stops): write the queue first
        with self._lock:
            indexes, self._open = list(self._open.values()), {}
        for ti in indexes:
            with contextlib.suppress(sqlite3.Error):
                ti.close()

    # ------------------------------------------------------------------------------------ backfill

    def _present(self, mailbox_id: int, after: int = 0, limit: int = -1) -> list[int]:
        index = self.owner.index
        with index.lock:
            return [uid for (uid,) in index.conn.execute(
                "SELECT uid FROM messages WHERE mailbox=? AND uid>? ORDER BY uid LIMIT ?", (mailbox_id, after, limit))]

    def backfill(self, mailbox_id: int, budget: float, *, after: int = 0,
                 purge: bool = False) -> tuple[int, int, int]:
        """Index messages the full-text index lacks, UIDs above ``after`` in ascending order, for about
        ``budget`` seconds (at least one batch).

        Returns ``(messages done now, messages above the cursor, cursor)``: pass the cursor back as
        ``after`` to go on. Resumable by construction: what is done is in the file, and a new pass from
        0 skips it quickly. ``purge`` first removes documents of messages expunged behind our back.
        """
        ti = self.get(mailbox_id)
        if ti is None:
            return 0, 0, after
        if purge:
            present = self._present(mailbox_id)
            ti.purge(present)
            ti.missing(present)  # the coverage a first SEARCH would otherwise load, read here in the background
        index = self.owner.index
        with index.lock:
            row = index.conn.execute("SELECT name FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
        if row is None:
            return 0, 0, after
        cur = os.path.join(self.owner.folder_path(str(row[0])), "cur")
        deadline = time.monotonic() + budget
        done, cursor = 0, after
        while True:
            window = self._present(mailbox_id, cursor, _WINDOW)
            if not window:
                return done, 0, cursor
            todo = ti.unindexed(window)
            for i in range(0, len(todo), _READ_BATCH):
                batch = todo[i : i + _READ_BATCH]
                with index.lock:
                    rows = select_rows(index.conn, mailbox_id, batch, "fname, meta")
                docs: list[tuple[int, TextDocument | None]] = []
                for uid, fname, blob in rows:
                    try:
                        with open(os.path.join(cur, fname), "rb") as f:
                            raw = f.read()
                    except OSError:
                        continue  # renamed or expunged meanwhile: the next pass finds it again or not at all
                    docs.append((uid, search_document(raw, blob)))
                try:
                    ti.add(docs)
                except sqlite3.Error as exc:
                    log.warning("full-text backfill of %s/%d failed: %s", self.owner.user, mailbox_id, exc)
                    return done, 0, cursor
                done += len(docs)
                cursor = batch[-1]
                if time.monotonic() >= deadline:
                    return done, len(self._present(mailbox_id, cursor)), cursor
            cursor = window[-1]
            if time.monotonic() >= deadline:
                return done, len(self._present(mailbox_id, cursor)), cursor

    def rebuild(self, mailbox_id: int, progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
        """Empty the mailbox's full-text index and build it again to the end (``imapd index rebuild-fts``);
        ``progress(done, total)`` after each step. Returns ``(indexed, unreadable)``. A server running
        meanwhile sees the new generation and scans whatever is not indexed yet."""
        ti = self.get(mailbox_id)
        if ti is None:
            return 0, 0
        ti.clear()
        total = len(self._present(mailbox_id))
        done = cursor = 0
        while True:
            step, left, cursor = self.backfill(mailbox_id, 1.0, after=cursor)
            done += step
            if progress is not None:
                progress(done, total)
            if not left:
                break
        ti.optimize()
        return ti.count()
