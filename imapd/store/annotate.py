"""Server and mailbox annotations (RFC 5464 METADATA entries), kept in the user's index.

Rows are keyed by mailbox id (0 for the server's own entries), so they follow a RENAME without being
touched and a trigger drops them with the mailbox row (DELETE, a folder removed on disk). Entry names
are case-insensitive (RFC 5464 3.2) and stored lower-cased. ``/private`` and ``/shared`` are separate
names but both live in the one user's index: a mailbox here has exactly one user, so "shared" entries
are shared with nobody else.

Named apart from :mod:`imapd.store.metadata`, the cache of parsed message metadata.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence

import msgspec

from imapd.store.errors import StoreError

__all__ = [
    "SERVER",
    "AnnotationLimits",
    "AnnotationTooLarge",
    "InvalidEntryName",
    "TooManyAnnotations",
    "create_schema",
    "get_entries",
    "set_entries",
    "valid_entry_name",
]

SERVER = 0
"""The mailbox id of server entries (``GETMETADATA ""``); real mailbox ids start at 1."""

# RFC 5464 3.2: starts with /private or /shared, no "*" or "%", no "//", no trailing "/", no controls.
# "/private" and "/shared" alone may be read (with DEPTH), not set.
_ENTRY = re.compile(r"/(private|shared)(/[\x21-\x24\x26-\x29\x2b-\x2e\x30-\x7e]+)*")


class AnnotationLimits(msgspec.Struct, frozen=True):
    max_value_size: int = 65536
    """Largest value in octets (``[METADATA MAXSIZE n]`` beyond it)."""
    max_entries: int = 256
    """Entries per mailbox, and for the server (``[METADATA TOOMANY]`` beyond it)."""


class InvalidEntryName(StoreError):
    code = "CANNOT"


class AnnotationTooLarge(StoreError):
    """A value over ``max_value_size``; the session answers ``NO [METADATA MAXSIZE n]``."""

    code = "METADATA"

    def __init__(self, max_size: int) -> None:
        super().__init__(f"annotation values are limited to {max_size} octets")
        self.max_size = max_size


class TooManyAnnotations(StoreError):
    """More entries than ``max_entries``; the session answers ``NO [METADATA TOOMANY]``."""

    code = "METADATA"

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} annotations per mailbox")
        self.limit = limit


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS annotations(mailbox INTEGER NOT NULL, name TEXT NOT NULL, "
    "value BLOB NOT NULL, PRIMARY KEY(mailbox, name)) WITHOUT ROWID",
    "CREATE TRIGGER IF NOT EXISTS annotations_mailbox_gone AFTER DELETE ON mailboxes BEGIN "
    "DELETE FROM annotations WHERE mailbox = OLD.id; END",
)


def create_schema(conn: sqlite3.Connection) -> None:
    """The annotations table and its cleanup trigger (inside the index's schema transaction)."""
    for stmt in _SCHEMA:
        conn.execute(stmt)


def valid_entry_name(name: str) -> bool:
    return _ENTRY.fullmatch(name) is not None


def _check_names(names: Iterable[str]) -> None:
    for name in names:
        if not valid_entry_name(name.lower()):
            raise InvalidEntryName(f"invalid entry name {name!r}")


def get_entries(conn: sqlite3.Connection, mailbox_id: int, names: Sequence[str],
                depth: int | None) -> list[tuple[str, bytes]]:
    """``(name, value)`` for each named entry that exists and, with ``depth`` 1 or None (infinity), its
    children or all descendants; in name order, each entry once."""
    _check_names(names)
    found: dict[str, bytes] = {}
    for entry in dict.fromkeys(n.lower() for n in names):
        row = conn.execute("SELECT value FROM annotations WHERE mailbox=? AND name=?", (mailbox_id, entry)).fetchone()
        if row is not None:
            found[entry] = bytes(row[0])
        if depth == 0:
            continue
        # Descendants sort between "entry/" and "entry0" ("0" follows "/" in ASCII): one index range.
        for name, value in conn.execute("SELECT name, value FROM annotations WHERE mailbox=? AND name>? AND name<?",
                                        (mailbox_id, entry + "/", entry + "0")):
            if depth is None or "/" not in name[len(entry) + 1:]:
                found[name] = bytes(value)
    return sorted(found.items())


def set_entries(conn: sqlite3.Connection, mailbox_id: int, entries: Sequence[tuple[str, bytes | None]],
                limits: AnnotationLimits) -> None:
    """Set (a value) or remove (None) each entry; all or nothing (call inside a write transaction)."""
    _check_names(n for n, _ in entries)
    for name, _ in entries:
        if name.count("/") < 2:
            raise InvalidEntryName(f"{name!r} is a namespace, not an entry")
    for _, value in entries:
        if value is not None and len(value) > limits.max_value_size:
            raise AnnotationTooLarge(limits.max_value_size)
    for name, value in entries:
        if value is None:
            conn.execute("DELETE FROM annotations WHERE mailbox=? AND name=?", (mailbox_id, name.lower()))
        else:
            conn.execute("INSERT INTO annotations(mailbox, name, value) VALUES (?, ?, ?) "
                         "ON CONFLICT(mailbox, name) DO UPDATE SET value=excluded.value",
                         (mailbox_id, name.lower(), value))
    count = int(conn.execute("SELECT count(*) FROM annotations WHERE mailbox=?", (mailbox_id,)).fetchone()[0])
    if count > limits.max_entries:
        raise TooManyAnnotations(limits.max_entries)
