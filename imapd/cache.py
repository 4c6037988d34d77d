"""What stays warm after a user's last connection closes: mailbox objects and a credential fast path.

Webmail backends reconnect on every HTTP request. When the last session releases a mailbox, the store
calls :meth:`WarmCache.on_idle`; instead of being freed, the mailbox object (its UID/flag arrays, already
reconciled with the Maildir) stays in the store's registry, so the next SELECT or X-STATE RESTORE finds
it without reading the index. It stays correct while warm because it is still a registered, open
mailbox: the store's watcher syncs it on external deliveries, every change of this process goes through
it, and SELECT re-checks the Maildir (two stats) before using it.

The cache is bounded by time (``cache.ttl``) and by measured size (``cache.max_bytes``, LRU).

The credential cache remembers, for ``cache.ttl``, an HMAC of (user, password) under a per-process
random key, never the password. A LOGIN with the same password skips the memory-hard hash; a wrong
password still pays it in full, and a password change (new credential generation) misses.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from imapd.metrics import Metrics

if TYPE_CHECKING:
    from imapd.store.mailbox import Mailbox
    from imapd.store.store import Store

log = logging.getLogger(__name__)

__all__ = ["CredentialCache", "WarmCache"]


class WarmCache:
    def __init__(self, store: Store, *, ttl: float, max_bytes: int, metrics: Metrics) -> None:
        self.store = store
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.metrics = metrics
        # (user, mailbox id) -> (mailbox, expires at, bytes), oldest first: ordered by idle time == expiry.
        self._entries: OrderedDict[tuple[str, int], tuple[Mailbox, float, int]] = OrderedDict()
        self.bytes = 0
        # Users' lanes release and take mailboxes while the network loop sweeps: one lock for the LRU.
        self._lock = threading.RLock()
        store.on_idle = self.on_idle

    def __len__(self) -> int:
        return len(self._entries)

    def on_idle(self, mailbox: Mailbox) -> None:
        """The last session released ``mailbox``: keep it warm, or drop it if the cache is off."""
        with self._lock:
            self._on_idle(mailbox)

    def _on_idle(self, mailbox: Mailbox) -> None:
        key = (mailbox.user, mailbox.mailbox_id)
        if self.ttl <= 0 or self.max_bytes <= 0 or mailbox.deleted:
            self.store.evict(mailbox)
            return
        self._forget(key)
        size = mailbox.memory_bytes() + 512  # arrays plus the object's fixed overhead
        self._entries[key] = (mailbox, time.monotonic() + self.ttl, size)
        self.bytes += size
        while self.bytes > self.max_bytes and self._entries:
            self._evict_oldest()
        self._publish()

    def note_open(self, mailbox: Mailbox) -> None:
        """A session took ``mailbox``: count a hit if it came from the cache, a miss if it was loaded."""
        with self._lock:
            self._note_open(mailbox)

    def _note_open(self, mailbox: Mailbox) -> None:
        key = (mailbox.user, mailbox.mailbox_id)
        if key in self._entries:
            self._forget(key)
            self.metrics.inc("imapd_cache_hits_total")
        elif mailbox.refcount == 1:
            self.metrics.inc("imapd_cache_misses_total")
        self._publish()

    def sweep(self) -> int:
        """Drop entries past their TTL; returns how many were dropped."""
        with self._lock:
            return self._sweep()

    def _sweep(self) -> int:
        now = time.monotonic()
        dropped = 0
        while self._entries:
            key, (_, expires, _) = next(iter(self._entries.items()))
            if expires > now:
                break
            self._evict(key)
            dropped += 1
        if dropped:
            self._publish()
        return dropped

    def clear(self) -> None:
        with self._lock:
            for key in list(self._entries):
                self._evict(key)
            self._publish()

    def _forget(self, key: tuple[str, int]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry[2]

    def _evict_oldest(self) -> None:
        self._evict(next(iter(self._entries)))

    def _evict(self, key: tuple[str, int]) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        mailbox, _, size = entry
        self.bytes -= size
        if mailbox.refcount == 0:
            self.store.evict(mailbox)
            self.metrics.inc("imapd_cache_evictions_total")

    def _publish(self) -> None:
        self.metrics.set("imapd_cache_bytes", self.bytes)
        self.metrics.set("imapd_cache_mailboxes", len(self._entries))


class CredentialCache:
    """(user, password) -> credential generation, as an HMAC under a key that never leaves the process."""

    def __init__(self, *, ttl: float, metrics: Metrics, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.metrics = metrics
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[str, tuple[bytes, int, float]] = OrderedDict()

    def _digest(self, user: str, password: str) -> bytes:
        msg = user.encode("utf-8", "surrogatepass") + b"\0" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def check(self, user: str, password: str, generation: int) -> bool:
        entry = self._entries.get(user)
        if entry is None:
            return False
        digest, gen, expires = entry
        ok = hmac.compare_digest(digest, self._digest(user, password)) and gen == generation
        if not ok or expires < time.monotonic():
            if gen != generation or expires < time.monotonic():
                self._entries.pop(user, None)
            return False
        self.metrics.inc("imapd_credential_cache_hits_total")
        return True

    def remember(self, user: str, password: str, generation: int) -> None:
        if self.ttl <= 0:
            return
        self._entries.pop(user, None)
        self._entries[user] = (self._digest(user, password), generation, time.monotonic() + self.ttl)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, user: str) -> None:
        self._entries.pop(user, None)

    def sweep(self) -> None:
        now = time.monotonic()
        for user, (_, _, expires) in list(self._entries.items()):
            if expires < now:
                del self._entries[user]
