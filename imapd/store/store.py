"""The process-level root of the storage layer: users' stores, the open-mailbox registry, the change feed.

One :class:`Store` per process. Mailbox objects are shared: ``(user, mailbox id)`` -> :class:`Mailbox`
with a reference count. When the last reference is released, ``on_idle(mailbox)`` is called if set (the
warm cache keeps it and later calls :meth:`Store.evict`); without ``on_idle`` the object is dropped.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Container
from typing import TYPE_CHECKING, Any

from imapd.store import maildir
from imapd.store.changefeed import ChangeFeed
from imapd.store.errors import NoSuchUser, StorageIOError
from imapd.store.mailbox import Mailbox
from imapd.store.mailindex import IndexDelta
from imapd.store.quota import UNLIMITED, QuotaLimits
from imapd.store.userstore import INDEX_FILE, UserStore

if TYPE_CHECKING:
    from imapd.store.textindexes import TextIndexes

__all__ = ["Store", "valid_username"]

_USERNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@+\-]{0,127}")


def valid_username(name: str) -> bool:
    return bool(_USERNAME.fullmatch(name)) and ".." not in name


class Store:
    def __init__(self, data_dir: str | os.PathLike[str], *, history_limit: int = 10_000,
                 durability: str = "full", on_idle: Callable[[Mailbox], None] | None = None,
                 fts: bool = True) -> None:
        self.data_dir = os.fspath(data_dir)
        self.mail_root = os.path.join(self.data_dir, "mail")
        self.history_limit = history_limit
        self.durability = durability
        self.on_idle = on_idle
        self.applier: Callable[[Mailbox, IndexDelta], None] | None = None
        """None: a write applies its delta to the mailbox's arrays at once. Set, it receives
        ``(mailbox, delta)`` instead and must call ``mailbox.apply(delta)`` (e.g. on the event loop,
        when writes run on a worker thread)."""
        self.quota_limits: Callable[[str], QuotaLimits] = lambda _user: UNLIMITED
        """A user's quota limits; the server and ``imapd deliver`` read them from the passwd file and
        the settings (:func:`imapd.store.quota.limits_from_fields`). Alone (tests, imports): unlimited."""
        self.fts = fts
        """Keep a full-text index per mailbox (``search.fts``); off, SEARCH scans as before."""
        self.on_text_stale: Callable[[str, int], None] | None = None
        # Called (on the thread of the append) when a delivery queued messages for the full-text index
        # (``TextIndexes.add(later=True)``), with the user's TextIndexes and how many messages and bytes
        # it holds: the server then has ``flush()`` run on the user's lane. None (tools, tests): deliveries
        # index at once.
        self.on_text_queued: Callable[[TextIndexes, int, int], None] | None = None
        """Called (from any thread) when a mailbox may hold messages its full-text index lacks; the
        server schedules a background backfill (``imapd/textbackfill.py``)."""
        self.watching = False
        """True while :meth:`watch` runs: its per-name checks cover racy directory mtimes."""
        self.feed = ChangeFeed()
        self._users: dict[str, UserStore] = {}
        self._open: dict[tuple[str, int], Mailbox] = {}
        self._lock = threading.RLock()
        # The watcher's syncs queued and not started yet, per mailbox object (see watcher._queue_sync).
        self.pending_lock = threading.Lock()
        self.pending_syncs: dict[int, list[Any]] = {}
        # How work the store starts on its own (a sync after a Maildir change) is run: the server runs it
        # on the user's lane, off its event loop; alone (tests, admin commands) it runs at once.
        self.run_for_user: Callable[[str, str, Callable[[], None]], None] = lambda _user, _what, fn: fn()
        self.write_guard: Callable[[str], None] | None = None
        """Set by a cluster node: ``write_guard(user)`` raises NotOwner before any write of an index
        whose lease this node does not hold (``imapd/cluster/node.py``)."""

    def index_guard(self, user: str) -> Callable[[], None] | None:
        """The guard a user's index calls before each write transaction, if a cluster asks for one."""
        if self.write_guard is None:
            return None
        guard = self.write_guard
        return lambda: guard(user)

    def user_root(self, user: str) -> str:
        if not valid_username(user):
            raise NoSuchUser(f"invalid user name {user!r}")
        return os.path.join(self.mail_root, user)

    def user(self, user: str) -> UserStore:
        """The user's store; NoSuchUser if the user has no mail directory."""
        with self._lock:
            us = self._users.get(user)
            if us is None:
                root = self.user_root(user)
                if not os.path.isdir(os.path.join(root, "cur")):
                    if not os.path.exists(os.path.join(root, INDEX_FILE)):
                        raise NoSuchUser(f"no mailbox for user {user!r}")
                    try:
                        maildir.ensure_maildir(root)  # a lost INBOX cur/ is recreated, as Dovecot does
                    except OSError as exc:
                        raise StorageIOError(user, None, "open", exc) from exc
                us = self._users[user] = UserStore(self, user, root)
            return us

    def create_user(self, user: str) -> UserStore:
        """Create the user's Maildir++ root, INBOX and the special-use folders (idempotent)."""
        root = self.user_root(user)
        try:
            os.makedirs(self.mail_root, mode=0o700, exist_ok=True)
            os.makedirs(root, mode=0o700, exist_ok=True)
            maildir.ensure_maildir(root)
            maildir.fsync_dir(self.mail_root)
        except OSError as exc:
            raise StorageIOError(user, None, "create user", exc) from exc
        us = self.user(user)
        us.provision()
        return us

    def remove_user(self, user: str) -> None:
        """Forget the open state of a user (their files are left to the caller)."""
        with self._lock:
            us = self._users.pop(user, None)
            for key in [k for k in self._open if k[0] == user]:
                self._open.pop(key).deleted = True
        if us is not None:
            us.close()

    def idle_users(self, keep: Container[str]) -> list[str]:
        """Users whose index is open but who have no session (in ``keep``) and no open or warm mailbox."""
        with self._lock:
            busy = {user for user, _ in self._open}
            return [u for u in self._users if u not in keep and u not in busy]

    def close_user_if_idle(self, user: str, keep: Container[str]) -> bool:
        """Close one user's index if it is still idle (see :meth:`idle_users`)."""
        with self._lock:
            if user in keep or any(u == user for u, _ in self._open):
                return False
            us = self._users.pop(user, None)
        if us is None:
            return False
        us.close()
        return True

    def close_idle_users(self, keep: Container[str]) -> int:
        """Close the index of every user not in ``keep`` that has no open (or warm) mailbox.

        Each user's SQLite connection holds file descriptors; a long-running server that has seen many
        users must give them back. Returns how many users were closed.
        """
        closed: list[UserStore] = []
        with self._lock:
            busy = {user for user, _ in self._open}
            for name in [u for u in self._users if u not in keep and u not in busy]:
                closed.append(self._users.pop(name))
        for us in closed:
            us.close()
        return len(closed)

    def open_mailbox(self, user: str, name: str) -> Mailbox:
        return self.user(user).open(name)

    # ---------------------------------------------------------------------------- registry

    def acquire(self, owner: UserStore, mailbox_id: int, name: str) -> Mailbox:
        with self._lock:
            key = (owner.user, mailbox_id)
            mb = self._open.get(key)
            if mb is None or mb.deleted:
                owner.on_cold_open(mailbox_id, name)
                mb = Mailbox(owner, mailbox_id, name)
                mb.sync()  # a cold object catches up with the Maildir once; later SELECTs call sync()
                self._open[key] = mb
            mb.refcount += 1
            return mb

    def registry_get(self, user: str, mailbox_id: int) -> Mailbox | None:
        return self._open.get((user, mailbox_id))

    def open_mailboxes(self) -> list[Mailbox]:
        with self._lock:
            return list(self._open.values())

    def release(self, mailbox: Mailbox) -> None:
        with self._lock:
            if mailbox.refcount <= 0:
                raise RuntimeError(f"mailbox {mailbox.name!r} released more often than opened")
            mailbox.refcount -= 1
            if mailbox.refcount:
                return
        if self.on_idle is not None:
            self.on_idle(mailbox)
        else:
            self.evict(mailbox)

    def evict(self, mailbox: Mailbox) -> None:
        """Drop an unreferenced mailbox object from the registry (the warm cache calls this)."""
        with self._lock:
            key = (mailbox.user, mailbox.mailbox_id)
            if mailbox.refcount == 0 and self._open.get(key) is mailbox:
                del self._open[key]
            else:
                return
        if self.watching:
            self.run_for_user(mailbox.user, "re-check young mtimes after eviction", mailbox.unwatched)

    # ------------------------------------------------------------------------------ watcher

    def index_changed(self, user: str) -> bool:
        """The user's index file changed on disk: catch up their open mailboxes if another process wrote."""
        with self._lock:
            us = self._users.get(user)
        return us is not None and us.index_changed()

    async def watch(self, stop_event: object | None = None, debounce_ms: int = 50) -> None:
        """Watch the whole mail root; sync open mailboxes whose directories changed. See watcher.py."""
        from imapd.store.watcher import watch

        await watch(self, stop_event=stop_event, debounce_ms=debounce_ms)

    def stopped_watching(self) -> None:
        """The watcher stops: what it vouched for must be checked again by whoever looks next."""
        self.watching = False
        for mb in self.open_mailboxes():
            mb.unwatched()

    def close(self) -> None:
        if self.watching:
            self.stopped_watching()
        with self._lock:
            users = list(self._users.values())
            self._users.clear()
            self._open.clear()
        for us in users:
            us.close()
