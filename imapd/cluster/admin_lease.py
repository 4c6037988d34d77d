"""The cluster lease for an admin command that writes a user's index (``imapd index rebuild``, the direct
path of ``imapd deliver``): the same rule as for a node, two writers never at once.

The command takes the user's lease as a short-lived node of its own (``admin-{host}-{pid}``, with its pid
and host recorded, so that a peer on this host can prove it dead if it is killed, imapd/cluster/death.py)
before it opens the index, renews it from a thread while it works, and hands it back at the end. A user
that a live node serves is refused with a message naming the user and the node: run the command there
(or drain it, or `imapd kick` and hold the user's logins off). Redis unreachable: refused too, since
nothing can tell who writes the user now.

A renewal that has not succeeded for ``lease_ttl - heartbeat_interval`` (the point where a node stops
trusting its lease) ends the process at once (exit 75, EX_TEMPFAIL): SQLite rolls the unfinished
transaction back at the next open, and no other node can have taken the user before that moment.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from imapd.cluster import scripts
from imapd.cluster.death import all_gone, host_identity
from imapd.cluster.keys import ClusterKeys

if TYPE_CHECKING:
    from imapd.config import ClusterSettings

__all__ = ["LeaseRefused", "admin_lease"]

EX_TEMPFAIL = 75


class LeaseRefused(Exception):
    """The user is served by another node now (or nobody can tell): the command must not write."""


class _AdminLease:
    def __init__(self, settings: ClusterSettings, user: str) -> None:
        import redis

        self.settings = settings
        self.user = user
        self.keys = ClusterKeys(settings.key_prefix)
        self.node_id = f"admin-{socket.gethostname()}-{os.getpid()}"
        self.epoch = secrets.token_hex(8)
        self.host = host_identity()
        self.redis: Any = redis.Redis.from_url(settings.redis_url, socket_timeout=settings.timeout,
                                               socket_connect_timeout=settings.timeout, decode_responses=True)
        self.fresh_for = settings.lease_ttl - settings.heartbeat_interval
        self.last_renewal = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _assert(self) -> list[Any]:
        return list(self.redis.eval(
            scripts.ASSERT, 3, self.keys.node(self.node_id), self.keys.owner(self.user), self.keys.since,
            self.node_id, self.epoch, int(self.settings.lease_ttl * 1000), "", f"{time.time():.3f}", os.getpid(),
            self.keys.node(""), int(self.settings.grace * 1000), "claim", 0, self.host))

    def take(self) -> None:
        from redis.exceptions import RedisError

        deadline = time.monotonic() + self.settings.login_wait
        fenced = False
        while True:
            sent = time.monotonic()
            try:
                status, other, _lapsed, *evidence = self._assert()
                if status == "taken" and len(evidence) == 3 and not fenced and all_gone(evidence[0], evidence[2], self.host):
                    fenced = True
                    self.redis.eval(scripts.FENCE, 1, self.keys.node(other), evidence[1], evidence[2])
                    continue
            except (RedisError, OSError) as exc:
                self._drop_node_key()
                raise LeaseRefused(f"cannot reach the cluster's Redis ({exc}): nothing can tell which node "
                                   f"serves user {self.user} now; not writing") from None
            if status == "ok":
                self.last_renewal = sent
                self._thread = threading.Thread(target=self._renew, name="admin-lease", daemon=True)
                self._thread.start()
                return
            if status == "wait" and time.monotonic() > deadline:
                self._drop_node_key()
                raise LeaseRefused(f"the cluster's Redis lost its records recently and the owners are still "
                                   f"re-asserting their users (cluster.reassert_grace); retry user {self.user} "
                                   f"shortly")
            if status != "wait":
                self._drop_node_key()
                where = f"cluster node {other}" if other else "another cluster node"
                raise LeaseRefused(f"user {self.user} is served by {where} right now; run this on that node, "
                                   f"or drain it (imapd proxy backends drain {other or 'NODE'}) and retry")
            time.sleep(0.1)  # "wait": Redis restarted and owners are re-asserting their users

    def _renew(self) -> None:
        interval = self.settings.heartbeat_interval
        while not self._stop.wait(interval):
            sent = time.monotonic()
            try:
                got = self.redis.eval(scripts.HEARTBEAT, 2, self.keys.node(self.node_id), self.keys.since,
                                      self.epoch, int(self.settings.lease_ttl * 1000), "", "0", os.getpid(),
                                      self.host)
                if int(got[0]) == 1:
                    self.last_renewal = sent
            except Exception:  # the deadline below decides
                pass
            if time.monotonic() - self.last_renewal >= self.fresh_for and not self._stop.is_set():
                print(f"imapd: the cluster lease of user {self.user} could not be renewed for "
                      f"{self.fresh_for:.1f} s; stopping before another node may take the user", file=sys.stderr)
                os._exit(EX_TEMPFAIL)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(Exception):
            self.redis.eval(scripts.RELEASE, 1, self.keys.owner(self.user), self.node_id)
        self._drop_node_key()

    def _drop_node_key(self) -> None:
        with contextlib.suppress(Exception):
            self.redis.delete(self.keys.node(self.node_id))
        with contextlib.suppress(Exception):
            self.redis.close()


@contextlib.contextmanager
def admin_lease(settings: ClusterSettings, user: str) -> Iterator[None]:
    """Hold ``user``'s lease while the block runs (nothing to do without ``cluster.redis_url``). Raises
    :class:`LeaseRefused` before the block when another node serves the user or Redis cannot say."""
    if not settings.redis_url:
        yield
        return
    lease = _AdminLease(settings, user)
    lease.take()
    try:
        yield
    finally:
        lease.release()
