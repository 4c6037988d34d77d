"""The per-user SQLite index (``mail/<user>/imapd-index.sqlite``), WAL mode.

Durability: ``synchronous=FULL``. In WAL mode NORMAL already survives a process kill -9 (the WAL is in
the OS page cache), but not power loss; an APPEND we acknowledge has already paid two fsyncs (message
file, cur/ directory), so the WAL fsync at commit is a modest third and makes "acknowledged" mean
"on stable storage". ``durability="normal"`` is available for benchmarks and tests.

All writes go through :meth:`UserIndex.write`, a ``BEGIN IMMEDIATE`` transaction, so several processes
(server workers, ``imapd deliver``) serialize on SQLite's lock; the Maildir reconcile also runs inside it.
The schema version lives in ``PRAGMA user_version``: opening an index that has it takes no write lock.
An older index is migrated when opened, in the same write transaction that checks the schema: each
version's steps in :data:`_MIGRATIONS` are idempotent, so two processes racing to migrate, or an older
process that re-stamped a newer index, leave it right.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from imapd.store import annotate, previews, quota

__all__ = ["SCHEMA_VERSION", "UserIndex"]

SCHEMA_VERSION = 4
"""1: the first schema. 2: the quota and annotation tables. 3: the RFC 8970 preview cache (``previews``).
4: ``messages.savedate`` (RFC 8514; NULL for rows stored before, read as INTERNALDATE), ``messages.threadid``
and the ``threads`` table (RFC 8474; NULL for rows stored before: THREADID NIL)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mailboxes(
    id INTEGER PRIMARY KEY AUTOINCREMENT,      -- stable mailbox id, never reused
    name TEXT NOT NULL UNIQUE,
    guid TEXT NOT NULL,                        -- RFC 8474 MAILBOXID
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL,
    highestmodseq INTEGER NOT NULL,
    history_floor INTEGER NOT NULL DEFAULT 0,  -- expunges with modseq > this are all in history
    special_use TEXT,
    cur_mtime INTEGER NOT NULL DEFAULT -1,     -- cur/ and new/ mtimes (ns) at the last reconcile
    new_mtime INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS keywords(
    mailbox INTEGER NOT NULL,
    idx INTEGER NOT NULL,                      -- bit number, 0..25 are dovecot-keywords letters a..z
    name TEXT NOT NULL,
    PRIMARY KEY(mailbox, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages(
    mailbox INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    fname TEXT NOT NULL,                       -- current file name in cur/
    base TEXT NOT NULL,                        -- fname up to ':'
    flags INTEGER NOT NULL,                    -- system flag bits (imapd.store.flags)
    keywords INTEGER NOT NULL DEFAULT 0,       -- keyword bits (keywords.idx)
    modseq INTEGER NOT NULL,
    internaldate INTEGER NOT NULL,             -- unix seconds
    size INTEGER NOT NULL,
    emailid TEXT NOT NULL,                     -- RFC 8474 EMAILID, kept by COPY/MOVE
    meta BLOB,                                 -- msgpack(imapd.mime.MessageMetadata) or NULL
    savedate INTEGER,                          -- RFC 8514, unix seconds, NULL when stored before schema 4
    threadid TEXT,                             -- RFC 8474 THREADID (imapd/store/threadids.py) or NULL
    PRIMARY KEY(mailbox, uid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_base ON messages(mailbox, base);
CREATE INDEX IF NOT EXISTS messages_modseq ON messages(mailbox, modseq);
-- Covering index for opening a mailbox: the table rows carry the metadata blob, so a scan of them reads
-- ~1 KB per message, this index holds just what the in-memory arrays need (100k messages: 135 -> 73 ms).
CREATE INDEX IF NOT EXISTS messages_state ON messages(mailbox, uid, modseq, flags, keywords);
CREATE TABLE IF NOT EXISTS expunged(
    mailbox INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY(mailbox, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(mailbox, modseq);
CREATE TABLE IF NOT EXISTS subscriptions(name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS threads(              -- Message-ID -> RFC 8474 THREADID, for the whole user
    msgid TEXT PRIMARY KEY,
    threadid TEXT NOT NULL
) WITHOUT ROWID;
"""


def _add_column(conn: sqlite3.Connection, table: str, column: str, decl: str) -> None:
    """``ALTER TABLE ... ADD COLUMN`` unless it is there (O(1) in SQLite: existing rows are not rewritten)."""
    if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def _to_4(conn: sqlite3.Connection) -> None:
    _add_column(conn, "messages", "savedate", "INTEGER")
    _add_column(conn, "messages", "threadid", "TEXT")


_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {4: _to_4}
"""Steps that bring an index of the previous version to this one (tables new in a version need none:
``_SCHEMA`` creates what is missing)."""


class UserIndex:
    """One SQLite connection per user per process, guarded by a re-entrant lock."""

    def __init__(self, path: str, *, durability: str = "full", guard: Callable[[], None] | None = None) -> None:
        self.path = path
        self.guard = guard
        """Called before a write transaction begins and again before it commits; raises to refuse it
        (a cluster node that does not hold the user's lease, ``imapd/cluster/node.py``)."""
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        sync = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}[durability]
        self.conn.execute(f"PRAGMA synchronous={sync}")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self._depth = 0
        self._data_version = -1
        if int(self.conn.execute("PRAGMA user_version").fetchone()[0]) != SCHEMA_VERSION:
            with self.write():
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
                # Tables of the extensions, each self-contained in its own module (v2: quota, annotations).
                quota.create_schema(self.conn)
                annotate.create_schema(self.conn)
                previews.create_schema(self.conn)  # v3: the RFC 8970 preview cache
                for _version, step in sorted(_MIGRATIONS.items()):
                    step(self.conn)
                self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
                self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.changed_elsewhere()

    def changed_elsewhere(self) -> bool:
        """True if another connection (another process) committed since the last call (PRAGMA data_version)."""
        with self.lock:
            version = int(self.conn.execute("PRAGMA data_version").fetchone()[0])
            changed = version != self._data_version
            self._data_version = version
            return changed

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction (re-entrant: nested use joins the outer one)."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            guard = self.guard
            if guard is not None:
                guard()
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self._depth = 0
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            self._depth = 0
            try:
                if guard is not None:
                    guard()  # again: the lease may have run out while the transaction ran
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    @property
    def in_write(self) -> bool:
        return self._depth > 0

    def next_uidvalidity(self, now: int) -> int:
        """A UIDVALIDITY never handed out before by this index (must be called inside write())."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='last_uidvalidity'").fetchone()
        last = int(row[0]) if row else 0
        value = max(now, last + 1)
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('last_uidvalidity', ?)", (value,))
        return value

    def close(self) -> None:
        with self.lock:
            self.conn.close()
