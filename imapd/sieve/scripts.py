"""A user's Sieve scripts on disk, and what their deliveries remember.

``<user root>/sieve/`` holds one ``<name>.sieve`` file per script (the name percent-encoded), ``active``
naming the active one (at most one, RFC 5804), and ``state.sqlite`` with the vacation and duplicate
memos. Every write is a new file fsynced and renamed over the old one, so a reader (a delivery, another
worker's ManageSieve session) sees the old or the new script, never half of one. Synchronous: callers
run it off the event loop.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from urllib.parse import quote, unquote

from imapd.sieve.actions import Memo

__all__ = ["ActiveScript", "NoSuchScript", "ScriptExists", "ScriptStore", "SieveState", "valid_script_name"]

SIEVE_DIR = "sieve"
_SUFFIX = ".sieve"
_ACTIVE = "active"


class NoSuchScript(Exception):
    pass


class ScriptExists(Exception):
    pass


class ActiveScript(Exception):
    """The active script cannot be deleted (RFC 5804 2.10)."""


def valid_script_name(name: str) -> bool:
    """RFC 5804 1.6: 1-512 characters, no control characters, no U+2028/2029."""
    return 0 < len(name) <= 512 and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029"
                                           for c in name)


def _write_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ScriptStore:
    def __init__(self, user_root: str) -> None:
        self.dir = os.path.join(user_root, SIEVE_DIR)

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, quote(name, safe="") + _SUFFIX)

    def _ensure(self) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def names(self) -> list[str]:
        try:
            entries = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(unquote(e[: -len(_SUFFIX)]) for e in entries if e.endswith(_SUFFIX)
                      and not e.startswith(".tmp-"))

    def active_name(self) -> str | None:
        try:
            with open(os.path.join(self.dir, _ACTIVE), encoding="utf-8") as f:
                name = f.read().strip("\n")
        except FileNotFoundError:
            return None
        return name if name and os.path.exists(self._path(name)) else None

    def listing(self) -> list[tuple[str, bool]]:
        active = self.active_name()
        return [(name, name == active) for name in self.names()]

    def get(self, name: str) -> str:
        try:
            with open(self._path(name), "rb") as f:
                return f.read().decode("utf-8")
        except FileNotFoundError:
            raise NoSuchScript(name) from None

    def exists(self, name: str) -> bool:
        return os.path.exists(self._path(name))

    def put(self, name: str, text: str) -> None:
        self._ensure()
        _write_atomic(self._path(name), text.encode("utf-8"))

    def total_size(self, excluding: str | None = None) -> int:
        total = 0
        for name in self.names():
            if name != excluding:
                with contextlib.suppress(OSError):
                    total += os.path.getsize(self._path(name))
        return total

    def delete(self, name: str) -> None:
        if not self.exists(name):
            raise NoSuchScript(name)
        if self.active_name() == name:
            raise ActiveScript(name)
        os.unlink(self._path(name))

    def rename(self, old: str, new: str) -> None:
        if not self.exists(old):
            raise NoSuchScript(old)
        if self.exists(new):
            raise ScriptExists(new)
        was_active = self.active_name() == old
        os.rename(self._path(old), self._path(new))
        if was_active:
            _write_atomic(os.path.join(self.dir, _ACTIVE), new.encode("utf-8"))

    def set_active(self, name: str) -> None:
        """Make ``name`` the active script; "" deactivates every script (RFC 5804 2.8)."""
        if name and not self.exists(name):
            raise NoSuchScript(name)
        self._ensure()
        if name:
            _write_atomic(os.path.join(self.dir, _ACTIVE), name.encode("utf-8"))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.dir, _ACTIVE))

    def active(self) -> tuple[str, str] | None:
        """(name, source) of the active script, or None."""
        name = self.active_name()
        if name is None:
            return None
        try:
            return name, self.get(name)
        except NoSuchScript:
            return None


class SieveState:
    """Vacation replies sent and message ids seen, each with its expiry; shared by concurrent deliveries
    (SQLite's locking), pruned as it is written."""

    def __init__(self, user_root: str) -> None:
        directory = os.path.join(user_root, SIEVE_DIR)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.db = sqlite3.connect(os.path.join(directory, "state.sqlite"), timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS memo (kind TEXT NOT NULL, key TEXT NOT NULL, "
                        "expires REAL NOT NULL, PRIMARY KEY (kind, key))")

    def seen(self, kind: str, key: str, now: float) -> bool:
        row = self.db.execute("SELECT 1 FROM memo WHERE kind=? AND key=? AND expires>?", (kind, key, now)).fetchone()
        return row is not None

    def record(self, memos: Iterable[Memo], now: float | None = None) -> None:
        now = time.time() if now is None else now
        with contextlib.closing(self.db.cursor()) as cur:
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.executemany("INSERT OR REPLACE INTO memo (kind, key, expires) VALUES (?, ?, ?)",
                                [(m.kind, m.key, m.expires) for m in memos])
                cur.execute("DELETE FROM memo WHERE expires<=?", (now,))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self.db.close()
