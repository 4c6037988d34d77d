"""Lanes: where a user's commands run, off the network event loop.

The network loop only moves bytes, parses, and answers what needs no storage (greeting, CAPABILITY, ID,
STARTTLS before login). Everything that touches a user's mail (SQLite, Maildir files, fsync, a SEARCH over
bodies) runs on a *lane*: a thread with an event loop of its own. A user is pinned to one lane while any of
its work is in flight, so all of that user's sessions interleave cooperatively on one thread exactly as
they did on the single loop before (the shared mailbox objects, views and change feed need no locks).
Users share lanes (below), but a lane blocked by one user's slow disk, lock wait or long command is left
by the others. When a user has nothing in flight (an IDLE session
waits on nothing) it holds no lane; its next command may run on any of them.

A lane is chosen idle-first among the first ``shared_lanes``; when they are all busy, users share the
least busy of them: a lane thread that is awake already runs the next job without another wake-up, which
costs far less CPU than a thread per job in flight (measured: a quarter of the server's CPU per fresh
webmail request). A lane blocked in one long call (a lock wait, a big EXPUNGE) is not shared: once its
heartbeat is ``stuck_after`` seconds late, new users go to other lanes (started up to ``max_lanes``),
and the jobs queued on it that have not started are moved to another lane, so another user waits
behind a blocked one for at most about ``stuck_after`` plus two monitor intervals, once. Each lane's callbacks are timed by that
heartbeat; a lane that could not run for over ``stall_warning`` seconds is reported with the user and
command it was busy with.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import operator
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

__all__ = ["Lane", "LanePool"]

T = TypeVar("T")


class Lane:
    """One thread running its own event loop."""

    __slots__ = ("beat_pending", "beat_sent", "doing", "index", "loop", "pinned", "thread", "waiting")

    def __init__(self, index: int) -> None:
        self.index = index
        self.loop = _new_loop()
        self.pinned = 0  # users pinned here (network-loop bookkeeping)
        self.waiting: set[_Job] = set()  # jobs posted here and not finished (network-loop bookkeeping)
        # (user, what) of the job that ran last: when a heartbeat comes late, that job held the lane.
        self.doing: tuple[str, str] | None = None
        self.beat_pending = False
        self.beat_sent = 0.0
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


class _Job:
    """One job posted to a lane; ``started`` is set on the lane under the pool's lock, so that a job not
    started yet can be moved to another lane instead (``lane`` says where it is to run)."""

    __slots__ = ("begin", "cancelled", "lane", "seq", "started", "task", "user")

    def __init__(self, user: str, lane: Lane) -> None:
        self.user = user
        self.lane = lane
        self.seq = next(_SEQ)
        self.started = False
        self.cancelled = False  # cancelled before it started: it never runs
        self.task: asyncio.Task[Any] | None = None  # once started
        self.begin: Callable[[Lane], None] = _nothing


_SEQ = itertools.count()
_MOVED = object()
"""What a job's task returns on a lane it was moved away from before it started."""
_posted_order = operator.attrgetter("seq")


def _nothing(_lane: Lane) -> None:
    pass


