"""Lanes: where a user's commands run, off the network event loop.

The network loop only moves bytes, parses, and answers what needs no storage (greeting, CAPABILITY, ID,
STARTTLS before login). Everything that touches a user's mail (SQLite, Maildir files, fsync, a SEARCH over
bodies) runs on a *lane*: a thread with an event loop of its own. A user is pinned to one lane while any of
its work is in flight, so all of that user's sessions interleave cooperatively on one thread exactly as
they did on the single loop before (the shared mailbox objects, views and change feed need no locks);
different users run on different lanes, so one user's slow disk, lock wait or long command never delays
another user by more than the GIL's switch interval. When a user has nothing in flight (an IDLE session
waits on nothing) it holds no lane; its next command may run on any of them.

A lane is chosen idle-first: a new lane is started (up to ``max_lanes``) rather than sharing a busy one.
Each lane's callbacks are timed by a heartbeat from the network loop; a lane that could not run for over
``stall_warning`` seconds is reported with the user and command it was busy with.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

__all__ = ["Lane", "LanePool"]

T = TypeVar("T")


class Lane:
    """One thread running its own event loop."""

    __slots__ = ("beat_pending", "doing", "index", "loop", "pinned", "thread")

    def __init__(self, index: int) -> None:
        self.index = index
        self.loop = _new_loop()
        self.pinned = 0  # users pinned here (network-loop bookkeeping)
        # (user, what) of the job that ran last: when a heartbeat comes late, that job held the lane.
        self.doing: tuple[str, str] | None = None
        self.beat_pending = False
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), name=f"imapd-lane-{index}", daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)


class LanePool:
    """Per-user ordered execution on a bounded, growing set of lanes. Call its methods on the network loop."""

    def __init__(self, *, max_lanes: int = 64, stall_warning: float = 0.1,
                 observe_lag: Callable[[str, float], None] | None = None) -> None:
        self.max_lanes = max(1, max_lanes)
        self.stall_warning = stall_warning
        self.observe_lag = observe_lag
        self.lanes: list[Lane] = []
        self._pins: dict[str, list[Any]] = {}  # user -> [lane, jobs in flight]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._monitor: asyncio.Task[None] | None = None

    # -- pinning -------------------------------------------------------------------------------------------
    def _pin(self, user: str) -> Lane:
        entry = self._pins.get(user)
        if entry is not None:
            entry[1] += 1
            lane: Lane = entry[0]
            return lane
        lane = self._choose()
        lane.pinned += 1
        self._pins[user] = [lane, 1]
        return lane

    def _unpin(self, user: str) -> None:
        entry = self._pins.get(user)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._pins[user]
            entry[0].pinned -= 1

    def _choose(self) -> Lane:
        best = min(self.lanes, key=lambda lane: lane.pinned, default=None)
        if best is not None and (best.pinned == 0 or len(self.lanes) >= self.max_lanes):
            return best
        lane = Lane(len(self.lanes))
        self.lanes.append(lane)
        return lane

    def lane_of(self, user: str) -> Lane | None:
        entry = self._pins.get(user)
        return None if entry is None else entry[0]

    # -- running -------------------------------------------------------------------------------------------
    # One wake-up each way per job: the lane is asked to start a task with call_soon_threadsafe, and the
    # task's end is handed back the same way (no concurrent.futures.Future, whose locks and chained
    # callbacks cost as much again on a small command).
    def _start(self, user: str, what: str, coro: Coroutine[Any, Any, T],
               done: asyncio.Future[T] | None) -> list[asyncio.Task[T] | None]:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        lane = self._pin(user)
        loop = self._loop
        holder: list[asyncio.Task[T] | None] = [None]

        def finished(task: asyncio.Task[T]) -> None:  # on the network loop, once the job really ended
            # The pin lasts until then (also after a cancellation): a user's work never runs on two lanes.
            self._unpin(user)
            if done is None or done.done():
                if not task.cancelled() and task.exception() is not None and done is None:
                    log.error("%s for user %s failed", what, user, exc_info=task.exception())
                return
            if task.cancelled():
                done.cancel()
            elif task.exception() is not None:
                done.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                done.set_result(task.result())

        def begin() -> None:  # on the lane
            task = lane.loop.create_task(_tracked(lane, user, what, coro))
            holder[0] = task
            task.add_done_callback(lambda t: loop.call_soon_threadsafe(finished, t))

        lane.loop.call_soon_threadsafe(begin)
        return holder

    async def run(self, user: str, what: str, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on ``user``'s lane and wait for it; cancelling the wait cancels the job."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        holder = self._start(user, what, coro, done)
        try:
            return await done
        except asyncio.CancelledError:
            lane = self.lane_of(user)
            if lane is not None:
                lane.loop.call_soon_threadsafe(_cancel, holder)
            raise

    def submit(self, user: str, what: str, fn: Callable[[], object]) -> None:
        """Run ``fn()`` on ``user``'s lane, in order with the user's other work; errors are logged."""

        async def job() -> None:
            fn()

        self._start(user, what, job(), None)

    # -- stall monitor -------------------------------------------------------------------------------------
    def start_monitor(self, interval: float = 0.05) -> None:
        self._loop = asyncio.get_running_loop()
        self._monitor = self._loop.create_task(self._watch(interval))

    async def _watch(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        expected = loop.time() + interval
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            lag = max(0.0, now - expected)
            expected = now + interval
            if self.observe_lag is not None:
                self.observe_lag("network", lag)
            if lag > self.stall_warning:
                log.warning("network event loop stalled for %.0f ms", lag * 1000)
            for lane in self.lanes:
                if lane.pinned and not lane.beat_pending:
                    lane.beat_pending = True
                    lane.loop.call_soon_threadsafe(self._heartbeat, lane, time.monotonic())

    def _heartbeat(self, lane: Lane, sent: float) -> None:
        lane.beat_pending = False
        lag = time.monotonic() - sent
        if self.observe_lag is not None:
            self.observe_lag("lane", lag)
        if lag > self.stall_warning:
            user, what = lane.doing or ("?", "?")
            log.warning("lane %d stalled for %.0f ms by user %s running %s", lane.index, lag * 1000, user, what)

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout`` seconds) until no user has work in flight."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._pins and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self._pins:
            log.warning("stopping with work still running for %s", ", ".join(sorted(self._pins)[:10]))

    def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None
        for lane in self.lanes:
            lane.stop()
        self.lanes.clear()
        self._pins.clear()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _cancel(holder: list[Any]) -> None:
    task = holder[0]
    if task is not None:
        task.cancel()


async def _tracked(lane: Lane, user: str, what: str, coro: Coroutine[Any, Any, T]) -> T:
    """Record what a lane is doing while ``coro`` runs (for the stall report)."""
    lane.doing = (user, what)
    return await coro
