"""The full-text index of one mailbox: an SQLite FTS5 file of its own, ``<user root>/imapd-fts/<id>.sqlite``.

Why a file per mailbox, apart from ``imapd-index.sqlite``: the trigram index is several times the size
of the text it covers; kept apart, the main index stays small and fast to open, and this one can be
deleted and rebuilt at any time (DELETE removes it, RENAME needs nothing: the name is the mailbox id).
A file whose recorded MAILBOXID or UIDVALIDITY is not the mailbox's (an index rebuilt from the Maildir
reuses ids) is discarded on open.

What is stored, per UID, are the strings the SEARCH scan itself compares (``imapd.mime.SearchDocument``,
made by the same extraction functions, already case-folded): so a needle is in a column exactly when
the scan finds it there, and the answer of :meth:`TextIndex.search` for the messages it covers is the
scan's answer, not an approximation. The tokenizer is ``trigram case_sensitive 1`` (substring matching;
the folding is done before, by Python's ``casefold``, as the scan does). Needles under three characters
have no trigram: they are answered by ``instr()`` over the stored strings, in SQL. HEADER of a field
the ENVELOPE does not hold looks the needle up in the ``name:value`` lines and checks the field name on
the stored line.

Coverage: ``docs`` lists every UID that was indexed (``ok=1``) or could not be (``ok=0``: the text holds
NUL, which FTS5 cannot tokenize, or the separator; those are always scanned). :meth:`TextIndex.missing`
tells the searcher which UIDs the index cannot answer for; it costs two indexed queries per call, using
the ``seq`` counter to read only what other writers added since the last call.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import operator
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Sequence

__all__ = ["ENVELOPE_COLUMNS", "FTS_DIR", "PART_SEPARATOR", "TextDocument", "TextIndex", "fts_path",
           "remove_fts"]

log = logging.getLogger(__name__)

FTS_DIR = "imapd-fts"
SCHEMA_VERSION = 2
ENVELOPE_COLUMNS = ("subject", "from_", "to_", "cc", "bcc", "reply_to", "sender", "message_id", "in_reply_to")
"""The ENVELOPE strings (one table ``t_<name>`` each), in the order of ``imapd.mime.ENVELOPE_TEXTS``."""
PART_SEPARATOR = "\uffff"
"""Must equal ``imapd.mime.search.PART_SEPARATOR`` (a test checks)."""
MIN_TRIGRAM = 3
_first = operator.itemgetter(0)

TextDocument = tuple[list[str | None], str, list[str], list[str]]
"""``(envelope texts, header, body parts, field lines)``: the fields of ``imapd.mime.SearchDocument``."""

_TOKENIZE = "tokenize='trigram case_sensitive 1'"
# One FTS5 table per searched string (t_<column>, one column v, a row only where the message has a
# value): a trigram's document list then holds only that column's documents. In one table with a column
# filter, "exa" of every address list would be read for a FROM search (measured over 100k messages:
# 23 -> 5 ms for a SUBJECT word). A NULL (no such field) has no row, so it matches no needle, not even "".
_TABLES = (*ENVELOPE_COLUMNS, "header", "body", "fields")
_FTS_SCHEMA = tuple(f"CREATE VIRTUAL TABLE IF NOT EXISTS t_{t} USING fts5(v, {_TOKENIZE})" for t in _TABLES)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS docs(uid INTEGER PRIMARY KEY, seq INTEGER NOT NULL, ok INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS docs_seq ON docs(seq)",
    *_FTS_SCHEMA,
)

# The tables a search column looks in (a match in any of them).
_COLUMNS: dict[str, tuple[str, ...]] = {
    **{c: (c,) for c in ENVELOPE_COLUMNS},
    "text": ("header", "body"),
    "body": ("body",),
}


def fts_path(user_root: str, mailbox_id: int) -> str:
    return os.path.join(user_root, FTS_DIR, f"{mailbox_id}.sqlite")


def remove_fts(user_root: str, mailbox_id: int) -> None:
    """Delete a mailbox's full-text file (and its WAL); nothing to do if there is none."""
    base = fts_path(user_root, mailbox_id)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(base + suffix)


def _phrase(needle: str) -> str:
    return '"' + needle.replace('"', '""') + '"'


def searchable(needle: str) -> bool:
    """Whether the index can answer for this needle (it cannot hold NUL, nor match across the separator)."""
    return "\x00" not in needle and PART_SEPARATOR not in needle


