from __future__ import annotations

import time

import pytest

from imapd.store import pacing
from imapd.store.pacing import GilPacer


def test_pacer_sleeps_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    slept: list[float] = []
    monkeypatch.setattr(pacing.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(pacing.time, "sleep", slept.append)
    pace = GilPacer(every=0.002, pause=0.0003)
    for _ in range(10):  # 1 ms per iteration: a pause every second call
        now[0] += 0.001
        pace()
    assert slept == [0.0003] * 5


def test_pacer_costs_little_without_pauses() -> None:
    pace = GilPacer(every=3600)
    start = time.perf_counter()
    for _ in range(100_000):
        pace()
    assert time.perf_counter() - start < 1.0
