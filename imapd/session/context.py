"""Everything sessions share within one server process: settings, the store, users, limits, keys."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from imapd.config import Settings
from imapd.lanes import LanePool
from imapd.protocol.connection import InputBudget, InputLimits, PreauthLimits
from imapd.session.auth import AuthThrottle, HashSlots
from imapd.session.recent import RecentClaims
from imapd.store.store import Store

if TYPE_CHECKING:
    from imapd.cluster.node import ClusterNode
    from imapd.server.worker import Ownership
    from imapd.session.session import Session
    from imapd.store.mailbox import Mailbox

log = logging.getLogger(__name__)

__all__ = ["ServerContext"]



class ServerContext:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data_dir = settings.data_path
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(
            data_dir,
            history_limit=settings.store.expunge_history,
            durability="full" if settings.store.fsync else "normal",
            fts=settings.search.fts,
        )
        from imapd.cache import CredentialCache, WarmCache
        from imapd.metrics import Metrics
        from imapd.store.users import PasswdFile

        self.metrics = Metrics()
        self.cache = WarmCache(self.store, ttl=settings.cache.ttl, max_bytes=settings.cache.max_bytes,
                               metrics=self.metrics)
        self.credentials = CredentialCache(ttl=settings.cache.ttl, metrics=self.metrics)

        self.users = PasswdFile(os.path.join(data_dir, "passwd"))
        from imapd.store.quota import QuotaLimits, passwd_limits

        self.store.quota_limits = passwd_limits(
            self.users, QuotaLimits(settings.quota.storage or None, settings.quota.messages or None))
        auth = settings.auth
        self.throttle = AuthThrottle(
            failure_delay=auth.failure_delay,
            max_failures=auth.max_failures,
            penalty_delay=auth.penalty_delay,
            window=auth.failure_window,
            max_user_failures=auth.max_user_failures,
        )
        # 0: the machine's CPUs shared among the worker processes (each has its own slots).
        cpus = os.cpu_count() or 1
        hashes = auth.max_concurrent_hashes or max(1, cpus // (settings.server.workers or cpus))
        self.hash_slots = HashSlots(hashes, auth.max_queued_hashes)
        limits = settings.limits
        self.preauth_limits = PreauthLimits(
            InputLimits.preauth(min(limits.preauth_max_line, limits.max_line),
                                min(limits.preauth_max_literal, limits.max_literal)),
            limits.preauth_max_buffer, InputBudget(limits.preauth_max_total_buffer),
        )
        from statecodec import KeyRing

        self.xstate_keys = KeyRing.load_or_create(settings.xstate_key_path)
        self.tls_context: ssl.SSLContext | None = None
        self.registry: Any = None
        # This worker's place among its peers (None: a single process serves every user).
        self.ownership: Ownership | None = None
        # The link to the cluster's Redis (``[cluster]``), None on a single node.
        self.cluster: ClusterNode | None = None
        self.lanes = LanePool(max_lanes=settings.server.max_lanes, shared_lanes=settings.server.shared_lanes,
                              stuck_after=settings.server.stuck_after, stall_warning=settings.server.stall_warning,
                              observe_lag=self._observe_lag)
        # Work the store starts for a user (a Maildir change seen by the watcher, in its own thread) runs
        # on the user's lane; the lane pool is driven from the network loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self.store.run_for_user = self._run_for_user
        from imapd.textbackfill import TextBackfill

        self.text_backfill = TextBackfill(self.store, self.lanes)
        self.store.on_text_stale = self.text_backfill.request
        self.store.on_text_queued = self.text_backfill.queued
        self.user_sessions: Counter[str] = Counter()
        # \Recent (RFC 3501 2.3.2): who was told first about a message, kept in each user's index.
        self.recent = RecentClaims()
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_stop: threading.Event | None = None

    def reload_keys(self) -> None:
        """SIGHUP: pick up rotated or retired X-STATE signing keys without a restart."""
        from statecodec import KeyFileError, KeyRing

        try:
            self.xstate_keys = KeyRing.load(self.settings.xstate_key_path)
        except (OSError, KeyFileError) as exc:
            log.error("keeping the old X-STATE keys: cannot read %s: %s", self.settings.xstate_key_path, exc)
            return
        log.info("reloaded %d X-STATE key(s) from %s", len(self.xstate_keys), self.settings.xstate_key_path)

    def _run_for_user(self, user: str, what: str, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None:
            fn()
        else:
            loop.call_soon_threadsafe(self.lanes.submit, user, what, fn)

    def _observe_lag(self, loop: str, seconds: float) -> None:
        self.metrics.observe("imapd_loop_lag_seconds", loop, seconds, label_name="loop")

    def token_user(self, token: str) -> str | None:
        """The user an X-STATE token names if it is one of ours (expiry is checked later, by RESTORE)."""
        from statecodec import decode

        try:
            return decode(token, self.xstate_keys, max_age=float("inf"),
                          clock_skew=self.settings.xstate.clock_skew).user
        except Exception:
            return None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.lanes.start_monitor()
        self.text_backfill.start()
        await self._warm_up()
        if self.settings.store.watch:
            self._watch_stop = threading.Event()
            self._watch_task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        try:
            from imapd.store.watcher import watch_blocking

            await asyncio.to_thread(watch_blocking, self.store, stop_event=self._watch_stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("mail root watcher stopped; external deliveries are found on SELECT/NOOP only")

    async def _warm_up(self) -> None:
        """Pay first-use costs before saying ready, so the first client of a fresh process is not the one
        that waits for module imports, the thread pool and first-time code paths (T1 "cold")."""
        import imapd.session.dispatch  # noqa: F401  - every command handler and what they import
        from imapd.mime import parse_message
        from imapd.protocol.connection import ServerConnection
        from imapd.session.fetch import body_value, envelope_value

        await asyncio.to_thread(self.users.load)  # starts the executor the password hash runs in
        sample = (b"From: Warm Up <w@example.org>\r\nTo: x@example.org\r\nSubject: warm-up\r\n"
                  b"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <w@example.org>\r\n"
                  b"Content-Type: text/plain; charset=utf-8\r\n\r\nwarm\r\n")
        meta = parse_message(sample)
        envelope_value(meta.envelope)
        body_value(meta.body, True)
        parser = ServerConnection()
        parser.receive_data(b"w1 UID FETCH 1:50 (UID FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
        parser.next_event()

    def sweep(self) -> None:
        """Periodic housekeeping: expire warm mailboxes and remembered credentials, close idle indexes.

        Closing a user's index is disk work done on that user's lane, in order with the user's commands."""
        self.cache.sweep()
        self.credentials.sweep()
        for user in self.store.idle_users(self.user_sessions):
            self.lanes.submit(user, "close idle index",
                              functools.partial(self.store.close_user_if_idle, user, self.user_sessions))

    async def stop(self) -> None:
        if self._watch_stop is not None:
            self._watch_stop.set()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch_task
        await self.text_backfill.stop()
        await self.lanes.drain(5.0)
        self.lanes.stop()
        self.cache.clear()
        self.store.close()

    # -- users and sessions ------------------------------------------------------------------------
    def admit_user(self, session: Session, user: str) -> bool:
        if self.user_sessions[user] >= self.settings.limits.max_connections_per_user:
            return False
        self.user_sessions[user] += 1
        return True

    def release_user(self, session: Session) -> None:
        user = session.user_name
        if user is None:
            return
        session.user_name = None
        self.user_sessions[user] -= 1
        if self.user_sessions[user] <= 0:
            del self.user_sessions[user]

    def open_mailbox(self, session: Session, name: str) -> Mailbox:
        """The shared mailbox object, warm if a recent session had it."""
        assert session.user is not None
        mailbox = session.user.open(name)
        self.cache.note_open(mailbox)
        return mailbox

    def release_mailbox(self, mailbox: Mailbox) -> None:
        self.store.release(mailbox)
