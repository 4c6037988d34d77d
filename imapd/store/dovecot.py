"""Dovecot's Maildir side files, read on first sight and kept up to date, so the Maildir describes itself.

``dovecot-uidlist`` version 3: a header ``3 V<uidvalidity> N<nextuid> G<guid> ...`` then one line per
message ``<uid> [<ext fields>] :<filename>``. Version 1: header ``1 <uidvalidity> <nextuid>`` and lines
``<uid> <filename>``. ``dovecot-keywords``: lines ``<n> <keyword>``; keyword ``n`` is file-name letter
``chr(ord('a') + n)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
from collections.abc import Iterable

import msgspec

from imapd.store import mailindex

__all__ = [
    "UidList",
    "compact_uidlist",
    "read_keywords",
    "read_uidlist",
    "record_uids",
    "uidlist_head",
    "write_keywords",
    "write_uidlist",
]

log = logging.getLogger(__name__)

UIDLIST = "dovecot-uidlist"
_GUID = re.compile(r"[0-9a-f]{32}")
# Rewrite the uidlist when it has grown to this many times the size its live lines need.
_COMPACT_FACTOR = 3
_COMPACT_MIN_BYTES = 16384
_LINE_ESTIMATE = 48


class UidList(msgspec.Struct):
    uidvalidity: int
    uidnext: int
    uids: dict[str, int]
    """Maildir base name -> UID."""
    guid: str | None = None
    """The header's ``G`` field (128-bit mailbox GUID in hex), if any."""


def read_uidlist(folder: str) -> UidList | None:
    path = os.path.join(folder, "dovecot-uidlist")
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    if not lines:
        return None
    header = lines[0].split()
    uidvalidity = 0
    uidnext = 1
    guid: str | None = None
    try:
        if header[0] == "3":
            for field in header[1:]:
                if field.startswith("V"):
                    uidvalidity = int(field[1:])
                elif field.startswith("N"):
                    uidnext = int(field[1:])
                elif field.startswith("G") and _GUID.fullmatch(field[1:].lower()):
                    guid = field[1:].lower()
        elif header[0] == "1" and len(header) >= 3:
            uidvalidity = int(header[1])
            uidnext = int(header[2])
        else:
            return None
    except ValueError:
        return None
    uids: dict[str, int] = {}
    for line in lines[1:]:
        head, sep, rest = line.partition(" ")
        if not sep or not head.isdigit():
            continue
        if header[0] == "3":
            if rest.startswith(":"):
                fname = rest[1:]
            else:
                _, sep2, fname = rest.partition(" :")
                if not sep2:
                    continue
        else:
            fname = rest
        uid = int(head)
        if uid <= 0 or not fname:
            continue
        uids[fname.partition(":")[0]] = uid
        uidnext = max(uidnext, uid + 1)
    if uidvalidity <= 0:
        return None
    return UidList(uidvalidity=uidvalidity, uidnext=uidnext, uids=uids, guid=guid)


