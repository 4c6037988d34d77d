"""The RFC 8970 preview cache: one row per message whose preview was computed, in the user's index.

Why a table of its own rather than a column of ``messages`` or a field of the metadata blob: a preview is
computed on the first ``FETCH PREVIEW``, not at delivery (most messages are never previewed), and adding
it must not rewrite or re-parse existing rows. ``CREATE TABLE IF NOT EXISTS`` is the whole migration of an
older index (schema version 3); a trigger drops a message's preview with its row, so expunges, MOVE and
mailbox deletion need no code here. The text itself is made by ``imapd.mime.preview`` (the store knows no
MIME): callers pass the function that computes it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

__all__ = ["create_schema", "load_previews", "store_previews"]

_IN_LIMIT = 900

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS previews(mailbox INTEGER NOT NULL, uid INTEGER NOT NULL, "
    "text TEXT NOT NULL, PRIMARY KEY(mailbox, uid)) WITHOUT ROWID",
    "CREATE TRIGGER IF NOT EXISTS previews_message_gone AFTER DELETE ON messages BEGIN "
    "DELETE FROM previews WHERE mailbox = OLD.mailbox AND uid = OLD.uid; END",
)


def create_schema(conn: sqlite3.Connection) -> None:
    """The previews table and its cleanup trigger (inside the index's schema transaction)."""
    for stmt in _SCHEMA:
        conn.execute(stmt)


def load_previews(conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int]) -> dict[int, str]:
    """``{uid: preview}`` of the given UIDs whose preview is cached."""
    out: dict[int, str] = {}
    wanted = sorted(set(uids))
    for i in range(0, len(wanted), _IN_LIMIT):
        chunk = wanted[i : i + _IN_LIMIT]
        marks = ",".join("?" * len(chunk))
        out.update(conn.execute(f"SELECT uid, text FROM previews WHERE mailbox=? AND uid IN ({marks})",
                                (mailbox_id, *chunk)))
    return out


def store_previews(conn: sqlite3.Connection, mailbox_id: int, previews: Iterable[tuple[int, str]]) -> None:
    """Cache computed previews (inside a write transaction); a message expunged meanwhile gets no row."""
    conn.executemany("INSERT OR REPLACE INTO previews(mailbox, uid, text) SELECT ?, ?, ? "
                     "WHERE EXISTS(SELECT 1 FROM messages WHERE mailbox=? AND uid=?)",
                     [(mailbox_id, uid, text, mailbox_id, uid) for uid, text in previews])
