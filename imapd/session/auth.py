"""What protects the password check, shared by LOGIN, AUTHENTICATE and X-STATE RESTORE: failure records per
client address and per user (consulted before any hashing), a bound on concurrent password hashes, the
effective client address behind a trusted proxy, and the audit log.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from imapd.session.context import ServerContext
    from imapd.session.session import Session

__all__ = ["AuthThrottle", "HashSkipped", "HashSlots", "HashesBusy", "LoginRefused", "audit", "check_password", "is_trusted_loopback",
           "client_address", "is_trusted_proxy"]

audit_log = logging.getLogger("imapd.audit")

T = TypeVar("T")
_Failures = dict[str, deque[tuple[float, str]]]
_MAX_KEYS = 100_000  # addresses, and user names, remembered at most


class AuthThrottle:
    """Failures in a sliding window, kept per client address and per user name.

    :meth:`address_throttled` and :meth:`user_throttled` are asked before a password is hashed: an address with ``max_failures`` (or a user with
    ``max_user_failures``) failures in the last ``window`` seconds is throttled, and the attempt is
    answered after ``penalty_delay`` without running the hash, so a guessing storm costs no CPU. Each
    entry remembers the other side (the user of an address's failure, the address of a user's), so a
    success clears only the failures of that same user from that same address (the user's own typos),
    never other users' or other addresses' records.
    """

    def __init__(self, *, failure_delay: float, max_failures: int, penalty_delay: float, window: float,
                 max_user_failures: int | None = None) -> None:
        self.failure_delay = failure_delay
        self.max_failures = max_failures
        self.max_user_failures = max_failures if max_user_failures is None else max_user_failures
        self.penalty_delay = penalty_delay
        self.window = window
        self._by_address: _Failures = {}
        self._by_user: _Failures = {}
        # Logins run on users' lanes (threads): every public method holds this lock.
        self._lock = threading.Lock()
        # Set by a worker process: tells the other workers of each outcome recorded here, called as
        # ``share(address, user, failed)`` from any thread (see ``imapd/server/main.py``).
        self.share: Callable[[str, str | None, bool], None] | None = None
        # Set by a cluster node: counts each outcome recorded here in Redis too (``imapd/cluster/node.py``).
        self.cluster: Callable[[str, str | None, bool], None] | None = None

    def failures(self, address: str) -> int:
        with self._lock:
            return self._count(self._by_address, address, time.monotonic())

    def user_failures(self, user: str) -> int:
        with self._lock:
            return self._count(self._by_user, user, time.monotonic())

    def address_throttled(self, address: str, cluster: bool = False) -> bool:
        """True when attempts from ``address`` must be refused before any work. ``cluster``: the cluster's
        counter of the address reached the limit (``ClusterNode.address_throttled``)."""
        return cluster or self.failures(address) >= self.max_failures

    def user_throttled(self, user: str, cluster: bool = False) -> bool:
        """True when attempts for ``user`` must be refused before any work, from any address."""
        return cluster or self.user_failures(user) >= self.max_user_failures

    def record_failure(self, address: str, user: str | None = None, *, shared: bool = True) -> float:
        """Count one failure; return how long to wait before answering it. ``shared=False``: a failure a
        peer worker already counted and told us of (not told on again)."""
        now = time.monotonic()
        with self._lock:
            over = self._add(self._by_address, address, user or "", now, self.max_failures)
            if user is not None:
                over = self._add(self._by_user, user, address, now, self.max_user_failures) or over
        if shared and self.share is not None:
            self.share(address, user, True)
        if shared and self.cluster is not None:
            self.cluster(address, user, True)
        return self.penalty_delay if over else self.failure_delay

    def record_success(self, address: str, user: str | None = None, *, shared: bool = True) -> None:
        """Forget the failures of ``user`` from ``address``; everything else stays. Peers are told only
        when there was something to forget (every worker holds every failure, so a login with no record
        here has none anywhere, and the common login costs no packet)."""
        if user is None:
            return
        forgot = False
        with self._lock:
            for table, key, other in ((self._by_address, address, user), (self._by_user, user, address)):
                times = table.get(key)
                if times is None:
                    continue
                kept = [entry for entry in times if entry[1] != other]
                forgot = forgot or len(kept) != len(times)
                if not kept:
                    del table[key]
                elif len(kept) != len(times):
                    table[key] = deque(kept, maxlen=times.maxlen)
        if forgot and shared and self.share is not None:
            self.share(address, user, False)
        if shared and self.cluster is not None:  # (it knows whether Redis holds anything to forget)
            self.cluster(address, user, False)

    def apply(self, address: str, user: str | None, failed: bool) -> None:
        """An outcome a peer worker recorded (:class:`imapd.rendezvous.AuthEvent`)."""
        if failed:
            self.record_failure(address, user, shared=False)
        else:
            self.record_success(address, user, shared=False)

    def _add(self, table: _Failures, key: str, other: str, now: float, limit: int) -> bool:
        times = table.get(key)
        if times is None:
            if len(table) >= _MAX_KEYS:
                self._prune(table, now)
            while len(table) >= _MAX_KEYS:  # still full (user names cost an attacker nothing): oldest go
                del table[next(iter(table))]
            # Only the last limit + 1 matter for the decision.
            times = table[key] = deque(maxlen=max(limit, 1) + 1)
        times.append((now, other))
        self._expire(table, key, times, now)
        return len(times) > limit

    def _count(self, table: _Failures, key: str, now: float) -> int:
        times = table.get(key)
        if times is None:
            return 0
        self._expire(table, key, times, now)
        return len(times)

    def _expire(self, table: _Failures, key: str, times: deque[tuple[float, str]], now: float) -> None:
        while times and now - times[0][0] > self.window:
            times.popleft()
        if not times:
            table.pop(key, None)

    def _prune(self, table: _Failures, now: float) -> None:
        for key, times in list(table.items()):
            self._expire(table, key, times, now)


class HashesBusy(Exception):
    """Every hash slot is taken and the queue is full: answer ``NO [UNAVAILABLE]``."""


class HashSkipped(Exception):
    """The attempt was throttled while it waited for a slot; nothing was hashed."""


class HashSlots:
    """At most ``concurrent`` password hashes run at once (each argon2id takes a core and 64 MiB); up to
    ``queued`` more wait their turn, in order; beyond that an attempt is refused at once.

    Logins run on users' lanes, each a thread with its own event loop, so the slots are shared across
    loops: the counters sit under a lock, and a freed slot is handed to the next waiter on that waiter's
    loop (``call_soon_threadsafe``).
    """

    def __init__(self, concurrent: int, queued: int) -> None:
        self.concurrent = concurrent if concurrent > 0 else (os.cpu_count() or 1)
        self.queued = queued
        self.running = 0
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def run(self, fn: Callable[..., T], *args: object, still_wanted: Callable[[], bool] | None = None) -> T:
        """``fn(*args)`` in a worker thread once a slot is free; raises :class:`HashesBusy` when full.

        ``still_wanted`` is asked once the slot is granted, right before the work: a queued attempt whose
        address became throttled while it waited raises :class:`HashSkipped` instead of hashing.
        The slot is given back when the thread finishes, not when the caller goes away: a client that
        disconnects in the middle of its LOGIN cannot start more hashes than there are slots.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] | None = None
        with self._lock:
            if self.running < self.concurrent:
                self.running += 1
            elif len(self._waiters) >= self.queued:
                raise HashesBusy
            else:
                waiter = loop.create_future()
                self._waiters.append((loop, waiter))
        if waiter is not None:
            try:
                await waiter  # a releasing call hands its slot over (running stays counted)
            except BaseException:
                with self._lock:
                    queued = (loop, waiter) in self._waiters
                    if queued:
                        self._waiters.remove((loop, waiter))
                if not queued and not waiter.cancelled():
                    self._release()  # granted, but cancelled before using it
                # (popped and cancelled: _grant sees that and passes the slot on)
                raise
        if still_wanted is not None and not still_wanted():
            self._release()
            raise HashSkipped
        job = loop.run_in_executor(None, functools.partial(fn, *args))
        job.add_done_callback(self._job_done)
        return await asyncio.shield(job)

    def _job_done(self, job: asyncio.Future[Any]) -> None:
        self._release()
        if not job.cancelled():
            job.exception()  # retrieved here: nobody may be awaiting it any more

    def _release(self) -> None:
        with self._lock:
            if not self._waiters:
                self.running -= 1
                return
            loop, waiter = self._waiters.popleft()
        try:
            loop.call_soon_threadsafe(self._grant, waiter)
        except RuntimeError:  # that loop is closed (shutdown): pass the slot on
            self._release()

    def _grant(self, waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled():
            self._release()
        else:
            waiter.set_result(None)


# -- the password check, for every protocol --------------------------------------------------------------------
class LoginRefused(Exception):
    """The attempt failed and is counted; wait ``delay`` before answering (the same answer however it failed,
    so it tells nothing about the password)."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


def _refused(throttle: AuthThrottle, address: str, username: str, reason: str) -> LoginRefused:
    delay = throttle.record_failure(address, username)
    if reason.startswith("throttled"):  # already past the limit: the penalty, however this one counts
        delay = throttle.penalty_delay
    return LoginRefused(reason, delay)


async def check_password(ctx: ServerContext, address: str, username: str, password: str) -> str:
    """The user's name when ``password`` is right; raises :class:`LoginRefused` (failure recorded) or
    :class:`HashesBusy`. Shared by IMAP (LOGIN, AUTHENTICATE) and ManageSieve.

    Order matters for the CPU: a throttled user is refused before anything; the credential cache (an HMAC)
    comes next, so a user who logged in recently still gets in from a throttled address (behind a shared
    webmail or NAT, say); a throttled address is refused before the hash; only then does the slow hash run,
    in one of ``auth.max_concurrent_hashes`` slots (off the event loop).
    """
    throttle = ctx.throttle
    cluster = ctx.cluster  # failures counted on every node: throttles it announced, in memory
    if throttle.user_throttled(username, cluster is not None and cluster.user_throttled(username)):
        raise _refused(throttle, address, username, "throttled (user)")
    known = ctx.users.get(username)
    if known is not None and ctx.credentials.check(username, password, known.generation):
        # Same user, same password, same passwd entry within cache.ttl: skip the hash (imapd/cache.py).
        return known.name
    if throttle.address_throttled(address, cluster is not None and cluster.address_throttled(address)):
        raise _refused(throttle, address, username, "throttled (address)")
    try:
        record = await ctx.hash_slots.run(ctx.users.verify, username, password,
                                          still_wanted=lambda: not (throttle.address_throttled(address)
                                                                    or throttle.user_throttled(username)))
    except HashSkipped:
        raise _refused(throttle, address, username, "throttled while queued") from None
    if record is None:
        raise _refused(throttle, address, username, "wrong password" if known is not None else "no such user")
    ctx.credentials.remember(record.name, password, record.generation)
    return record.name


# -- the client's address ------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _networks(specs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


def is_trusted_loopback(peer: str, trust_loopback: bool) -> bool:
    """A client on this machine, treated as on a secure channel when ``tls.trust_loopback`` is set."""
    return trust_loopback and (peer in ("127.0.0.1", "::1") or peer.startswith("127."))


def is_trusted_proxy(peer: str, trusted: Iterable[str]) -> bool:
    """Whether ``peer`` is in ``auth.trusted_networks`` (a webmail or proxy that may name the real client)."""
    specs = tuple(trusted)
    if not specs:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in net for net in _networks(specs))


def client_address(s: Session) -> str:
    """The address limits, throttles and logs use for this session's client.

    The one place that decides it: the peer of the connection, unless a trusted proxy named the real client
    (``ID ("x-originating-ip" ...)``, see ``cmd_auth.id_``). A PROXY protocol header from a
    ``server.proxy_protocol_from`` peer has already made its source the connection's peer
    (``imapd/server/proxy_gate.py``), so it needs nothing here.
    """
    origin = s.client_origin
    return origin[0] if origin is not None else s.conn.peer_host


def _shown_address(s: Session) -> str:
    origin = s.client_origin
    if origin is None or origin == (s.conn.peer_host, None):
        return s.conn.peer_host
    ip, port = origin
    shown = f"{ip}:{port}" if port is not None else ip
    return f"{shown} (via {s.conn.peer_host})"


def audit(s: Session, event: str, user: str, mechanism: str, reason: str | None = None) -> None:
    """One INFO line on ``imapd.audit`` per login attempt's outcome (never a password)."""
    if reason is None:
        audit_log.info("%s user=%r address=%s session=%s mechanism=%s", event, user, _shown_address(s),
                       s.session_id, mechanism)
    else:
        audit_log.info("%s user=%r address=%s session=%s mechanism=%s reason=%s", event, user,
                       _shown_address(s), s.session_id, mechanism, reason)
