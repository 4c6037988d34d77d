"""Backend connections opened and greeted ahead of need, so a login costs the backend one round trip.

Only with ``proxy.forward_address = "id"``: in proxy-protocol mode the PROXY header naming the client must
be a connection's first bytes, so no connection can be opened before its client is known. In "id" mode a
pooled connection is plain TCP, greeted, NOT AUTHENTICATED and has sent nothing; the session that takes it
sends ``ID ("x-originating-ip" ...)`` and its RESTORE in one write. The backend honours the first such ID
of a connection only, so the client cannot rename itself later on that connection (after UNAUTHENTICATE).

A connection is used by one session and closed with it (IMAP has no way back to a fresh NOT AUTHENTICATED
state short of UNAUTHENTICATE, and a reused connection would carry the previous client's ID). The pool
per backend is bounded (``proxy.pool_size``), refilled in the background after each take, emptied when the
backend is marked down or drained, never refilled while it is, and a connection older than
``proxy.pool_max_age`` is replaced before the backend's pre-auth timeout can close it under a session.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from imapd.proxy.backend_link import BackendClosed, BackendLink, connect, read_greeting
from imapd.proxy.backends import Backend, BackendPool

log = logging.getLogger(__name__)

__all__ = ["LinkPool"]

REFILL_DELAY = 0.02
"""Seconds from a take to its replacement's connect: opening it at once would put the connect and the
backend's accept and greeting on the path of the login that took the connection (the backend answers the
RESTORE after greeting the new one). An empty pool is refilled at once."""


class LinkPool:
    """Idle, greeted connections per configured backend."""

    def __init__(self, backends: BackendPool, *, size: int, max_age: float) -> None:
        self.backends = backends
        self.size = size
        self.max_age = max_age
        self._idle: dict[str, deque[tuple[float, BackendLink]]] = {node: deque() for node in backends.backends}
        self._opening: dict[str, int] = dict.fromkeys(backends.backends, 0)
        self._retry_at: dict[str, float] = dict.fromkeys(backends.backends, 0.0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._refill_soon = False
        self._stopped = False
        self.opened: dict[str, int] = dict.fromkeys(backends.backends, 0)
        self.taken: dict[str, int] = dict.fromkeys(backends.backends, 0)
        """Pooled connections handed to sessions, per backend (the control socket's ``pool_taken``)."""

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def idle(self, node: str) -> int:
        return sum(1 for _, link in self._idle.get(node, ()) if not link.closed)

    # -- use ------------------------------------------------------------------------------------------------
    def take(self, backend: Backend) -> BackendLink | None:
        """A greeted connection to ``backend``, or None (pool off, empty, or a backend it does not serve)."""
        queue = self._idle.get(backend.node)
        if queue is None or self.backends.backends.get(backend.node) is not backend or not backend.usable:
            return None
        now = asyncio.get_running_loop().time()
        link: BackendLink | None = None
        while queue:
            born, candidate = queue.popleft()
            if not candidate.closed and now - born < self.max_age:
                link = candidate
                break
            candidate.close()
        if link is not None:
            link.on_lost = None
            self.taken[backend.node] += 1
            self._schedule_refill(REFILL_DELAY)
        else:
            self._schedule_refill()
        return link

    def drop(self, backend: Backend) -> None:
        """Close the idle connections of ``backend`` (down, drained, or the proxy stopping)."""
        queue = self._idle.get(backend.node)
        while queue:
            link = queue.popleft()[1]
            link.on_lost = None  # a deliberate close asks for no refill
            link.close()

    # -- refill ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.enabled:
            self._loop_task = asyncio.get_running_loop().create_task(self._maintain())

    async def stop(self) -> None:
        self._stopped = True  # before the closes below: no refill may start after this
        if self._loop_task is not None:
            self._loop_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*([self._loop_task] if self._loop_task else []), *self._tasks, return_exceptions=True)
        for backend in self.backends.backends.values():
            self.drop(backend)

    def _schedule_refill(self, delay: float = 0.0) -> None:
        if not self._refill_soon and self.enabled and not self._stopped:
            self._refill_soon = True
            asyncio.get_running_loop().call_later(delay, self.refill)

    async def _maintain(self) -> None:
        """Expire old connections and follow health and drain marks (the takes refill at once)."""
        interval = max(0.05, min(self.max_age / 4, self.backends.health_interval / 2, 1.0))
        while True:
            self.refill()
            await asyncio.sleep(interval)

    def refill(self) -> None:
        self._refill_soon = False
        if self._stopped:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for node, backend in self.backends.backends.items():
            queue = self._idle[node]
            if not backend.usable:
                self.drop(backend)
                continue
            while queue and (queue[0][1].closed or now - queue[0][0] >= self.max_age):
                queue.popleft()[1].close()
            if any(link.closed for _, link in queue):
                self._idle[node] = queue = deque(item for item in queue if not item[1].closed)
            missing = self.size - len(queue) - self._opening[node]
            if missing <= 0 or now < self._retry_at[node]:
                continue
            for _ in range(missing):
                self._opening[node] += 1
                task = loop.create_task(self._open(backend))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _open(self, backend: Backend) -> None:
        loop = asyncio.get_running_loop()
        link: BackendLink | None = None
        try:
            timeout = max(2.0, min(self.backends.health_interval, 5.0))
            link = await connect(backend, timeout=timeout)
            await read_greeting(link, timeout=timeout)
        except BackendClosed as exc:
            if link is not None:
                link.abort()
            # No verdict on the backend (the health check gives it); wait a while before trying again.
            self._retry_at[backend.node] = loop.time() + self.backends.health_interval
            log.info("pool connection to backend %s failed: %s", backend.node, exc)
            return
        finally:
            self._opening[backend.node] -= 1
        if self._stopped or not backend.usable or self.backends.backends.get(backend.node) is not backend:
            link.close()
            return
        self.opened[backend.node] += 1
        link.on_lost = self._lost
        self._idle[backend.node].append((loop.time(), link))

    def _lost(self, link: BackendLink) -> None:
        """An idle pooled connection closed (backend restart, crash, its pre-auth timeout)."""
        self._schedule_refill()
