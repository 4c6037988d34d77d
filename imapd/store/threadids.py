"""RFC 8474 THREADID: a thread id given to each message once, when it is stored, and never changed.

A per-user table maps every Message-ID the index has seen, the message's own and those it references
(In-Reply-To, References), to a thread id. A new message takes the thread of the first of its
references (root first, as References lists them), then of its own Message-ID, that the table knows;
otherwise a new id. Then every one of those Message-IDs that the table does not know yet is entered
with the message's thread, so a reply that arrives before its parent, and the parent after it, and
siblings that reference the same root all share one id. Two threads that a later message links are
not merged: ids never change (RFC 8474 5.2 wants them stable). A message whose metadata is not parsed
(a large batch found in the Maildir) or that has neither Message-ID nor references gets NULL (FETCH
THREADID NIL) or a thread of its own. COPY/MOVE recompute the same id from the same Message-IDs.

SQL only, inside the caller's write transaction; the cached metadata blob is read without ``imapd.mime``.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence

import msgspec

__all__ = ["new_threadid", "thread_ids"]


class _ThreadFields(msgspec.Struct, array_like=True):
    """The trailing fields of ``imapd.mime.MessageMetadata`` (the leading eleven are skipped undecoded)."""

    f0: msgspec.Raw
    f1: msgspec.Raw
    f2: msgspec.Raw
    f3: msgspec.Raw
    f4: msgspec.Raw
    f5: msgspec.Raw
    f6: msgspec.Raw
    f7: msgspec.Raw
    f8: msgspec.Raw
    f9: msgspec.Raw
    f10: msgspec.Raw
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]


_DECODER = msgspec.msgpack.Decoder(_ThreadFields)
_LOOKUP_CHUNK = 900
"""Message-IDs per ``IN (...)`` query (below SQLite's default limit on bound parameters)."""
_MAX_IDS = 64
"""Message-IDs looked at per message (a References header can be very long; the root is first)."""


def new_threadid() -> str:
    return "T" + secrets.token_hex(8)


def _message_ids(blob: bytes | None) -> list[str] | None:
    """References (or In-Reply-To) then the own Message-ID, deduplicated; None when unknown."""
    if blob is None:
        return None
    try:
        fields = _DECODER.decode(blob)
    except msgspec.DecodeError:
        return None
    ids = list(dict.fromkeys([*(fields.references or fields.in_reply_to)[:_MAX_IDS],
                              *([fields.message_id] if fields.message_id else [])]))
    return ids


def thread_ids(conn: sqlite3.Connection, blobs: Sequence[bytes | None]) -> list[str | None]:
    """The thread id of each message about to be inserted (in order), recording its Message-IDs.

    One lookup and one insert for the whole batch (an APPEND, a COPY of many, a Maildir scan), not per
    message: messages of the batch see the threads of the ones before them through ``known``."""
    per_message = [_message_ids(blob) for blob in blobs]
    wanted = list(dict.fromkeys(i for ids in per_message if ids for i in ids))
    known: dict[str, str] = {}
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        chunk = wanted[start : start + _LOOKUP_CHUNK]
        marks = ",".join("?" * len(chunk))
        known.update(conn.execute(f"SELECT msgid, threadid FROM threads WHERE msgid IN ({marks})", chunk))
    added: list[tuple[str, str]] = []
    out: list[str | None] = []
    for ids in per_message:
        if ids is None:
            out.append(None)
            continue
        thread = next((known[i] for i in ids if i in known), None) or new_threadid()
        for i in ids:
            if i not in known:
                known[i] = thread
                added.append((i, thread))
        out.append(thread)
    if added:
        conn.executemany("INSERT OR IGNORE INTO threads(msgid, threadid) VALUES (?, ?)", added)
    return out
