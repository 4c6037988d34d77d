"""The failed-login throttle (sliding windows per address and per user) and the password-hash slots."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from imapd.session import auth
from imapd.session.auth import AuthThrottle, HashesBusy, HashSlots, is_trusted_proxy


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    return now


def test_penalty_after_max_failures_in_a_sliding_window(clock: list[float]) -> None:
    now = clock
    t = AuthThrottle(failure_delay=0.1, max_failures=3, penalty_delay=5.0, window=10.0)
    delays = []
    for _ in range(4):
        delays.append(t.record_failure("1.2.3.4"))
        now[0] += 3.0
    assert delays == [0.1, 0.1, 0.1, 5.0]  # 4 failures within 10 s
    now[0] += 1.0  # the first failure (t=1000) is now 13 s old, three remain in the window
    assert t.record_failure("1.2.3.4") == 5.0  # a fixed window would have reset here
    assert t.record_failure("5.6.7.8") == 0.1  # other addresses are not affected
    now[0] += 30.0
    assert t.failures("1.2.3.4") == 0 and t.record_failure("1.2.3.4") == 0.1
    t.record_success("1.2.3.4")  # no user named: clears nothing
    assert t.failures("1.2.3.4") == 1


def test_check_comes_before_work_per_address_and_per_user(clock: list[float]) -> None:
    t = AuthThrottle(failure_delay=0.1, max_failures=3, penalty_delay=5.0, window=10.0, max_user_failures=2)
    def throttled(address: str, user: str) -> bool:
        return t.address_throttled(address) or t.user_throttled(user)

    assert not throttled("1.1.1.1", "carol")
    t.record_failure("1.1.1.1", "carol")
    t.record_failure("2.2.2.2", "carol")  # a second address guessing the same user
    assert t.user_throttled("carol") and throttled("3.3.3.3", "carol")  # from everywhere
    assert not throttled("3.3.3.3", "dave") and not throttled("1.1.1.1", "dave")
    t.record_failure("1.1.1.1", "dave")
    t.record_failure("1.1.1.1", "erin")
    assert t.address_throttled("1.1.1.1")  # the address is throttled whatever the user
    assert (t.failures("1.1.1.1"), t.user_failures("carol")) == (3, 2)
    clock[0] += 11
    assert not throttled("1.1.1.1", "carol") and t.failures("1.1.1.1") == 0


def test_success_clears_only_its_own_failures(clock: list[float]) -> None:
    t = AuthThrottle(failure_delay=0.1, max_failures=5, penalty_delay=5.0, window=100.0)
    t.record_failure("1.1.1.1", "carol")  # carol's own typo
    t.record_failure("1.1.1.1", "mallory-guess")  # someone else's failures from the same address
    t.record_failure("9.9.9.9", "carol")  # a guess at carol from elsewhere
    t.record_success("1.1.1.1", "carol")
    assert t.failures("1.1.1.1") == 1  # the other user's failure stays
    assert t.user_failures("carol") == 1  # the guess from 9.9.9.9 stays
    assert t.failures("9.9.9.9") == 1


def test_trusted_networks() -> None:
    nets = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
    assert is_trusted_proxy("10.1.2.3", nets) and is_trusted_proxy("2001:db8::5", nets)
    assert is_trusted_proxy("192.0.2.7", nets) and not is_trusted_proxy("192.0.2.8", nets)
    assert not is_trusted_proxy("10.1.2.3", []) and not is_trusted_proxy("unknown", nets)


async def test_hash_slots_bound_concurrency_and_queue() -> None:
    slots = HashSlots(2, 3)
    release = threading.Event()
    running: list[int] = []
    lock = threading.Lock()
    peak = [0]

    def work(i: int) -> int:
        with lock:
            running.append(i)
            peak[0] = max(peak[0], len(running))
        release.wait(10)
        with lock:
            running.remove(i)
        return i

    tasks = [asyncio.create_task(slots.run(work, i)) for i in range(5)]
    await asyncio.sleep(0.1)
    assert slots.running == 2 and slots.waiting == 3
    with pytest.raises(HashesBusy):
        await slots.run(work, 99)  # two running, three queued: the sixth is refused at once
    tasks[4].cancel()  # a queued caller that goes away gives its place back
    await asyncio.sleep(0.05)
    assert slots.waiting == 2
    release.set()
    assert await asyncio.gather(*tasks[:4]) == [0, 1, 2, 3]
    assert peak[0] == 2 and slots.running == 0 and slots.waiting == 0


async def test_a_cancelled_caller_keeps_its_slot_until_the_hash_ends() -> None:
    slots = HashSlots(1, 5)
    started = threading.Event()
    done = threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.3)
        done.set()

    task = asyncio.create_task(slots.run(slow))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()  # the client disconnected mid-LOGIN
    await asyncio.sleep(0.05)
    assert slots.running == 1  # the thread still hashes: its slot is not free yet
    await asyncio.to_thread(done.wait, 5)
    await asyncio.sleep(0.05)
    assert slots.running == 0


def test_records_are_bounded_even_with_endless_user_names(clock: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_MAX_KEYS", 100)
    t = AuthThrottle(failure_delay=0.1, max_failures=3, penalty_delay=5.0, window=300.0)
    for i in range(1000):
        t.record_failure("1.1.1.1", f"user{i}")
    assert t.user_failures("user999") == 1 and t.user_failures("user0") == 0
    assert len(t._by_user) <= 100
    assert t.address_throttled("1.1.1.1")


def test_hash_slots_are_shared_by_loops_on_several_threads() -> None:
    """Logins run on users' lanes, each its own thread and event loop: one slot bounds them all."""
    slots = HashSlots(1, 10)
    lock = threading.Lock()
    running, peak, results = [0], [0], []

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i

    def lane(base: int) -> None:
        async def main() -> list[int]:
            return list(await asyncio.gather(*(slots.run(work, base + i) for i in range(3))))
        results.extend(asyncio.run(main()))

    threads = [threading.Thread(target=lane, args=(10 * n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert peak[0] == 1 and slots.running == 0 and slots.waiting == 0