def read_keywords(folder: str) -> dict[int, str]:
    path = os.path.join(folder, "dovecot-keywords")
    out: dict[int, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                num, sep, name = line.rstrip("\n").partition(" ")
                if sep and num.isdigit() and name:
                    out[int(num)] = name
    except OSError:
        pass
    return out


def write_keywords(folder: str, keywords: dict[int, str]) -> None:
    """Rewrite ``dovecot-keywords`` atomically (only numbers 0..25 have file-name letters)."""
    path = os.path.join(folder, "dovecot-keywords")
    tmp = path + f".tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for i, name in sorted(keywords.items()):
            if i < 26:
                f.write(f"{i} {name}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def uidlist_head(folder: str) -> tuple[int, int, str | None] | None:
    """``(uidvalidity, next uid, guid)`` of a version-3 uidlist from its header and its last line only.

    Lines are appended in UID order, so the next UID is the larger of the header's ``N`` and the last
    line's UID + 1: a cheap check (two small reads) that the index has not fallen behind the Maildir.
    """
    path = os.path.join(folder, UIDLIST)
    try:
        with open(path, "rb") as f:
            header = f.readline().decode("utf-8", "replace").split()
            size = os.fstat(f.fileno()).st_size
            start = max(0, size - 4096)
            f.seek(start)
            tail = f.read().splitlines()
            if start == 0:
                tail = tail[1:]  # the header is not a record
    except OSError:
        return None
    if not header or header[0] != "3":
        return None
    fields = {x[0]: x[1:] for x in header[1:] if x}
    try:
        uidvalidity = int(fields.get("V", "0"))
        uidnext = int(fields.get("N", "1"))
    except ValueError:
        return None
    for line in reversed(tail):
        head = line.partition(b" ")[0]
        if head.isdigit():
            uidnext = max(uidnext, int(head) + 1)
            break
    guid = fields.get("G", "").lower()
    return (uidvalidity, uidnext, guid if _GUID.fullmatch(guid) else None) if uidvalidity > 0 else None


def write_uidlist(folder: str, uidvalidity: int, uidnext: int, guid: str,
                  entries: Iterable[tuple[int, str]]) -> None:
    """Rewrite ``dovecot-uidlist`` (version 3) atomically: header, then ``<uid> :<base name>`` lines."""
    path = os.path.join(folder, UIDLIST)
    tmp = path + f".tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(f"3 V{uidvalidity} N{uidnext} G{guid}\n")
        f.writelines(f"{uid} :{base}\n" for uid, base in entries)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _rewrite_from_index(conn: sqlite3.Connection, mailbox_id: int, folder: str) -> None:
    src = mailindex.uidlist_source(conn, mailbox_id)
    if src is not None:
        write_uidlist(folder, *src)


def record_uids(conn: sqlite3.Connection, mailbox_id: int, folder: str, entries: list[tuple[int, str]]) -> None:
    """Note newly assigned UIDs in ``dovecot-uidlist`` (inside the write that assigns them).

    Appends one line per message, as Dovecot does; the file is written whole only when it is missing or
    belongs to another UIDVALIDITY. The index stays authoritative: a failure here is logged, not raised.
    """
    if not entries:
        return
    path = os.path.join(folder, UIDLIST)
    try:
        ident = mailindex.mailbox_identity(conn, mailbox_id)
        try:
            # One open for the check and the append (this runs in every delivery's index transaction).
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1
        if fd >= 0:
            try:
                first = os.pread(fd, 512, 0).partition(b"\n")
                if first[1] and ident is not None and _header_uidvalidity(first[0]) == ident[0]:
                    os.write(fd, "".join(f"{uid} :{base}\n" for uid, base in entries)
                             .encode("utf-8", "surrogateescape"))
                    return
            finally:
                os.close(fd)
        _rewrite_from_index(conn, mailbox_id, folder)
    except OSError as exc:
        log.warning("cannot update %s: %s", path, exc)


def _header_uidvalidity(line: bytes) -> int | None:
    """UIDVALIDITY of a version-3 uidlist header line (None: not one)."""
    words = line.decode("utf-8", "replace").split()
    if not words or words[0] != "3":
        return None
    for word in words[1:]:
        if word.startswith("V"):
            try:
                value = int(word[1:])
            except ValueError:
                return None
            return value if value > 0 else None
    return None


def ensure_uidlist(conn: sqlite3.Connection, mailbox_id: int, folder: str, *, check_guid: bool = False) -> None:
    """Write ``dovecot-uidlist`` from the index if the folder has none (folders indexed before we wrote it),
    or, with ``check_guid``, if its header does not carry this mailbox's GUID."""
    if check_guid:
        head = uidlist_head(folder)
        ident = mailindex.mailbox_identity(conn, mailbox_id)
        if head is not None and ident is not None and head[2] == ident[1]:
            return
    elif os.path.exists(os.path.join(folder, UIDLIST)):
        return
    try:
        _rewrite_from_index(conn, mailbox_id, folder)
    except OSError as exc:
        log.warning("cannot write %s/%s: %s", folder, UIDLIST, exc)


def compact_uidlist(conn: sqlite3.Connection, mailbox_id: int, folder: str, live: int | None) -> None:
    """After expunges: rewrite the uidlist without its stale lines once they dominate the file."""
    path = os.path.join(folder, UIDLIST)
    try:
        size = os.stat(path).st_size
    except OSError:
        return
    if size < _COMPACT_MIN_BYTES:
        return
    if live is None:
        live = mailindex.message_count(conn, mailbox_id)
    if size <= _COMPACT_FACTOR * _LINE_ESTIMATE * max(live, 1):
        return
    with contextlib.suppress(OSError):
        _rewrite_from_index(conn, mailbox_id, folder)