class LanePool:
    """Per-user ordered execution on a bounded, growing set of lanes. Call its methods on the network loop."""

    def __init__(self, *, max_lanes: int = 64, shared_lanes: int = 2, stuck_after: float = 0.25,
                 stall_warning: float = 0.1, observe_lag: Callable[[str, float], None] | None = None) -> None:
        self.max_lanes = max(1, max_lanes)
        self.shared_lanes = max(1, min(shared_lanes, self.max_lanes))
        self.stuck_after = stuck_after
        self.stall_warning = stall_warning
        self.observe_lag = observe_lag
        self.lanes: list[Lane] = []
        self._pins: dict[str, list[Any]] = {}  # user -> [lane, jobs in flight, jobs started]
        self._lock = threading.Lock()  # Job.started and the started counts, between the loop and the lanes
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
        self._pins[user] = [lane, 1, 0]
        return lane

    def _unpin(self, user: str) -> None:
        entry = self._pins.get(user)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._pins[user]
            entry[0].pinned -= 1

    def _stuck(self, lane: Lane, now: float) -> bool:
        """Blocked in one long call: its heartbeat is late (the monitor sends one while users are pinned)."""
        return lane.beat_pending and now - lane.beat_sent > self.stuck_after

    def _choose(self, avoid: Lane | None = None) -> Lane:
        now = time.monotonic()
        usable = [lane for lane in self.lanes if lane is not avoid and not self._stuck(lane, now)]
        shared = [lane for lane in usable if lane.index < self.shared_lanes]
        idle = next((lane for lane in shared if lane.pinned == 0), None)
        if idle is not None:
            return idle
        if len(shared) >= self.shared_lanes:  # all there, none blocked: share the least busy
            return min(shared, key=lambda lane: lane.pinned)
        # One of them is blocked (or not started yet): an idle lane beyond them, or a new one.
        idle = next((lane for lane in usable if lane.pinned == 0), None)
        if idle is not None:
            return idle
        if len(self.lanes) < self.max_lanes:
            lane = Lane(len(self.lanes))
            self.lanes.append(lane)
            return lane
        others = [lane for lane in self.lanes if lane is not avoid]
        return min(usable or others or self.lanes, key=lambda lane: lane.pinned)

    def lane_of(self, user: str) -> Lane | None:
        entry = self._pins.get(user)
        return None if entry is None else entry[0]

    # -- running -------------------------------------------------------------------------------------------
    # One wake-up each way per job: the lane is asked to start a task with call_soon_threadsafe, and the
    # task's end is handed back the same way (no concurrent.futures.Future, whose locks and chained
    # callbacks cost as much again on a small command).
    def _start(self, user: str, what: str, coro: Coroutine[Any, Any, T],
               done: asyncio.Future[T] | None) -> _Job:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        lane = self._pin(user)
        loop = self._loop
        job = _Job(user, lane)
        lane.waiting.add(job)

        def finished(task: asyncio.Task[Any]) -> None:  # on the network loop, once the job really ended
            if not task.cancelled() and task.exception() is None and task.result() is _MOVED:
                return  # it runs on another lane now
            # The pin lasts until then (also after a cancellation): a user's work never runs on two lanes.
            job.lane.waiting.discard(job)
            entry = self._pins.get(user)
            if entry is not None and job.started:
                with self._lock:
                    entry[2] -= 1
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

        async def guarded(posted: Lane) -> Any:
            # The job's first step, on the lane: if it was moved meanwhile, ``coro`` is left unstarted
            # for the lane it was moved to.
            with self._lock:
                if job.started or job.lane is not posted:
                    return _MOVED
                if job.cancelled:
                    coro.close()
                    raise asyncio.CancelledError
                job.started = True
                entry = self._pins.get(user)
                if entry is not None:
                    entry[2] += 1
            posted.doing = (user, what)
            job.task = asyncio.current_task()  # (what a cancellation cancels; not a stale task elsewhere)
            return await coro

        def begin(posted: Lane) -> None:  # on the lane it was posted to
            task = posted.loop.create_task(guarded(posted))
            task.add_done_callback(lambda t: loop.call_soon_threadsafe(finished, t))

        job.begin = begin
        lane.loop.call_soon_threadsafe(begin, lane)
        return job

    def _unstick(self, lane: Lane) -> None:
        """Move the users whose jobs on ``lane`` (blocked) have not started to another lane, jobs in order."""
        by_user: dict[str, list[_Job]] = {}
        for job in lane.waiting:
            by_user.setdefault(job.user, []).append(job)
        for user, jobs in by_user.items():
            entry = self._pins.get(user)
            if entry is None or entry[0] is not lane or entry[2]:
                continue
            target = self._choose(avoid=lane)
            if target is lane:
                return
            with self._lock:
                if entry[2] or any(job.started for job in jobs):
                    continue  # some of its work runs there already: it stays, in order
                for job in jobs:
                    job.lane = target
            lane.pinned -= 1
            target.pinned += 1
            entry[0] = target
            jobs.sort(key=_posted_order)
            for job in jobs:
                lane.waiting.discard(job)
                target.waiting.add(job)
                target.loop.call_soon_threadsafe(job.begin, target)
            log.info("moved user %s off lane %d, blocked by user %s running %s", user, lane.index,
                     *(lane.doing or ("?", "?")))

    async def run(self, user: str, what: str, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on ``user``'s lane and wait for it; cancelling the wait cancels the job."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        job = self._start(user, what, coro, done)
        try:
            return await done
        except asyncio.CancelledError:
            with self._lock:
                job.cancelled = True
                lane = job.lane
            lane.loop.call_soon_threadsafe(_cancel, job)
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
            mono = time.monotonic()
            for lane in self.lanes:
                if lane.pinned and not lane.beat_pending:
                    lane.beat_pending = True
                    lane.beat_sent = mono
                    lane.loop.call_soon_threadsafe(self._heartbeat, lane, mono)
                elif lane.beat_pending and len(lane.waiting) > 1 and self._stuck(lane, mono):
                    self._unstick(lane)

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


def _cancel(job: _Job) -> None:
    if job.task is not None:
        job.task.cancel()
