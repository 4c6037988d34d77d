"""What the proxy reads from and writes to Redis (``cluster.redis_url``), and nothing when it is not set.

Keys (the contract shared with the backends, docs/cluster.md): ``{prefix}owner:{user}`` -> node id (the
user's assignment, live only while ``{prefix}node:{id}`` exists; that hash's ``imap`` field is the node's
address), ``{prefix}drained`` (a set of node ids every proxy honours), and the channel
``{prefix}changes:{user}`` carrying JSON ``{"node","user","mailbox","uidvalidity","modseq","kind"}``
(kind ``"kick"``: end the user's sessions). One pub/sub connection carries every hibernated session's
subscription; a Redis outage costs only the wake-on-change (sessions still wake on client input).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from imapd.cluster.scripts import OWNER_ADDRESS

log = logging.getLogger(__name__)

__all__ = ["ChangeListener", "Coordination"]

ChangeListener = Callable[[dict[str, Any]], None]


_MARK_DRAINING = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'draining', '1') else redis.call('HDEL', KEYS[1], 'draining') end
  return 1
end
return 0
"""


class Coordination:
    def __init__(self, redis_url: str, prefix: str) -> None:
        self.prefix = prefix
        self.enabled = bool(redis_url)
        self._url = redis_url
        self._redis: Any = None
        self._pubsub: Any = None
        self._listeners: dict[str, set[ChangeListener]] = {}
        self._task: asyncio.Task[None] | None = None
        self._owner_reads: dict[str, asyncio.Future[tuple[str, str] | None]] = {}

    async def start(self) -> None:
        if not self.enabled:
            return
        import redis.asyncio as aioredis

        # Bounded and blocking: thousands of sessions waking at once (a backend lost) queue for a connection
        # instead of failing with "Too many connections" (redis-py's default pool).
        pool = aioredis.BlockingConnectionPool.from_url(self._url, max_connections=64, timeout=5,
                                                        decode_responses=True, socket_timeout=5,
                                                        socket_connect_timeout=5)
        self._redis = aioredis.Redis(connection_pool=pool)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.ping()
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pubsub is not None:
            await self._pubsub.aclose()
        if self._redis is not None:
            await self._redis.aclose(close_connection_pool=True)

    # -- reads and writes ----------------------------------------------------------------------------------
    async def owner(self, user: str) -> tuple[str, str] | None:
        """(node id, its IMAP address) of the user's live assignment, or None. Look-ups of one user that
        overlap share one (the 20 sessions of a user that one change notice wakes at once)."""
        if self._redis is None:
            return None
        pending = self._owner_reads.get(user)
        if pending is None:
            pending = asyncio.ensure_future(self._read_owner(user))
            self._owner_reads[user] = pending
            pending.add_done_callback(lambda _f: self._owner_reads.pop(user, None))
        return await asyncio.shield(pending)

    async def _read_owner(self, user: str) -> tuple[str, str] | None:
        try:  # one round trip: the record and its node's address
            got = await self._redis.eval(OWNER_ADDRESS, 1, f"{self.prefix}owner:{user}", f"{self.prefix}node:", "imap")
        except Exception as exc:  # Redis down: hashing decides, as without Redis
            log.warning("redis: cannot read the assignment of %s: %s", user, exc)
            return None
        if not got:
            return None  # no record, or the node's registry entry expired: the assignment is dead
        return str(got[0]), str(got[1])

    async def drained(self) -> set[str] | None:
        if self._redis is None:
            return None
        try:
            return set(await self._redis.smembers(f"{self.prefix}drained"))
        except Exception as exc:
            log.warning("redis: cannot read the drained set: %s", exc)
            return None

    async def set_drained(self, node: str, drained: bool) -> None:
        if self._redis is None:
            return
        key = f"{self.prefix}drained"
        await (self._redis.sadd(key, node) if drained else self._redis.srem(key, node))
        await self.mark_draining(node, drained)

    async def mark_draining(self, node: str, drained: bool) -> None:
        """Tell the backend itself, through its registry hash's ``draining`` field (imapd/cluster/keys.py):
        it then takes no new user and hands its idle users back at once, so the sessions this proxy moves
        can be restored elsewhere without waiting for ``cluster.release_after``. Only a live node's hash is
        touched (creating one without its TTL would make a dead node look alive); a drained node that
        restarts is marked again by :meth:`imapd.proxy.backends.Backends.refresh_drained`."""
        if self._redis is None:
            return
        try:
            await self._redis.eval(_MARK_DRAINING, 1, f"{self.prefix}node:{node}", "1" if drained else "0")
        except Exception as exc:
            log.warning("redis: cannot mark backend %s %s: %s", node, "draining" if drained else "undrained", exc)

    # -- change notifications ------------------------------------------------------------------------------
    def channel(self, user: str) -> str:
        return f"{self.prefix}changes:{user}"

    async def subscribe(self, user: str, listener: ChangeListener) -> None:
        if self._pubsub is None:
            return
        listeners = self._listeners.setdefault(user, set())
        listeners.add(listener)
        if len(listeners) == 1:
            try:
                await self._pubsub.subscribe(self.channel(user))
            except Exception as exc:
                log.warning("redis: cannot subscribe to the changes of %s: %s", user, exc)

    async def unsubscribe(self, user: str, listener: ChangeListener) -> None:
        listeners = self._listeners.get(user)
        if not listeners:
            return
        listeners.discard(listener)
        if not listeners:
            del self._listeners[user]
            if self._pubsub is not None:
                try:
                    await self._pubsub.unsubscribe(self.channel(user))
                except Exception as exc:
                    log.warning("redis: cannot unsubscribe from the changes of %s: %s", user, exc)

    async def _listen(self) -> None:
        prefix = f"{self.prefix}changes:"
        while True:
            try:
                if not self._listeners:
                    await asyncio.sleep(0.05)
                    continue
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redis: change channel failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            user = str(message["channel"])[len(prefix):]
            try:
                change = json.loads(message["data"])
            except (ValueError, TypeError):
                log.info("redis: undecodable change message for %s", user)
                continue
            for listener in list(self._listeners.get(user, ())):
                try:
                    listener(change)
                except Exception:
                    log.exception("change listener of %s failed", user)