def _stored(doc: TextDocument) -> tuple[list[str | None], str, str, str] | None:
    """The row values of a document, or None when FTS5 cannot hold it exactly (NUL ends its input) or a
    field line holds the separator (the lines could not be told apart)."""
    envelope, header, parts, lines = doc
    if any(PART_SEPARATOR in line for line in lines):
        return None
    body, fields = PART_SEPARATOR.join(parts), PART_SEPARATOR.join(lines)
    if any("\x00" in t for t in (header, body, fields)) or any(t is not None and "\x00" in t for t in envelope):
        return None
    return envelope, header, body, fields


def field_matches(fields: str, name: str, needle: str) -> bool:
    """HEADER ``name`` ``needle`` over a stored ``fields`` string (``name:value`` lines, values case-folded)."""
    wanted = name.lower()
    for line in fields.split(PART_SEPARATOR):
        field, _, value = line.partition(":")
        if field == wanted and needle in value:
            return True
    return False


class TextIndex:
    """One mailbox's full-text file. Thread-safe (one lock); any thread, never the network event loop."""

    def __init__(self, path: str, mailboxid: str, uidvalidity: int) -> None:
        self.path = path
        self.lock = threading.RLock()
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self.conn = self._connect()
        identity = f"{mailboxid}/{uidvalidity}"
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if version not in (0, SCHEMA_VERSION) or self._meta("identity") not in (None, identity):
            log.info("full-text index %s is of another mailbox generation or schema: discarded", path)
            self.conn.close()
            remove_fts(os.path.dirname(os.path.dirname(path)), int(os.path.basename(path).split(".")[0]))
            self.conn = self._connect()
        self._setup()
        if self._meta("identity") is None:
            with self._write() as conn:
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('identity', ?)", (identity,))
                conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', ?)",
                             (secrets.token_hex(8),))
                conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('seq', '0')")
        # Coverage cache (see missing()).
        self._generation = ""
        self._seq = 0
        self._top = 0
        self._missing: set[int] = set()
        self._bad: set[int] = set()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # a cache: a crash loses at most the last additions
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _setup(self) -> None:
        conn = self.conn
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) != SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _SCHEMA:
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _meta(self, key: str) -> str | None:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        except sqlite3.OperationalError:  # a new file: no tables yet
            return None
        return None if row is None else str(row[0])

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    # ------------------------------------------------------------------------------------ writing

    def add(self, docs: Sequence[tuple[int, TextDocument | None]]) -> int:
        """Index these messages (None: could not be read or parsed, scanned from now on); how many were
        indexed. One transaction; a UID already present is replaced."""
        if not docs:
            return 0
        indexed = 0
        with self._write() as conn:
            seq = int(conn.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0]) + 1
            uids = [uid for uid, _ in docs]
            self._delete(conn, uids)
            rows: dict[str, list[tuple[int, str]]] = {t: [] for t in _TABLES}
            doc_rows = []
            for uid, doc in docs:
                row = None if doc is None else _stored(doc)
                doc_rows.append((uid, seq, int(row is not None)))
                if row is not None:
                    values = (*row[0], row[1], row[2], row[3])
                    for table, value in zip(_TABLES, values, strict=True):
                        if value is not None:
                            rows[table].append((uid, value))
                    indexed += 1
            for table, table_rows in rows.items():
                conn.executemany(f"INSERT INTO t_{table}(rowid, v) VALUES (?, ?)", table_rows)
            conn.executemany("INSERT INTO docs(uid, seq, ok) VALUES (?, ?, ?)", doc_rows)
            conn.execute("UPDATE meta SET value=? WHERE key='seq'", (str(seq),))
        return indexed

    @staticmethod
    def _delete(conn: sqlite3.Connection, uids: Sequence[int]) -> None:
        rows = [(u,) for u in uids]
        for table in _TABLES:
            conn.executemany(f"DELETE FROM t_{table} WHERE rowid=?", rows)
        conn.executemany("DELETE FROM docs WHERE uid=?", rows)

    def remove(self, uids: Sequence[int]) -> None:
        """Forget expunged messages (a UID is never reused, so a late removal is only a matter of size)."""
        if uids:
            with self._write() as conn:
                self._delete(conn, uids)

    def purge(self, present: Sequence[int]) -> int:
        """Remove every UID not in ``present`` (expunged by a writer that did not tell us); how many."""
        keep = set(present)
        with self.lock:
            stale = [u for (u,) in self.conn.execute("SELECT uid FROM docs") if u not in keep]
        self.remove(stale)
        return len(stale)

    def clear(self) -> None:
        """Drop every document and start a new generation (``imapd index rebuild-fts``)."""
        with self._write() as conn:
            conn.execute("DELETE FROM docs")
            for table in _TABLES:  # cheaper than deleting row by row (each delete re-tokenizes)
                conn.execute(f"DROP TABLE t_{table}")
            for stmt in _FTS_SCHEMA:
                conn.execute(stmt)
            conn.execute("UPDATE meta SET value=? WHERE key='generation'", (secrets.token_hex(8),))
        with self.lock:
            self.conn.execute("VACUUM")  # give the dropped pages back before the file is filled again

    def optimize(self) -> None:
        """Merge the FTS5 segments (after a bulk build: smaller file, faster queries)."""
        with self._write() as conn:
            for table in _TABLES:
                conn.execute(f"INSERT INTO t_{table}(t_{table}) VALUES ('optimize')")

    # ------------------------------------------------------------------------------------ reading

    def missing(self, uids: Sequence[int]) -> set[int]:
        """The UIDs of ``uids`` (ascending: the mailbox's UID array) the index cannot answer for.

        Kept between calls: new UIDs only ever come at the end, and documents added since the last call
        (by any process) are read by their ``seq``; a rebuild changes the generation and starts over.
        The returned set may hold UIDs that were expunged meanwhile (callers test membership only).
        """
        with self.lock:
            conn = self.conn
            conn.execute("BEGIN")
            try:
                generation = self._meta("generation") or ""
                seq = int(self._meta("seq") or 0)
                if generation != self._generation:
                    self._generation, self._seq, self._top, self._missing = generation, seq, 0, set()
                    indexed = {u for (u,) in conn.execute("SELECT uid FROM docs WHERE ok=1")}
                    self._bad = {u for (u,) in conn.execute("SELECT uid FROM docs WHERE ok=0")}
                    self._missing = {u for u in uids if u not in indexed}
                    self._top = uids[-1] if uids else 0
                    return self._missing
                if seq != self._seq:
                    for uid, ok in conn.execute("SELECT uid, ok FROM docs WHERE seq>?", (self._seq,)):
                        if ok:
                            self._missing.discard(uid)
                        else:
                            self._bad.add(uid)
                            if uid <= self._top:
                                self._missing.add(uid)
                    self._seq = seq
                if uids and uids[-1] > self._top:
                    tail = list(uids[bisect.bisect_right(uids, self._top):])
                    indexed = {u for (u,) in conn.execute("SELECT uid FROM docs WHERE ok=1 AND uid>=?",
                                                          (tail[0],))}
                    self._missing.update(u for u in tail if u not in indexed)
                    self._top = uids[-1]
                return self._missing
            finally:
                conn.execute("COMMIT")

    def pending(self) -> bool:
        """Whether the last :meth:`missing` held messages the backfill could still index."""
        with self.lock:
            bad = self._bad
            return any(u not in bad for u in self._missing)

    def unindexed(self, uids: Sequence[int]) -> list[int]:
        """UIDs of ``uids`` with no document at all (not even an unreadable one): the backfill's work."""
        if not uids:
            return []
        with self.lock:
            known = {u for (u,) in self.conn.execute("SELECT uid FROM docs WHERE uid BETWEEN ? AND ?",
                                                     (min(uids), max(uids)))}
        return [u for u in uids if u not in known]

    def count(self) -> tuple[int, int]:
        """``(indexed, unreadable)`` documents."""
        with self.lock:
            row = self.conn.execute("SELECT total(ok), count(*) - total(ok) FROM docs").fetchone()
        return int(row[0]), int(row[1])

    def search(self, column: str, needle: str, field: str | None = None) -> set[int]:
        """UIDs of the indexed messages whose ``column`` contains ``needle`` (already case-folded).

        ``column``: one of :data:`ENVELOPE_COLUMNS` (NULL, i.e. no such field, never matches), ``text``
        (header or body), ``body``, or ``fields`` with ``field`` the header name. The caller checks
        :func:`searchable` first.
        """
        if column == "fields":
            assert field is not None
            return self._search_fields(field, needle)
        out: set[int] = set()
        with self.lock:
            for table in _COLUMNS[column]:
                out.update(map(_first, self._rows(table, needle, "rowid").fetchall()))
        return out

    def _rows(self, table: str, needle: str, cols: str) -> sqlite3.Cursor:
        """Rows of ``t_<table>`` whose value contains ``needle``: a trigram phrase, or instr() when short."""
        if len(needle) >= MIN_TRIGRAM:
            return self.conn.execute(f"SELECT {cols} FROM t_{table} WHERE t_{table} MATCH ?", (_phrase(needle),))
        return self.conn.execute(f"SELECT {cols} FROM t_{table} WHERE instr(v, ?) > 0", (needle,))

    def _search_fields(self, field: str, needle: str) -> set[int]:
        with self.lock:
            return {uid for uid, fields in self._rows("fields", needle, "rowid, v")
                    if field_matches(fields, field, needle)}
