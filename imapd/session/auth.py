"""Failed-login accounting per client address, shared by LOGIN, AUTHENTICATE and X-STATE RESTORE."""

from __future__ import annotations

import time

__all__ = ["AuthThrottle"]


class AuthThrottle:
    """Counts failures per address within a window; each failure is answered after a delay that grows
    once the address passes ``max_failures``. Success clears the address."""

    def __init__(self, *, failure_delay: float, max_failures: int, penalty_delay: float, window: float) -> None:
        self.failure_delay = failure_delay
        self.max_failures = max_failures
        self.penalty_delay = penalty_delay
        self.window = window
        self._failures: dict[str, tuple[int, float]] = {}

    def failures(self, address: str) -> int:
        entry = self._failures.get(address)
        if entry is None:
            return 0
        count, since = entry
        if time.monotonic() - since > self.window:
            del self._failures[address]
            return 0
        return count

    def record_failure(self, address: str) -> float:
        """Count one failure; return how long to wait before answering it."""
        count = self.failures(address) + 1
        since = self._failures.get(address, (0, time.monotonic()))[1]
        self._failures[address] = (count, since)
        if len(self._failures) > 100_000:
            self._prune()
        return self.penalty_delay if count > self.max_failures else self.failure_delay

    def record_success(self, address: str) -> None:
        self._failures.pop(address, None)

    def _prune(self) -> None:
        now = time.monotonic()
        for addr, (_, since) in list(self._failures.items()):
            if now - since > self.window:
                del self._failures[addr]
