"""The SQL of one mailbox: every statement on its ``messages``, ``keywords`` and ``expunged`` rows.

Only this module writes message rows (``INSERT INTO messages`` is :func:`insert_messages`, used by APPEND,
COPY/MOVE and the Maildir reconcile alike) and allocates keyword numbers (:class:`KeywordTable`). Callers
hold the user's index lock (``UserIndex.lock``) or are inside ``UserIndex.write()``; nothing here touches
message files or in-memory arrays.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from imapd.store.errors import LimitExceeded, NoSuchMailbox
from imapd.store.flags import DELETED, MAX_KEYWORDS
from imapd.store.threadids import thread_ids

__all__ = [
    "IndexDelta",
    "KeywordTable",
    "MessageRow",
    "changes_since",
    "insert_messages",
    "new_emailid",
    "record_expunges",
    "select_rows",
]

_IN_LIMIT = 900

MessageRow = tuple[int, int, str, str, int, int, int, int, int, str, bytes | None]
"""``(mailbox, uid, fname, base, flags, keywords, modseq, internaldate, size, emailid, meta)``."""


def new_emailid() -> str:
    return "M" + secrets.token_hex(12)


class IndexDelta(msgspec.Struct):
    """What the index holds for a mailbox beyond a given MODSEQ: the input of ``MailboxState.apply``.

    Read under the index lock (a worker thread may do it); applying it to the arrays needs no SQL.
    """

    since: int
    highestmodseq: int
    uidnext: int
    rows: list[tuple[int, int, int, int]]
    """``(uid, flags, keywords, modseq)`` with MODSEQ > ``since``, ascending UID."""
    gone: list[int] | None
    """UIDs expunged after ``since``; None when the history does not reach back (see ``present``)."""
    present: set[int] | None
    """Every UID in the index, only when ``gone`` is None."""
    keywords: dict[int, str]
    deleted: bool = False


def changes_since(conn: sqlite3.Connection, mailbox_id: int, since: int, *, known_keywords: int = -1) -> IndexDelta:
    """Read what changed after ``since`` in one read transaction (or the caller's)."""
    outer = conn.in_transaction
    if not outer:
        conn.execute("BEGIN")
    try:
        row = conn.execute("SELECT highestmodseq, uidnext, history_floor FROM mailboxes WHERE id=?",
                           (mailbox_id,)).fetchone()
        if row is None:
            return IndexDelta(since, since, 0, [], [], None, {}, deleted=True)
        hms, uidnext, floor = (int(x) for x in row)
        kwnames = dict(conn.execute("SELECT idx, name FROM keywords WHERE mailbox=?", (mailbox_id,)))
        if hms == since:
            return IndexDelta(since, hms, uidnext, [], [], None, kwnames)
        # INDEXED BY: left alone, SQLite prefers the covering messages_state index and walks every row of
        # the mailbox (3.8 ms at 100k messages, after every write); the MODSEQ index reads only the changes.
        rows = sorted(conn.execute(
            "SELECT uid, flags, keywords, modseq FROM messages INDEXED BY messages_modseq "
            "WHERE mailbox=? AND modseq>?", (mailbox_id, since)))
        gone: list[int] | None = None
        present: set[int] | None = None
        if since >= floor:
            gone = [u for (u,) in conn.execute("SELECT uid FROM expunged WHERE mailbox=? AND modseq>?",
                                                (mailbox_id, since))]
        else:
            present = {u for (u,) in conn.execute("SELECT uid FROM messages WHERE mailbox=?", (mailbox_id,))}
        return IndexDelta(since, hms, uidnext, rows, gone, present, kwnames)
    finally:
        if not outer:
            conn.execute("COMMIT")


class MailboxLoad(msgspec.Struct):
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    guid: str
    special_use: str | None
    rows: list[tuple[int, int, int, int]]
    """``(uid, modseq, flags, keywords)`` in UID order."""
    keywords: dict[int, str]


def load_mailbox(conn: sqlite3.Connection, mailbox_id: int) -> MailboxLoad | None:
    """Everything an open mailbox keeps in memory, in one read transaction (None: no such mailbox)."""
    outer = conn.in_transaction
    if not outer:
        conn.execute("BEGIN")
    try:
        row = conn.execute("SELECT uidvalidity, uidnext, highestmodseq, guid, special_use FROM mailboxes WHERE id=?",
                           (mailbox_id,)).fetchone()
        if row is None:
            return None
        rows = conn.execute("SELECT uid, modseq, flags, keywords FROM messages WHERE mailbox=? ORDER BY uid",
                            (mailbox_id,)).fetchall()
        kwnames = dict(conn.execute("SELECT idx, name FROM keywords WHERE mailbox=?", (mailbox_id,)))
    finally:
        if not outer:
            conn.execute("COMMIT")
    return MailboxLoad(int(row[0]), int(row[1]), int(row[2]), str(row[3]), row[4], rows, kwnames)


def uids_changed_since(conn: sqlite3.Connection, mailbox_id: int, modseq: int) -> list[int]:
    """UIDs with MODSEQ > ``modseq``, ascending (through the MODSEQ index: cost of the changes)."""
    return sorted(u for (u,) in conn.execute("SELECT uid FROM messages WHERE mailbox=? AND modseq>?",
                                              (mailbox_id, modseq)))


def expunged_since(conn: sqlite3.Connection, mailbox_id: int, modseq: int) -> tuple[list[int], bool]:
    """UIDs expunged after ``modseq`` (ascending), and whether the history reaches back that far."""
    row = conn.execute("SELECT history_floor FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
    floor = row[0] if row else 0
    uids = sorted(u for (u,) in conn.execute("SELECT uid FROM expunged WHERE mailbox=? AND modseq>?",
                                              (mailbox_id, modseq)))
    return uids, modseq >= floor


def total_size(conn: sqlite3.Connection, mailbox_id: int) -> int:
    return int(conn.execute("SELECT total(size) FROM messages WHERE mailbox=?", (mailbox_id,)).fetchone()[0])


def size_totals(conn: sqlite3.Connection, mailbox_id: int) -> tuple[int, int, int]:
    """``(size of all messages, number of \\Deleted ones, their size)`` in one pass over the rows."""
    row = conn.execute("SELECT total(size), total((flags & ?) != 0), total(CASE WHEN flags & ? THEN size END) "
                       "FROM messages WHERE mailbox=?", (DELETED, DELETED, mailbox_id)).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def message_count(conn: sqlite3.Connection, mailbox_id: int) -> int:
    return int(conn.execute("SELECT count(*) FROM messages WHERE mailbox=?", (mailbox_id,)).fetchone()[0])


def fname_of_base(conn: sqlite3.Connection, mailbox_id: int, base: str) -> str | None:
    row = conn.execute("SELECT fname FROM messages WHERE mailbox=? AND base=?", (mailbox_id, base)).fetchone()
    return None if row is None else str(row[0])


def store_metadata(conn: sqlite3.Connection, mailbox_id: int, uid: int, blob: bytes) -> None:
    conn.execute("UPDATE messages SET meta=? WHERE mailbox=? AND uid=?", (blob, mailbox_id, uid))


def uidlist_source(conn: sqlite3.Connection, mailbox_id: int) -> tuple[int, int, str, list[tuple[int, str]]] | None:
    """``(uidvalidity, uidnext, guid, [(uid, base), ...])``: what ``dovecot-uidlist`` is written from."""
    row = conn.execute("SELECT uidvalidity, uidnext, guid FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
    if row is None:
        return None
    entries = conn.execute("SELECT uid, base FROM messages WHERE mailbox=? ORDER BY uid", (mailbox_id,)).fetchall()
    return int(row[0]), int(row[1]), str(row[2]), entries


def mailbox_identity(conn: sqlite3.Connection, mailbox_id: int) -> tuple[int, str] | None:
    """``(uidvalidity, guid)`` of a mailbox."""
    row = conn.execute("SELECT uidvalidity, guid FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def select_rows(conn: sqlite3.Connection, mailbox_id: int, uids: Iterable[int] | None, cols: str,
                pace: Callable[[], None] | None = None) -> list[Any]:
    """Rows ``(uid, *cols)`` of the given UIDs that exist (None: all), ascending UID, in one query.
    ``pace`` (:class:`imapd.store.pacing.GilPacer`) is called between batches of rows, for big reads."""
    if uids is None:
        return _fetch(conn.execute(f"SELECT uid, {cols} FROM messages WHERE mailbox=? ORDER BY uid",
                                   (mailbox_id,)), pace)
    wanted = sorted(set(uids))
    if not wanted:
        return []
    if len(wanted) <= _IN_LIMIT:
        marks = ",".join("?" * len(wanted))
        return conn.execute(f"SELECT uid, {cols} FROM messages WHERE mailbox=? AND uid IN ({marks}) ORDER BY uid",
                            (mailbox_id, *wanted)).fetchall()
    want = set(wanted)
    rows = _fetch(conn.execute(f"SELECT uid, {cols} FROM messages WHERE mailbox=? AND uid BETWEEN ? AND ? "
                               "ORDER BY uid", (mailbox_id, wanted[0], wanted[-1])), pace)
    return [r for r in rows if r[0] in want]


_BATCH = 1024
"""Rows per fetchmany/executemany call when a long statement is paced."""


def _fetch(cursor: sqlite3.Cursor, pace: Callable[[], None] | None) -> list[Any]:
    if pace is None:
        return cursor.fetchall()
    rows: list[Any] = []
    while batch := cursor.fetchmany(_BATCH):
        rows += batch
        pace()
    return rows


def _executemany(conn: sqlite3.Connection, sql: str, params: list[Any], pace: Callable[[], None] | None) -> None:
    if pace is None:
        conn.executemany(sql, params)
        return
    for i in range(0, len(params), _BATCH):
        conn.executemany(sql, params[i:i + _BATCH])
        pace()


def mailbox_counters(conn: sqlite3.Connection, mailbox_id: int, name: str) -> tuple[int, int]:
    """``(uidnext, highestmodseq)`` of a mailbox inside a write; NoSuchMailbox if it has gone."""
    row = conn.execute("SELECT uidnext, highestmodseq FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
    if row is None:
        raise NoSuchMailbox(f"mailbox {name!r} does not exist")
    return int(row[0]), int(row[1])


def insert_messages(conn: sqlite3.Connection, rows: Sequence[MessageRow], *, savedate: float | None = None) -> None:
    """The one ``INSERT INTO messages`` (APPEND, COPY/MOVE, reconcile).

    Every row gets the RFC 8514 save date ``savedate`` (default: now): the time the message entered this
    mailbox, whether APPENDed, copied or moved in (a copy is saved anew), or found in the Maildir; and
    its RFC 8474 THREADID (:mod:`imapd.store.threadids`).
    """
    saved = int(time.time() if savedate is None else savedate)
    threads = thread_ids(conn, [r[10] for r in rows])
    conn.executemany(
        "INSERT INTO messages(mailbox, uid, fname, base, flags, keywords, modseq, internaldate, size, emailid, meta,"
        f" threadid, savedate) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,{saved})",
        [(*r, t) for r, t in zip(rows, threads, strict=True)])


def update_flags(conn: sqlite3.Connection, updates: Sequence[tuple[int, int, int, str, int, int]]) -> None:
    """``(flags, keywords, modseq, fname, mailbox, uid)`` per message."""
    conn.executemany("UPDATE messages SET flags=?, keywords=?, modseq=?, fname=? WHERE mailbox=? AND uid=?", updates)


def rename_files(conn: sqlite3.Connection, renamed: Sequence[tuple[str, int, int]]) -> None:
    """``(fname, mailbox, uid)``: a file renamed without a flag change (e.g. a ``,W=`` field added)."""
    conn.executemany("UPDATE messages SET fname=? WHERE mailbox=? AND uid=?", renamed)


def drop_mailbox(conn: sqlite3.Connection, mailbox_id: int) -> None:
    """Every row of a mailbox: messages, expunge history, keywords, the mailbox itself."""
    for table in ("messages", "expunged", "keywords"):  # threads stay: a Message-ID keeps its thread
        conn.execute(f"DELETE FROM {table} WHERE mailbox=?", (mailbox_id,))
    conn.execute("DELETE FROM mailboxes WHERE id=?", (mailbox_id,))


def set_counters(conn: sqlite3.Connection, mailbox_id: int, *, highestmodseq: int, uidnext: int | None = None) -> None:
    if uidnext is None:
        conn.execute("UPDATE mailboxes SET highestmodseq=? WHERE id=?", (highestmodseq, mailbox_id))
    else:
        conn.execute("UPDATE mailboxes SET uidnext=?, highestmodseq=? WHERE id=?", (uidnext, highestmodseq, mailbox_id))


def record_expunges(conn: sqlite3.Connection, mailbox_id: int, uids: list[int], modseq: int, limit: int,
                    pace: Callable[[], None] | None = None) -> None:
    """Delete message rows, add expunge history, trim history to ``limit`` rows (oldest modseqs first)."""
    _executemany(conn, "DELETE FROM messages WHERE mailbox=? AND uid=?", [(mailbox_id, u) for u in uids], pace)
    _executemany(conn, "INSERT OR REPLACE INTO expunged(mailbox, uid, modseq) VALUES (?, ?, ?)",
                 [(mailbox_id, u, modseq) for u in uids], pace)
    row = conn.execute("SELECT modseq FROM expunged WHERE mailbox=? ORDER BY modseq DESC LIMIT 1 OFFSET ?",
                       (mailbox_id, limit)).fetchone()
    if row is not None:
        cut = int(row[0])
        conn.execute("DELETE FROM expunged WHERE mailbox=? AND modseq<=?", (mailbox_id, cut))
        conn.execute("UPDATE mailboxes SET history_floor=max(history_floor, ?) WHERE id=?", (cut, mailbox_id))


class KeywordTable:
    """Keyword name <-> bit number of one mailbox: the one place numbers are allocated.

    Numbers 0..25 are the file-name letters a..z of ``dovecot-keywords``; after a new allocation
    ``on_added(names)`` is called (the owner rewrites that file). Matching is case-insensitive (RFC 3501).
    """

    def __init__(self, conn: sqlite3.Connection, mailbox_id: int, name: str,
                 on_added: Callable[[dict[int, str]], None] | None = None) -> None:
        self.conn = conn
        self.mailbox_id = mailbox_id
        self.name = name
        self.on_added = on_added
        self.names: dict[int, str] = dict(conn.execute("SELECT idx, name FROM keywords WHERE mailbox=?",
                                                       (mailbox_id,)))
        self._lower = {v.lower(): k for k, v in self.names.items()}

    def bits(self, names: Iterable[str], *, create: bool = True) -> int:
        """Bits for keyword names, allocating numbers for new ones if ``create``; LimitExceeded when full."""
        out = 0
        added = False
        for kw in names:
            idx = self._lower.get(kw.lower())
            if idx is None:
                if not create:
                    continue
                idx = next((i for i in range(MAX_KEYWORDS) if i not in self.names), None)
                if idx is None:
                    raise LimitExceeded(f"mailbox {self.name!r} has too many keywords")
                self.conn.execute("INSERT INTO keywords(mailbox, idx, name) VALUES (?, ?, ?)",
                                  (self.mailbox_id, idx, kw))
                self.names[idx] = kw
                self._lower[kw.lower()] = idx
                added = True
            out |= 1 << idx
        if added and self.on_added is not None:
            self.on_added(self.names)
        return out

    def names_of(self, bits: int) -> list[str]:
        return [self.names[i] for i in range(MAX_KEYWORDS) if bits >> i & 1 and i in self.names]
