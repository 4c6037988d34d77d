"""Failed-login accounting per client address, shared by LOGIN, AUTHENTICATE and X-STATE RESTORE."""

from __future__ import annotations

import time
from collections import deque

__all__ = ["AuthThrottle"]


class AuthThrottle:
    """Counts failures per address in a sliding window; each failure is answered after a delay that
    grows once the address has more than ``max_failures`` in the last ``window`` seconds. Success clears
    the address."""

    def __init__(self, *, failure_delay: float, max_failures: int, penalty_delay: float, window: float) -> None:
        self.failure_delay = failure_delay
        self.max_failures = max_failures
        self.penalty_delay = penalty_delay
        self.window = window
        # The most recent failure times per address; only the last max_failures + 1 matter.
        self._failures: dict[str, deque[float]] = {}

    def failures(self, address: str) -> int:
        times = self._failures.get(address)
        if times is None:
            return 0
        self._expire(address, times, time.monotonic())
        return len(times)

    def record_failure(self, address: str) -> float:
        """Count one failure; return how long to wait before answering it."""
        now = time.monotonic()
        times = self._failures.get(address)
        if times is None:
            if len(self._failures) > 100_000:
                self._prune(now)
            times = self._failures[address] = deque(maxlen=self.max_failures + 1)
        times.append(now)
        self._expire(address, times, now)
        return self.penalty_delay if len(times) > self.max_failures else self.failure_delay

    def record_success(self, address: str) -> None:
        self._failures.pop(address, None)

    def _expire(self, address: str, times: deque[float], now: float) -> None:
        while times and now - times[0] > self.window:
            times.popleft()
        if not times:
            self._failures.pop(address, None)

    def _prune(self, now: float) -> None:
        for address, times in list(self._failures.items()):
            self._expire(address, times, now)
