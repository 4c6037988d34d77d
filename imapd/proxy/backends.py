"""The backends a proxy can send a user to: their addresses, health, drain marks, and the choice for a user.

The choice, in order: the user's live assignment in Redis (``{prefix}owner:{user}`` names a node whose
registry hash ``{prefix}node:{id}`` still exists; its ``imap`` field is the address), else rendezvous
hashing of the user over the healthy, non-drained backends, so every proxy picks the same one without
talking to the others, and losing a backend moves only its own users.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from imapd.protocol.proxyproto import V2_SIGNATURE
from imapd.proxy.coordination import Coordination
from imapd.server.listener import parse_hostport

log = logging.getLogger(__name__)

__all__ = ["Backend", "BackendPool", "NoBackend"]


class NoBackend(Exception):
    """No healthy, non-drained backend: the client gets ``NO [UNAVAILABLE]``."""


SLOW_CHECKS = 3
"""Health checks in a row without a greeting in time before a backend that still accepts is marked down."""


@dataclass(slots=True)
class Backend:
    node: str
    host: str
    port: int
    healthy: bool = True
    drained: bool = False
    checked: float = 0.0
    error: str = ""
    slow: int = 0
    """Health checks in a row that timed out (a busy backend, e.g. restoring a failed peer's sessions)."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def usable(self) -> bool:
        return self.healthy and not self.drained


def _weight(user: str, node: str) -> bytes:
    return hashlib.blake2b(user.encode("utf-8", "surrogatepass"), digest_size=8,
                           key=node.encode("utf-8")[:64]).digest()


class BackendPool:
    """The configured backends (``proxy.backends``) and what the proxy knows of each."""

    def __init__(self, specs: list[str], coordination: Coordination, *, health_interval: float,
                 proxy_protocol: bool = False) -> None:
        self.backends: dict[str, Backend] = {}
        for spec in specs:
            node, _, address = spec.partition("=")
            host, port = parse_hostport(address)
            self.backends[node] = Backend(node, host, port)
        self.coordination = coordination
        self.health_interval = health_interval
        # Backends that expect a PROXY header from us get a v2 LOCAL one (a health check, no client).
        self._hello = V2_SIGNATURE + b"\x20\x00\x00\x00" if proxy_protocol else b""
        self.changed = asyncio.Event()
        """Set when a backend goes down or is drained (the sessions on it move)."""
        self._task: asyncio.Task[None] | None = None
        self._checking: set[str] = set()
        self.on_unusable: list[Callable[[Backend], None]] = []
        """Called when a backend is marked down or drained (the link pool empties its connections)."""

    def _unusable(self, backend: Backend) -> None:
        self.changed.set()
        for hook in self.on_unusable:
            hook(backend)

    # -- the choice --------------------------------------------------------------------------------------
    def by_hash(self, user: str, *, exclude: str | None = None) -> Backend:
        candidates = [b for b in self.backends.values() if b.usable and b.node != exclude]
        if not candidates:
            raise NoBackend("no healthy backend")
        return max(candidates, key=lambda b: _weight(user, b.node))

    async def for_user(self, user: str, *, exclude: str | None = None) -> Backend:
        """The backend that should serve ``user`` now (see the module docstring)."""
        owner = await self.coordination.owner(user)
        if owner is not None and owner[0] != exclude:
            node, address = owner
            known = self.backends.get(node)
            if known is not None and known.usable:
                return known
            if known is None and address:
                host, port = parse_hostport(address)
                return Backend(node, host, port)
        return self.by_hash(user, exclude=exclude)

    # -- drain -------------------------------------------------------------------------------------------
    async def drain(self, node: str, drained: bool) -> None:
        backend = self.backends.get(node)
        if backend is None:
            raise KeyError(node)
        backend.drained = drained
        if drained:
            self._unusable(backend)
        await self.coordination.set_drained(node, drained)

    async def refresh_drained(self) -> None:
        shared = await self.coordination.drained()
        if shared is None:
            return
        for backend in self.backends.values():
            was = backend.drained
            backend.drained = backend.node in shared
            if backend.drained and not was:
                log.info("backend %s drained (shared drained set)", backend.node)
                self._unusable(backend)
            if backend.drained:
                await self.coordination.mark_draining(backend.node, True)  # again, after a restart of it

    # -- health ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._health_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(b) for b in self.backends.values()))
        await self.refresh_drained()

    def check_soon(self, backend: Backend) -> None:
        """A connection to ``backend`` broke unexpectedly: check it now rather than at the next interval."""
        if backend.node in self.backends and backend.node not in self._checking:
            self._checking.add(backend.node)
            task = asyncio.get_running_loop().create_task(self._check(backend))
            task.add_done_callback(lambda _: self._checking.discard(backend.node))

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            try:
                await self.check_all()
            except Exception:  # a check must never end the loop
                log.exception("backend health check failed")

    async def _check(self, backend: Backend) -> None:
        """Connect and read the greeting. A refused connection or a wrong greeting is down at once; a slow
        answer only after SLOW_CHECKS in a row, since a backend taking over a lost peer's sessions (thousands
        of RESTOREs at once) greets late without being gone, and marking it down then would leave those
        sessions nowhere to go."""
        timeout = max(2.0, min(self.health_interval, 5.0))
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(backend.host, backend.port),
                                                    timeout=timeout)
            try:
                if self._hello:
                    writer.write(self._hello)
                line = await asyncio.wait_for(reader.readline(), timeout=timeout)
            finally:
                writer.close()
            ok = line.startswith(b"* OK")
            error = "" if ok else f"greeting {line[:60]!r}"
            backend.slow = 0
        except TimeoutError:
            backend.slow += 1
            if backend.slow < SLOW_CHECKS:
                log.info("backend %s (%s) slow to greet (%d of %d checks)", backend.node, backend.address,
                         backend.slow, SLOW_CHECKS)
                return
            ok, error = False, f"no greeting within {timeout:.0f} s, {backend.slow} checks in a row"
        except OSError as exc:
            backend.slow = 0
            ok, error = False, f"{type(exc).__name__}: {exc}"
        self.mark(backend, ok, error)

    def mark(self, backend: Backend, ok: bool, error: str = "") -> None:
        backend.checked = time.time()
        if backend.healthy and not ok:
            log.warning("backend %s (%s) is down: %s", backend.node, backend.address, error)
            backend.healthy, backend.error = ok, error
            self._unusable(backend)
            return
        if ok and not backend.healthy:
            log.info("backend %s (%s) is up again", backend.node, backend.address)
        backend.healthy, backend.error = ok, error

    def listing(self) -> list[dict[str, object]]:
        return [{"node": b.node, "address": b.address, "healthy": b.healthy, "drained": b.drained,
                 "checked": round(b.checked, 3), "error": b.error} for b in self.backends.values()]
