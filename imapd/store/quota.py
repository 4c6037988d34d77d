"""Per-user quota (RFC 9208 STORAGE and MESSAGE): the limits, the usage kept in the index, the check.

The usage is one row of ``quota_usage`` that SQLite triggers on ``messages`` keep current: every writer
(APPEND, COPY/MOVE, EXPUNGE, the Maildir reconcile that finds an MDA's delivery, an index rebuild) goes
through that table, so the totals never drift and reading them costs one row, not a scan. A write that
adds messages calls :func:`enforce` inside its ``BEGIN IMMEDIATE`` transaction: writers of the same user,
in any process, are serialized there, so two concurrent APPENDs cannot both pass the last free KiB.

A user has one quota root, ``""``, which covers all their mailboxes. Deliveries the store did not make
(a message dropped into ``new/`` by another MDA) are counted when found but never refused: the file is
already there. So usage can exceed a limit; the next APPEND/COPY is then refused until mail is expunged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from imapd.store.errors import OverQuota

if TYPE_CHECKING:
    from imapd.store.users import PasswdFile

__all__ = ["QuotaLimits", "QuotaUsage", "create_schema", "enforce", "limits_from_fields", "passwd_limits", "read_usage"]

STORAGE_FIELD = "quota_storage"
"""passwd-file extra field: the STORAGE limit in KiB (0: unlimited)."""
MESSAGES_FIELD = "quota_messages"
"""passwd-file extra field: the MESSAGE limit (0: unlimited)."""
FIELDS = (STORAGE_FIELD, MESSAGES_FIELD)


class QuotaLimits(msgspec.Struct, frozen=True):
    storage_kib: int | None = None
    """None: no STORAGE limit."""
    messages: int | None = None
    """None: no MESSAGE limit."""

    @property
    def unlimited(self) -> bool:
        return self.storage_kib is None and self.messages is None


class QuotaUsage(msgspec.Struct, frozen=True):
    messages: int
    storage_bytes: int

    @property
    def storage_kib(self) -> int:
        """RFC 9208 counts STORAGE in units of 1024 octets; a started unit counts."""
        return (self.storage_bytes + 1023) // 1024


UNLIMITED = QuotaLimits()


def _limit(text: str | None) -> int | None:
    if text is None or text.strip() == "":
        return None
    value = int(text)
    if value < 0:
        raise ValueError(f"quota limit must be >= 0, not {value}")
    return value or None


_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _dovecot_rules(extra: dict[str, str]) -> dict[str, int | None]:
    """Limits from Dovecot's ``userdb_quota_rule*=*:storage=1G`` / ``*:messages=N`` fields (a passwd-file
    brought over from Dovecot): ``storage`` in KiB unless suffixed (b/k/M/G/T), ``bytes`` in octets.
    Rules for one mailbox (``Trash:ignore``) and relative (``%``) limits are not ours to follow."""
    out: dict[str, int | None] = {}
    for key in sorted(k for k in extra if k.startswith("userdb_quota_rule")):
        root, _, rule = extra[key].partition(":")
        if root != "*":
            continue
        for item in rule.split(":"):
            name, _, value = item.partition("=")
            name, value = name.strip().lower(), value.strip()
            if name not in ("storage", "bytes", "messages") or not value or value.endswith("%"):
                continue
            unit = 1024 if name == "storage" else 1
            if value[-1].lower() in _UNITS and name != "messages":
                unit, value = _UNITS[value[-1].lower()], value[:-1]
            if not value.isdigit():
                continue
            number = int(value) * unit
            if name == "messages":
                out["messages"] = number or None
            else:
                out["storage_kib"] = (number + 1023) // 1024 or None
    return out


def limits_from_fields(extra: dict[str, str], default: QuotaLimits) -> QuotaLimits:
    """A user's limits: their passwd-file fields where present (0 = unlimited), else Dovecot's
    ``userdb_quota_rule`` fields, else ``default``.

    A malformed field falls back to the default rather than locking the user out of their mail."""
    out = msgspec.structs.replace(default, **_dovecot_rules(extra))
    for field, attr in ((STORAGE_FIELD, "storage_kib"), (MESSAGES_FIELD, "messages")):
        if field in extra:
            try:
                out = msgspec.structs.replace(out, **{attr: _limit(extra[field])})
            except ValueError:
                continue
    return out


def passwd_limits(users: PasswdFile, default: QuotaLimits) -> Callable[[str], QuotaLimits]:
    """``Store.quota_limits`` for users of a passwd file: their entry's fields, else ``default``. Read at
    each check (two stat() calls while the file is unchanged), so ``imapd user quota`` acts at once."""

    def limits(user: str) -> QuotaLimits:
        record = users.get(user)
        return default if record is None else limits_from_fields(record.extra, default)
    return limits


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS quota_usage(id INTEGER PRIMARY KEY CHECK (id = 0), "
    "messages INTEGER NOT NULL, storage INTEGER NOT NULL)",
    # An index made before the table existed: its messages are counted once, in the creating transaction.
    "INSERT OR IGNORE INTO quota_usage(id, messages, storage) SELECT 0, count(*), total(size) FROM messages",
    "CREATE TRIGGER IF NOT EXISTS quota_usage_insert AFTER INSERT ON messages BEGIN "
    "UPDATE quota_usage SET messages = messages + 1, storage = storage + NEW.size WHERE id = 0; END",
    "CREATE TRIGGER IF NOT EXISTS quota_usage_delete AFTER DELETE ON messages BEGIN "
    "UPDATE quota_usage SET messages = messages - 1, storage = storage - OLD.size WHERE id = 0; END",
    "CREATE TRIGGER IF NOT EXISTS quota_usage_resize AFTER UPDATE OF size ON messages BEGIN "
    "UPDATE quota_usage SET storage = storage - OLD.size + NEW.size WHERE id = 0; END",
)


def create_schema(conn: sqlite3.Connection) -> None:
    """The usage table and its triggers (inside the index's schema transaction; idempotent)."""
    for stmt in _SCHEMA:
        conn.execute(stmt)


def read_usage(conn: sqlite3.Connection) -> QuotaUsage:
    row = conn.execute("SELECT messages, storage FROM quota_usage WHERE id = 0").fetchone()
    if row is None:
        return QuotaUsage(0, 0)
    return QuotaUsage(int(row[0]), int(row[1]))


def enforce(conn: sqlite3.Connection, limits: QuotaLimits, *, messages: int, storage_bytes: int) -> None:
    """Raise :class:`OverQuota` if adding ``messages`` of ``storage_bytes`` in all would pass a limit.

    Call it inside the write transaction that adds them, so the usage read is the one the write changes.
    """
    if limits.unlimited or (messages <= 0 and storage_bytes <= 0):
        return
    usage = read_usage(conn)
    if limits.messages is not None and messages > 0 and usage.messages + messages > limits.messages:
        raise OverQuota("MESSAGE", usage.messages, limits.messages,
                        f"over quota: {usage.messages} of {limits.messages} messages used")
    if limits.storage_kib is not None and storage_bytes > 0:
        after = QuotaUsage(usage.messages + messages, usage.storage_bytes + storage_bytes)
        if after.storage_kib > limits.storage_kib:
            raise OverQuota("STORAGE", usage.storage_kib, limits.storage_kib,
                            f"over quota: {usage.storage_kib} of {limits.storage_kib} KiB used, "
                            f"{(storage_bytes + 1023) // 1024} KiB more do not fit")
