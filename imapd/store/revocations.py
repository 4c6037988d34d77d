"""X-STATE lineages their user ended (``X-STATE REVOKE``), kept in the user's SQLite index.

The index is shared by every server process and node that serves the user's Maildir, so a revocation
holds everywhere at once. A row only needs to outlive the tokens it kills: the caller passes the time
after which every token of the lineage has expired anyway (issue time + ``xstate.max_age`` + clock
skew, from the moment new tokens of it stopped being issued), and each revocation drops the expired
rows, so the table stays as small as the number of logouts within one ``max_age``.

The table is created by the first revocation, not by opening the index: a user who never revoked has
none, and a lookup then answers "not revoked" without a write lock.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from imapd.store.errors import StorageIOError

if TYPE_CHECKING:
    from imapd.store.userstore import UserStore

__all__ = ["is_revoked", "revoke"]

_TABLE = ("CREATE TABLE IF NOT EXISTS xstate_revoked("
          "lineage BLOB PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID")


def revoke(user: UserStore, lineage: bytes, *, until: float, now: float) -> None:
    """Refuse every token of ``lineage`` until ``until`` (seconds since the epoch)."""
    try:
        with user.index.write() as conn:
            conn.execute(_TABLE)
            conn.execute("DELETE FROM xstate_revoked WHERE expires < ?", (int(now),))
            conn.execute("INSERT OR REPLACE INTO xstate_revoked(lineage, expires) VALUES (?, ?)",
                         (lineage, int(until) + 1))
    except sqlite3.Error as exc:
        raise StorageIOError(user.user, None, "revoke", exc) from exc


def is_revoked(user: UserStore, lineage: bytes, *, now: float) -> bool:
    """Whether ``lineage`` was revoked (and the revocation has not run out)."""
    if not lineage:
        return False
    index = user.index
    try:
        with index.lock:
            row = index.conn.execute("SELECT expires FROM xstate_revoked WHERE lineage=?", (lineage,)).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return False
        raise StorageIOError(user.user, None, "check revocation", exc) from exc
    except sqlite3.Error as exc:
        raise StorageIOError(user.user, None, "check revocation", exc) from exc
    return row is not None and row[0] >= now
