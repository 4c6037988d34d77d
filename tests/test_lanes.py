"""The lane pool: shared lanes, and jobs moved off a lane blocked in one long call."""

from __future__ import annotations

import asyncio
import threading
import time

from imapd.lanes import LanePool


async def test_busy_lanes_are_shared_up_to_shared_lanes() -> None:
    pool = LanePool(max_lanes=8, shared_lanes=2)
    pool.start_monitor(0.01)
    gate = threading.Event()

    async def held(ev: asyncio.Event) -> None:
        await ev.wait()  # in flight, but the lane thread is free (not blocked)

    events = [asyncio.Event() for _ in range(6)]
    runs = [asyncio.ensure_future(pool.run(f"u{i}", "held", held(ev))) for i, ev in enumerate(events)]
    await asyncio.sleep(0.1)
    assert len(pool.lanes) == 2  # six users in flight, two threads
    lanes = pool.lanes
    for i, ev in enumerate(events):
        lanes[0 if pool.lane_of(f"u{i}") is lanes[0] else 1].loop.call_soon_threadsafe(ev.set)
    await asyncio.gather(*runs)
    gate.set()
    pool.stop()


async def test_a_blocked_lane_is_left_and_its_queued_jobs_move() -> None:
    pool = LanePool(max_lanes=8, shared_lanes=1, stuck_after=0.02)
    pool.start_monitor(0.01)

    async def block() -> None:
        time.sleep(1.5)  # one long call that holds the lane's thread (a lock wait)

    async def quick(out: list[str], name: str) -> str:
        out.append(name)
        return name

    blocker = asyncio.ensure_future(pool.run("a", "block", block()))
    await asyncio.sleep(0)  # posted: lane 0, the only shared lane
    order: list[str] = []
    start = time.monotonic()
    # b's jobs are queued behind a's on lane 0 before anyone knows it is blocked
    b_jobs = [asyncio.ensure_future(pool.run("b", "quick", quick(order, f"b{i}"))) for i in range(3)]
    assert await asyncio.gather(*b_jobs) == ["b0", "b1", "b2"]
    took = time.monotonic() - start
    assert took < 0.8, f"b waited {took:.2f} s behind a's blocked lane"
    assert order == ["b0", "b1", "b2"]  # moved in order
    # a new user meanwhile avoids the blocked lane
    assert await pool.run("c", "quick", quick(order, "c")) == "c"
    assert not blocker.done()
    await blocker
    pool.stop()


async def test_a_job_cancelled_before_it_starts_never_runs() -> None:
    pool = LanePool(max_lanes=1, shared_lanes=1, stuck_after=60)
    ran: list[str] = []

    async def block() -> None:
        time.sleep(0.3)

    async def note(name: str) -> None:
        ran.append(name)

    blocker = asyncio.ensure_future(pool.run("a", "block", block()))
    await asyncio.sleep(0)
    waiting = asyncio.ensure_future(pool.run("b", "note", note("b")))
    await asyncio.sleep(0.05)
    waiting.cancel()
    await blocker
    await pool.run("b", "note", note("b2"))
    assert ran == ["b2"]
    assert pool.lane_of("b") is None  # unpinned after both
    pool.stop()
