"""One server process's link to the cluster's Redis: liveness, user leases, the change channel, and the
cluster-wide login-failure and X-STATE revocation records.

Leases (docs/cluster.md, "Coordination over Redis"): the node renews one liveness key every
``heartbeat_interval``; a user's owner record names the node. The node may write a user's index while
the user is in :attr:`owned`, was confirmed since the last gap in the renewals, and the last successful
renewal was sent less than ``lease_ttl - heartbeat_interval`` ago: that check is memory only
(:meth:`check_writable`, on every command and every index transaction). Past that (the process was
stopped, the loop starved) the lease is confirmed in Redis before the write, and a lost user is refused
(``NotOwner``, NO [UNAVAILABLE]) and its sessions told BYE. With Redis unreachable the node keeps
writing the users it owns (outage mode: nobody can take them over either) and reconnects with backoff.

The Redis client lives on the network loop. Lanes (other threads, other loops) reach it through
``run_coroutine_threadsafe``; nothing on the network loop waits for Redis on a command's path except a
LOGIN's first claim of a user and the two login/X-STATE look-ups, each bounded by ``cluster.timeout``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from imapd.cluster import scripts
from imapd.cluster.death import all_gone, host_identity
from imapd.cluster.keys import ChangeKind, ChangeMessage, ClusterKeys, decode_change, encode_change
from imapd.store.errors import NotOwner

if TYPE_CHECKING:
    from imapd.config import Settings
    from imapd.metrics import Metrics

log = logging.getLogger("imapd.cluster")

__all__ = ["EPOCH_ENV", "ClusterNode", "default_node_id"]

EPOCH_ENV = "IMAPD_CLUSTER_EPOCH"
"""Set by a supervisor so that all its workers renew one node id as one holder."""

T = TypeVar("T")
_DOWN = (RedisError, OSError, asyncio.TimeoutError, TimeoutError, concurrent.futures.TimeoutError)


def _lmtp_address(settings: Settings) -> str:
    """``lmtp.listen`` as others can reach it: a wildcard host is replaced by the advertised IMAP host."""
    listen = settings.lmtp.listen
    if not listen or "/" in listen:
        return listen
    host, _, port = listen.rpartition(":")
    if host.strip("[]") in ("", "0.0.0.0", "::"):
        advertised = settings.cluster.advertise or (settings.server.listen[0] if settings.server.listen else "")
        host = advertised.rpartition(":")[0] or "127.0.0.1"
    return f"{host}:{port}"


def default_node_id(settings: Settings) -> str:
    port = settings.server.listen[0].rpartition(":")[2] if settings.server.listen else "0"
    return f"{socket.gethostname()}:{port}"


class ClusterNode:
    """The cluster as one server process sees it. Start on the network loop; thread-safe otherwise."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        cluster = settings.cluster
        self.settings = cluster
        self.failure_window = settings.auth.failure_window
        self.revocation_ttl = settings.xstate.max_age + settings.xstate.clock_skew
        self.metrics = metrics
        self.keys = ClusterKeys(cluster.key_prefix)
        self.node_id = cluster.node_id or default_node_id(settings)
        self.advertise = cluster.advertise or (settings.server.listen[0] if settings.server.listen else "")
        self.epoch = os.environ.get(EPOCH_ENV) or secrets.token_hex(8)
        self.started = f"{time.time():.3f}"
        self.lmtp = _lmtp_address(settings)
        """Where other nodes forward deliveries for our users (imapd/cluster/forward.py); "" = nowhere."""
        self.host = host_identity()
        """Recorded in the node key with our pid, so that a peer on this host can prove us dead (death.py)."""
        self._claims: dict[str, asyncio.Future[str]] = {}
        """user -> the claim in flight here: concurrent claims of one user (its 20 sessions restored at once
        after a failover) share one script call instead of each polling Redis."""
        self.fresh_for = cluster.lease_ttl - cluster.heartbeat_interval
        self.reassert_window = cluster.grace + cluster.lease_ttl + cluster.reconnect_max
        """After Redis lost its keys, an owner may re-assert a user whose record is gone for this long."""
        # Callbacks, all called on the network loop (set by the server).
        self.on_change: Callable[[ChangeMessage], None] = lambda _m: None
        self.on_kick: Callable[[str], object] = lambda _u: None
        self.on_lost: Callable[[str], object] = lambda _u: None
        self.on_claimed: Callable[[str], None] = lambda _u: None
        self.busy_users: Callable[[], set[str]] = set
        """Users with a session or an open (warm) mailbox here: their leases are kept; another's is
        released after ``release_after``."""
        self.releases: Callable[[str], bool] = lambda _u: True
        """Whether this process hands the user's record back (with workers: only the user's owner worker;
        the others forget the lease and leave the record to it)."""
        self.reachable = False
        self.last_renewal = float("-inf")
        """time.monotonic() when the last successful renewal was *sent* (Redis's TTL runs from later)."""
        self.continuity = 0
        """Bumped whenever the renewals had a gap (the liveness key lapsed): every lease is re-confirmed."""
        self.owned: dict[str, int] = {}
        """user -> the :attr:`continuity` under which its lease was last confirmed."""
        self._idle_since: dict[str, float] = {}
        self._released_at = 0.0
        self.draining = False
        """The node key's ``draining`` field is "1" (``imapd proxy backends drain``): no new user is taken,
        and users without a session here are handed back at once."""
        self._lock = threading.Lock()
        self._client: aioredis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[ChangeMessage] = asyncio.Queue(cluster.publish_queue)
        self._wanted = asyncio.Event()
        """Set by a request that found the breaker open: the reconnect loop probes Redis now."""
        self._down_since: float | None = None
        self._failed_pairs: set[tuple[str, str]] = set()
        # (user, mailbox) of deliveries stored here while Redis was unreachable, whose notices could not go
        # out: announced again once it is back, or the owner's IDLE clients hear of them only at their
        # next command (the owner lists new/ when it reconnects itself, which may be before we do).
        self._held_deliveries: set[tuple[str, str]] = set()
        # Throttles announced on the cluster's throttle channel: key -> time.monotonic() it ends.
        self._throttled_addresses: dict[str, float] = {}
        self._throttled_users: dict[str, float] = {}
        self.max_failures = settings.auth.max_failures
        self.max_user_failures = settings.auth.max_user_failures

    # -- lifetime -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        timeout = self.settings.timeout
        # A blocking pool: a burst of logins (a failover restores thousands of sessions at once) waits its
        # turn for one of a bounded set of connections; redis-py's default pool refuses the 101st at once,
        # which would read as an outage.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.settings.redis_url, max_connections=64, timeout=timeout, socket_timeout=timeout,
            socket_connect_timeout=timeout, retry_on_timeout=False, decode_responses=True)
        self._client = aioredis.Redis(connection_pool=pool)
        self._heartbeat_script = self._client.register_script(scripts.HEARTBEAT)
        self._assert_script = self._client.register_script(scripts.ASSERT)
        self._release_script = self._client.register_script(scripts.RELEASE)
        self._failure_script = self._client.register_script(scripts.FAILURE)
        self._success_script = self._client.register_script(scripts.SUCCESS)
        self._fence_script = self._client.register_script(scripts.FENCE)
        self._owner_lmtp_script = self._client.register_script(scripts.OWNER_ADDRESS)
        await self._renew_once()
        for coro in (self._heartbeat(), self._publisher()):
            self._tasks.append(asyncio.create_task(coro))
        self._restart_subscriber()
        log.info("cluster node %s (advertised %s) on %s", self.node_id, self.advertise, self.settings.redis_url)

    async def stop(self, *, release: bool = True) -> None:
        """A clean stop hands every user back at once (no waiting for the lease to run out); a worker
        that handed its sessions to a new generation (``release=False``) leaves the leases to it."""
        if self._subscription is not None:
            self._tasks.append(self._subscription)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        client = self._client
        if client is None:
            return
        if not release:
            await client.aclose(close_connection_pool=True)
            return
        with self._lock:
            users = list(self.owned)
            self.owned.clear()
        try:
            async with asyncio.timeout(self.settings.timeout * 2):
                pipe = client.pipeline(transaction=False)
                for user in users:
                    await self._release_script(keys=[self.keys.owner(user)], args=[self.node_id], client=pipe)
                pipe.delete(self.keys.node(self.node_id))
                await pipe.execute()
        except _DOWN as exc:
            log.warning("could not hand back %d user(s) to the cluster at shutdown: %s", len(users), exc)
        await client.aclose(close_connection_pool=True)

    # -- liveness ---------------------------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        """Renew; while Redis is down, this loop is the only caller that tries it (the breaker, see
        :meth:`_redis_down`), with backoff, or at once when a request wanted Redis meanwhile."""
        backoff = 0.05
        while True:
            ok = await self._renew_once()
            if ok:
                backoff = 0.05
                self._release_idle()
                await asyncio.sleep(self.settings.heartbeat_interval)
            else:
                await asyncio.sleep(0.05)
                self._wanted.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wanted.wait(), max(0.0, backoff - 0.05))
                backoff = min(backoff * 2, self.settings.reconnect_max)

    def _redis_down(self) -> bool:
        """The breaker: once a call found Redis down (a refused connection, or a time-out: a hung Redis),
        requests do not try it again, each waiting ``cluster.timeout`` for the same answer; they act as in
        the outage at once and ask the reconnect loop to probe now, which closes the breaker when Redis
        answers. A hung Redis costs requests one time-out per outage, not one each."""
        if self.reachable:
            return False
        self._call_on_loop(self._wanted.set)
        self.metrics.inc("imapd_cluster_breaker_skips_total")
        return True

    async def _renew_once(self) -> bool:
        assert self._client is not None
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.timeout):
                got = await self._heartbeat_script(
                    keys=[self.keys.node(self.node_id), self.keys.since],
                    args=[self.epoch, int(self.settings.lease_ttl * 1000), self.advertise, self.started,
                          os.getpid(), self.host, self.lmtp])
        except _DOWN as exc:
            self._went_down(exc, sent)
            return False
        result, draining = int(got[0]), got[1] == "1"
        if draining != self.draining:
            self.draining = draining
            log.warning("cluster node %s %s", self.node_id, "draining: takes no new user, hands back idle ones"
                        if draining else "no longer draining")
        if result == -1:
            log.error("another process renews cluster node id %s: writing none of its users", self.node_id)
            self._lose_all()
            self._came_back()
            return True
        lapsed = result == 0
        if lapsed:
            with self._lock:
                self.continuity += 1
        self.last_renewal = sent
        was_down = self._came_back()  # which re-asserts every user after an outage
        if lapsed and not was_down and self.owned:
            asyncio.get_running_loop().create_task(self._reassert_all())
        return True

    def _went_down(self, exc: BaseException, started: float | None = None) -> None:
        """A call failed: outage mode. Not for a time-out that only says this process was frozen (SIGSTOP,
        a VM pause) while the call ran: its deadline passed while nothing could run, and taking that for
        an outage would let a resumed node write without confirming a lease it may have lost."""
        if started is not None and self._frozen(exc, started):
            log.warning("a cluster call took %.1f s (this process was not running); not an outage",
                        time.monotonic() - started)
            return
        if self.reachable or self._down_since is None:
            self._down_since = time.monotonic()
            log.error("cluster Redis %s unreachable (%s): outage mode, serving the %d user(s) owned here; "
                      "changes elsewhere are found by the index re-check", self.settings.redis_url,
                      type(exc).__name__ if not str(exc) else exc, len(self.owned))
            self.metrics.inc("imapd_cluster_outages_total")
        self.reachable = False
        self.metrics.set("imapd_cluster_redis_up", 0)

    def _frozen(self, exc: BaseException, started: float) -> bool:
        """A time-out far past the call's deadline: the process did not run meanwhile."""
        return (isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError))
                and time.monotonic() - started > 2 * self.settings.timeout + 0.5)

    def _restart_subscriber(self) -> None:
        """(Re)start the change subscription: after an outage its connection may be half-open, blocked in
        a read that would never return."""
        old = self._subscription
        if old is not None:
            old.cancel()
        self._subscription = asyncio.get_running_loop().create_task(self._subscriber())

    def _came_back(self) -> bool:
        """Mark Redis reachable; True if it was not. Whichever call reaches Redis first after an outage
        (often a login's claim, whose script also renews the node key, so that the heartbeat after it
        sees no lapse) re-asserts every user owned here: one with only an idle session would otherwise
        keep no owner record and be given up at its next write."""
        was_down = not self.reachable
        self.reachable = True
        self.metrics.set("imapd_cluster_redis_up", 1)
        if was_down and self._down_since is not None and self._tasks:
            log.warning("cluster Redis reachable again after %.1f s; re-asserting %d user(s)",
                        time.monotonic() - self._down_since, len(self.owned))
            self.metrics.inc("imapd_cluster_reconnects_total")
            self._call_on_loop(self._restart_subscriber)
            self._call_on_loop(self._after_outage)
        self._down_since = None
        return was_down

    def _after_outage(self) -> None:
        """Redis is back: re-assert the users owned here and re-read their open mailboxes (deliveries other
        nodes stored meanwhile went unannounced); announce the deliveries stored here meanwhile."""
        held, self._held_deliveries = self._held_deliveries, set()
        for user, mailbox in held:
            self._enqueue(ChangeMessage(node=self.node_id, user=user, mailbox=mailbox, uidvalidity=0, modseq=0,
                                        kind="delivery"))
        if self.owned:
            asyncio.get_running_loop().create_task(self._reassert_all(resync=True))

    async def _reassert_all(self, *, resync: bool = False) -> None:
        for user in list(self.owned):
            try:
                if await self._assert(user, "confirm") == "ok" and resync:
                    self.on_claimed(user)
            except NotOwner:
                pass
            except _DOWN as exc:
                self._went_down(exc)
                return

    # -- leases -----------------------------------------------------------------------------------------------
    def owns_fresh(self, user: str) -> bool:
        """Memory only: the lease of ``user`` may be used without asking Redis."""
        gen = self.owned.get(user)
        return (gen is not None and gen == self.continuity
                and time.monotonic() - self.last_renewal < self.fresh_for)

    def check_writable(self, user: str) -> None:
        """Before a write of ``user``'s index or files (any thread). Raises NotOwner, after which the
        user's sessions here are being told BYE."""
        if self.owns_fresh(user):
            return
        ours = user in self.owned
        if not self.reachable:
            if not ours:
                raise NotOwner(f"user {user} is not served by cluster node {self.node_id} (Redis unreachable)")
            self.metrics.inc("imapd_cluster_outage_writes_total")
            return  # outage mode: nobody can take the user over either
        if threading.get_ident() == self._loop_thread:
            # The network loop cannot wait for Redis; what runs there for a user is memory only (the
            # commands answered in place, dispatch.in_memory), never a write, so a late heartbeat under
            # load must not refuse it. A write of a user we do not hold is refused still.
            if ours:
                return
            raise NotOwner(f"user {user} is not served by cluster node {self.node_id}")
        started = time.monotonic()
        try:
            # Ours: confirm. Not ours (a session resumed after a reload, whose worker never claimed it):
            # take it if free, at once, as a login would without waiting.
            if self._blocking(self._assert(user, "claim")) != "ok":
                raise NotOwner(f"user {user} is served by another cluster node")
        except _DOWN as exc:
            self._call_on_loop(self._went_down, exc, started)
            if not ours or self._frozen(exc, started):
                raise NotOwner(f"the lease of user {user} on cluster node {self.node_id} could not be "
                               "confirmed") from None
            self.metrics.inc("imapd_cluster_outage_writes_total")

    async def claim(self, user: str) -> None:
        """Make this node the user's owner, for a login (any loop): at once when it already is; else wait
        up to ``login_wait`` for a live owner to let go. Raises NotOwner (NO [UNAVAILABLE])."""
        if self.owns_fresh(user):
            self._idle_since.pop(user, None)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.login_wait
        pause = 0.05
        while True:
            if self._redis_down():
                if user in self.owned:
                    return  # outage mode: ours before Redis went away, still ours
                raise NotOwner("the cluster's coordination service is unreachable")
            try:
                status = await self._on_loop(self._assert(user, "claim", lose=False))
            except _DOWN as exc:
                self._call_on_loop(self._went_down, exc)
                if user in self.owned:
                    return  # outage mode: ours before Redis went away, still ours
                raise NotOwner("the cluster's coordination service is unreachable") from None
            if status == "ok":
                self._idle_since.pop(user, None)
                return
            if status == "draining" or loop.time() + pause > deadline:
                self.metrics.inc("imapd_cluster_claims_refused_total")
                raise NotOwner("this mailbox is served by another server now; try again shortly")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.3)

    async def try_claim(self, user: str) -> bool:
        """A delivery's question (never waits): may this node write the user now (claiming it if free)?
        False when another live node owns it or Redis cannot say (then the message file alone is stored)."""
        if self.owns_fresh(user):
            return True
        if self._redis_down():
            return user in self.owned
        try:
            return await self._on_loop(self._assert(user, "claim", lose=False)) == "ok"
        except _DOWN as exc:
            self._call_on_loop(self._went_down, exc)
            return user in self.owned

    async def owner_lmtp(self, user: str) -> tuple[str, str] | None:
        """(node id, LMTP address) of the live node that serves ``user``, or None (nobody, or Redis down)."""
        if self._redis_down():
            return None

        async def read() -> list[Any]:
            async with asyncio.timeout(self.settings.timeout):
                return list(await self._owner_lmtp_script(keys=[self.keys.owner(user)],
                                                          args=[self.keys.node(""), "lmtp"]))

        try:
            got = await self._on_loop(read())
        except _DOWN as exc:
            self._call_on_loop(self._went_down, exc)
            return None
        return (str(got[0]), str(got[1])) if len(got) == 2 and got[0] != self.node_id else None

    async def _assert(self, user: str, mode: str, *, lose: bool = True) -> str:
        """Run the ASSERT script on the network loop; update :attr:`owned`. Raises NotOwner when a user
        that was ours is lost (and ``lose``), _DOWN errors when Redis cannot answer. Claims of one user
        that overlap share one call (the first one's answer)."""
        if mode != "claim" or lose or user in self.owned:
            return await self._assert_once(user, mode, lose=lose)
        while (pending := self._claims.get(user)) is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                # the first claimer went away (its client closed): ask again ourselves
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._claims[user] = future
        try:
            status = await self._assert_once(user, mode, lose=lose)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no warning when nobody else waited
            raise
        finally:
            self._claims.pop(user, None)
        future.set_result(status)
        return status

    async def _assert_once(self, user: str, mode: str, *, lose: bool = True, fenced: bool = False) -> str:
        assert self._client is not None
        with self._lock:
            was_ours = user in self.owned
        sent = time.monotonic()
        async with asyncio.timeout(self.settings.timeout):
            status, other, lapsed, *evidence = await self._assert_script(
                keys=[self.keys.node(self.node_id), self.keys.owner(user), self.keys.since],
                args=[self.node_id, self.epoch, int(self.settings.lease_ttl * 1000), self.advertise,
                      self.started, os.getpid(), self.keys.node(""), int(self.settings.grace * 1000),
                      "confirm" if was_ours else mode, int(self.reassert_window * 1000), self.host,
                      self.lmtp])
        self._came_back()
        if status == "taken" and len(evidence) == 3 and not fenced and await self._fence(other, *evidence):
            return await self._assert_once(user, mode, lose=lose, fenced=True)
        if status == "ok":
            with self._lock:
                if int(lapsed) == 0:
                    self.continuity += 1
                self.owned[user] = self.continuity
            self.last_renewal = max(self.last_renewal, sent)
            if not was_ours:
                log.info("cluster: node %s now serves user %s%s", self.node_id, user,
                         f" (taken over from dead node {other})" if other else "")
                self.metrics.inc("imapd_cluster_claims_total")
                self.on_claimed(user)
            return "ok"
        if status == "conflict":
            self._lose_all()
        elif was_ours:
            self._lose(user, other)
        if was_ours and lose:
            raise NotOwner(f"user {user} is now served by cluster node {other or '(another)'}")
        return str(status)

    async def _fence(self, node: str, host: str, epoch: str, pids: str) -> bool:
        """End ``node``'s liveness key now if it is provably dead (every process of it gone from this host,
        imapd/cluster/death.py); True if it was (then ask again: its users are free, unless a process of
        it registered meanwhile, which FENCE refuses and the next answer shows). Claims of several of its
        users race to end it; only one script call does, the others find the key gone."""
        if not all_gone(str(host), str(pids), self.host):  # a few /proc look-ups: microseconds
            return False
        async with asyncio.timeout(self.settings.timeout):
            ended = await self._fence_script(keys=[self.keys.node(str(node))], args=[str(epoch), str(pids)])
        if int(ended):
            log.warning("cluster: node %s is dead (its process(es) %s are gone from this host): ended its lease "
                        "now instead of after cluster.lease_ttl", node, pids)
            self.metrics.inc("imapd_cluster_nodes_fenced_total")
        return True

    def _lose(self, user: str, other: str) -> None:
        with self._lock:
            if self.owned.pop(user, None) is None:
                return
        log.warning("cluster: node %s lost user %s to node %s; refusing its writes, closing its sessions",
                    self.node_id, user, other or "(unknown)")
        self.metrics.inc("imapd_cluster_leases_lost_total")
        self._call_on_loop(self.on_lost, user)

    def _lose_all(self) -> None:
        for user in list(self.owned):
            self._lose(user, "")

    def _release_idle(self) -> None:
        """Hand back users without a session here for ``release_after`` (on the network loop, at most
        once a second)."""
        now = time.monotonic()
        if (now - self._released_at < 1.0 and not self.draining) or not self.owned:
            return
        self._released_at = now
        after = 0.0 if self.draining else self.settings.release_after
        busy = self.busy_users()
        for user in list(self.owned):
            if user in busy:
                self._idle_since.pop(user, None)
                continue
            since = self._idle_since.setdefault(user, now)
            if now - since >= after:
                with self._lock:
                    self.owned.pop(user, None)
                self._idle_since.pop(user, None)
                if self.releases(user):
                    asyncio.get_running_loop().create_task(self._release(user))

    async def _release(self, user: str) -> None:
        try:
            async with asyncio.timeout(self.settings.timeout):
                await self._release_script(keys=[self.keys.owner(user)], args=[self.node_id])
            log.info("cluster: node %s released idle user %s", self.node_id, user)
        except _DOWN as exc:
            log.warning("cluster: could not release user %s (%s); its record dies with this node's key",
                        user, exc)

    # -- change channel ---------------------------------------------------------------------------------------
    def publish(self, user: str, mailbox: str, uidvalidity: int, modseq: int, kind: str) -> None:
        """Queue one change for ``{prefix}changes:{user}`` (any thread; never waits, drops when full)."""
        message = ChangeMessage(node=self.node_id, user=user, mailbox=mailbox, uidvalidity=uidvalidity,
                                modseq=modseq, kind=cast(ChangeKind, kind))
        self._call_on_loop(self._enqueue, message)

    def _enqueue(self, message: ChangeMessage) -> None:
        if not self.reachable:
            self._hold(message)
            self.metrics.inc("imapd_cluster_changes_dropped_total")
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.metrics.inc("imapd_cluster_changes_dropped_total")

    def _hold(self, message: ChangeMessage) -> None:
        if message.kind == "delivery" and len(self._held_deliveries) < self.settings.publish_queue:
            self._held_deliveries.add((message.user, message.mailbox))

    async def _publisher(self) -> None:
        assert self._client is not None
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 256:
                batch.append(self._queue.get_nowait())
            pipe = self._client.pipeline(transaction=False)
            for message in batch:
                pipe.publish(self.keys.changes(message.user), encode_change(message))
            try:
                async with asyncio.timeout(self.settings.timeout):
                    await pipe.execute()
                self.metrics.inc("imapd_cluster_changes_published_total", len(batch))
            except _DOWN as exc:
                for message in batch:
                    self._hold(message)
                self.metrics.inc("imapd_cluster_changes_dropped_total", len(batch))
                log.debug("dropped %d change message(s): %s", len(batch), exc)

    async def _subscriber(self) -> None:
        assert self._client is not None
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(self.keys.changes_pattern)
                await pubsub.subscribe(self.keys.throttle)
                backoff = 0.05
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    data = message.get("data")
                    if message.get("channel") == self.keys.throttle:
                        if isinstance(data, (str, bytes)):
                            self._throttle_message(data)
                    else:
                        self._received(data)
            except _DOWN as exc:
                log.debug("change subscription lost: %s", exc)
            finally:
                with contextlib.suppress(Exception):
                    await cast(Any, pubsub).aclose()  # (typed in redis-py 8.2, untyped before)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.reconnect_max)

    def _received(self, data: object) -> None:
        if not isinstance(data, (str, bytes)):
            return
        try:
            message = decode_change(data)
        except Exception:
            log.warning("ignored an undecodable message on %s", self.keys.changes_pattern)
            return
        if message.kind == "kick":
            self.on_kick(message.user)
        elif message.node != self.node_id and message.user in self.owned:
            self.metrics.inc("imapd_cluster_changes_received_total")
            self.on_change(message)

    # -- login failures and X-STATE revocations ----------------------------------------------------------------
    def address_throttled(self, address: str) -> bool:
        """Memory only: a counter of ``address`` reached ``auth.max_failures`` on the cluster."""
        return self._throttle_live(self._throttled_addresses, address)

    def user_throttled(self, user: str) -> bool:
        return self._throttle_live(self._throttled_users, user)

    @staticmethod
    def _throttle_live(table: dict[str, float], key: str) -> bool:
        until = table.get(key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        table.pop(key, None)
        return False

    def _throttle_message(self, data: str | bytes) -> None:
        try:
            got = json.loads(data)
            kind = got["kind"]
            if kind == "clear":
                if int(got["address_count"]) < self.max_failures:
                    self._throttled_addresses.pop(str(got["address"]), None)
                if int(got["user_count"]) < self.max_user_failures:
                    self._throttled_users.pop(str(got["user"]), None)
                return
            table = self._throttled_addresses if kind == "address" else self._throttled_users
            ttl = max(0.0, float(got["ttl"]) / 1000)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored an undecodable message on %s", self.keys.throttle)
            return
        if len(table) >= 100_000:  # bounded: forget the expired first, then the oldest
            now = time.monotonic()
            for key in [k for k, until in table.items() if until <= now]:
                del table[key]
            while len(table) >= 100_000:
                del table[next(iter(table))]
        table[str(got["key"])] = time.monotonic() + ttl
        self.metrics.inc("imapd_cluster_throttles_total")

    def count_login(self, address: str, user: str | None, failed: bool) -> None:
        """A login outcome recorded here (any thread; fire and forget). A success costs a Redis call only
        when this node counted failures of that pair (so the common login costs none)."""
        pair = (address, user or "")
        with self._lock:
            if failed:
                if len(self._failed_pairs) > 10_000:
                    self._failed_pairs.clear()
                self._failed_pairs.add(pair)
            elif pair in self._failed_pairs:
                self._failed_pairs.discard(pair)
            else:
                return
        self._call_on_loop(lambda: asyncio.get_running_loop().create_task(self._count(address, user, failed)))

    async def _count(self, address: str, user: str | None, failed: bool) -> None:
        if not self.reachable:
            return  # the breaker is open: not counted cluster-wide (the local throttle still counts)
        keys = list(self.keys.failures(address, user))
        try:
            async with asyncio.timeout(self.settings.timeout):
                if failed:
                    await self._failure_script(keys=keys, args=[
                        int(self.failure_window * 1000), "1" if user else "0", self.max_failures,
                        self.max_user_failures, self.keys.throttle, self.node_id, address, user or ""])
                else:
                    await self._success_script(keys=keys, args=[self.keys.throttle, self.node_id, address,
                                                                user or ""])
        except _DOWN as exc:
            log.debug("login outcome not counted cluster-wide: %s", exc)

    async def _mget(self, *keys: str) -> list[object]:
        assert self._client is not None
        async with asyncio.timeout(self.settings.timeout):
            return list(await self._client.mget(keys))

    async def revoke(self, lineage: bytes) -> None:
        """Refuse ``lineage`` on every node until its tokens expired anyway (best effort: the user's
        index holds the revocation too)."""
        assert self._client is not None

        async def set_key() -> None:
            assert self._client is not None
            async with asyncio.timeout(self.settings.timeout):
                await self._client.set(self.keys.revoked(lineage), "1", px=int(self.revocation_ttl * 1000))

        if self._redis_down():
            log.warning("X-STATE revocation not recorded in Redis (unreachable; the user's index has it)")
            return
        try:
            await self._on_loop(set_key())
        except _DOWN as exc:
            log.warning("X-STATE revocation not recorded in Redis (the user's index has it): %s", exc)

    async def is_revoked(self, lineage: bytes) -> bool:
        if not lineage or self._redis_down():
            return False  # the index's record still holds
        try:
            got = await self._on_loop(self._mget(self.keys.revoked(lineage)))
        except _DOWN:
            return False  # the index's record still holds
        return got[0] is not None

    # -- reaching the network loop ------------------------------------------------------------------------------
    def _call_on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed (shutdown)
                loop.call_soon_threadsafe(fn, *args)

    async def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the network loop from whichever loop we are on."""
        if threading.get_ident() == self._loop_thread:
            return await coro
        assert self._loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def _blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the network loop and wait for it on this (lane) thread."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.settings.timeout + 0.5)
