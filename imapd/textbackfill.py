"""The background full-text backfill: index the messages a mailbox's full-text index lacks.

Mail that existed before the index, copies, and deliveries by other programs reach the index here
(APPEND and LMTP queue their own messages, see :mod:`imapd.store.textindexes` and below). The store asks for a
mailbox (``Store.on_text_stale``: on the first open, after a reconcile found changes, after COPY, when
a SEARCH met unindexed messages); this task, on the network loop, works through the requests round
robin, one bounded step (:data:`STEP_SECONDS`) at a time on the user's lane, so the step is ordered with
the user's own commands and never runs on the network loop; other users run on other lanes, and
between steps it sleeps, so a user's next command waits at most one step. The work done is in the
index file, so a restart resumes where it stopped. Progress is logged.

It also writes what APPENDs and LMTP deliveries queued for the index (:meth:`TextBackfill.queued`): a user's queue
is flushed on the user's lane :data:`FLUSH_DELAY` seconds after its first message, or at once when it
holds :data:`FLUSH_AT` messages or :data:`FLUSH_BYTES`, so that back-to-back deliveries share one FTS5
transaction (a message costs ~1.7 ms of CPU alone, ~0.4 ms in a batch of 16) and the queue's memory stays
small.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from imapd.lanes import LanePool
from imapd.store.errors import NoSuchUser, StorageIOError
from imapd.store.store import Store

if TYPE_CHECKING:
    from imapd.store.textindexes import TextIndexes

__all__ = ["TextBackfill"]

log = logging.getLogger(__name__)

STEP_SECONDS = 0.05
PAUSE_SECONDS = 0.005
FIRST_DELAY_SECONDS = 1.0
"""A mailbox's backfill starts this long after it is asked for: the request comes with the first open
of the mailbox in a process, and its first step (reading what the index covers, ~5-300 ms for 5,000
messages with the machine's load) on the user's lane would otherwise delay that client's next command
(a fresh worker's first webmail request, T1 cold)."""
LOG_EVERY = 10.0
FLUSH_DELAY = 1.0
FLUSH_AT = 64
FLUSH_BYTES = 4 * 1024 * 1024


class _Progress:
    __slots__ = ("cursor", "done", "logged", "started", "steps")

    def __init__(self) -> None:
        self.done = self.steps = self.cursor = 0
        self.started = self.logged = time.monotonic()


class TextBackfill:
    def __init__(self, store: Store, lanes: LanePool, *, step: float = STEP_SECONDS,
                 pause: float = PAUSE_SECONDS, first_delay: float = FIRST_DELAY_SECONDS) -> None:
        self.store = store
        self.lanes = lanes
        self.step = step
        self.pause = pause
        self.first_delay = first_delay
        self._queue: collections.deque[tuple[str, int]] = collections.deque()
        self._progress: dict[tuple[str, int], _Progress] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._flushes: dict[TextIndexes, asyncio.TimerHandle | None] = {}

    def queued(self, texts: TextIndexes, count: int, size: int) -> None:
        """A delivery queued messages in ``texts`` (``count`` messages of ``size`` bytes now waiting); any
        thread, as ``Store.on_text_queued``. Before :meth:`start` (or after :meth:`stop`): written at once."""
        loop = self._loop
        if loop is None or loop.is_closed():
            texts.flush()
            return
        now = count >= FLUSH_AT or size >= FLUSH_BYTES
        if not now and texts in self._flushes:
            # A flush is due already (no wake-up of the network loop per message): it runs on the user's
            # lane after the job that queued this, and takes the whole queue, these messages too.
            return
        loop.call_soon_threadsafe(self._schedule_flush, texts, now)

    def _schedule_flush(self, texts: TextIndexes, now: bool) -> None:
        if now:
            self._flush(texts)
        elif texts not in self._flushes and self._loop is not None:
            self._flushes[texts] = self._loop.call_later(FLUSH_DELAY, self._flush, texts)

    def _flush(self, texts: TextIndexes) -> None:
        handle = self._flushes.pop(texts, None)
        if handle is not None:
            handle.cancel()
        self.lanes.submit(texts.owner.user, "full-text index of deliveries", texts.flush)

    def request(self, user: str, mailbox_id: int) -> None:
        """Queue a mailbox (any thread; dropped before :meth:`start`, the next open asks again)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._add, user, mailbox_id)

    def _add(self, user: str, mailbox_id: int) -> None:
        key = (user, mailbox_id)
        if key not in self._progress:
            self._progress[key] = _Progress()
            if self.first_delay > 0 and self._loop is not None:
                self._loop.call_later(self.first_delay, self._enqueue, key)
            else:
                self._enqueue(key)

    def _enqueue(self, key: tuple[str, int]) -> None:
        if self._task is None or key not in self._progress:
            return  # stopped meanwhile
        self._progress[key].started = self._progress[key].logged = time.monotonic()
        self._queue.append(key)
        if self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run())

    async def stop(self) -> None:
        """Stop the backfill; queued deliveries are written by their user's ``close()``, or now."""
        for texts, handle in list(self._flushes.items()):
            if handle is not None:
                handle.cancel()
            self._flush(texts)
        task, self._task, self._loop = self._task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def pending(self) -> int:
        """Mailboxes queued or in progress."""
        return len(self._progress)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            key = self._queue.popleft()
            try:
                more = await self._one_step(*key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("full-text backfill of %s/%d failed; it is retried when asked again", *key)
                more = False
            if more:
                self._queue.append(key)
            else:
                self._progress.pop(key, None)
            await asyncio.sleep(self.pause)

    async def _one_step(self, user: str, mailbox_id: int) -> bool:
        progress = self._progress[(user, mailbox_id)]
        first = progress.steps == 0
        progress.steps += 1

        async def step() -> tuple[int, int, int]:
            try:
                texts = self.store.user(user).texts
            except (NoSuchUser, StorageIOError):
                return 0, 0, 0
            return texts.backfill(mailbox_id, self.step, after=progress.cursor, purge=first)

        done, left, progress.cursor = await self.lanes.run(user, "full-text backfill", step())
        progress.done += done
        now = time.monotonic()
        if first and left:
            log.info("full-text backfill of %s/%d: %d messages to index", user, mailbox_id, done + left)
        elif left and now - progress.logged >= LOG_EVERY:
            progress.logged = now
            log.info("full-text backfill of %s/%d: %d done, %d to go", user, mailbox_id, progress.done, left)
        if not left:
            if progress.done:
                log.info("full-text backfill of %s/%d: %d messages indexed in %.1f s", user, mailbox_id,
                         progress.done, now - progress.started)
            return False
        return True
