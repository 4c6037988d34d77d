"""Handing the GIL over during a long store loop on a lane thread.

A loop of short C calls that release the GIL (100,000 ``os.unlink``, the row steps of one big SQLite
``fetchall``/``executemany``) takes the GIL straight back after every call. A thread waiting for it (the
network loop, another user's lane) is woken each time but nearly always finds it taken again, and since
the GIL changed hands the interpreter never forces a switch (``sys.setswitchinterval`` does not help): the
waiter can starve for the whole loop (CPython's convoy effect; an EXPUNGE of 100k messages held another
user's NOOP for 45-140 ms). A real sleep of a few hundred microseconds every few milliseconds of the loop
lets the waiters run; it costs the loop a few percent.
"""

from __future__ import annotations

import time

__all__ = ["GilPacer"]


class GilPacer:
    """Call it once per iteration (or chunk) of a long loop: every ``every`` seconds it sleeps ``pause``."""

    __slots__ = ("_every", "_next", "_pause")

    def __init__(self, every: float = 0.002, pause: float = 0.0002) -> None:
        self._every = every
        self._pause = pause
        self._next = time.perf_counter() + every

    def __call__(self) -> None:
        if time.perf_counter() >= self._next:
            time.sleep(self._pause)
            self._next = time.perf_counter() + self._every
