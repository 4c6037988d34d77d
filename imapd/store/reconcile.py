"""Reconcile one mailbox's index rows with its Maildir directory listing.

Runs inside the caller's ``BEGIN IMMEDIATE`` transaction. Reads names only (``os.scandir``); a file is
stat'ed only when it is new to the index and its name carries no ``,S=`` size. ``cur/`` and ``new/`` are
scanned only when their mtime differs from the one recorded at the last reconcile (Dovecot's trick);
an mtime younger than one second is recorded as "dirty" so a change within the same timestamp tick is
caught by the next sync. Files in ``new/`` are moved to ``cur/`` and given UIDs, as Dovecot does.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time

from imapd.store import maildir
from imapd.store.flags import DISK_KEYWORDS, parse_info
from imapd.store.metadata import mime_available, parse_to_blob

__all__ = ["new_emailid", "own_write_begin", "own_write_end", "reconcile", "record_expunges"]

_DIRTY_NS = 1_000_000_000
_DISK_KW_MASK = (1 << DISK_KEYWORDS) - 1


def new_emailid() -> str:
    return "M" + secrets.token_hex(12)


def own_write_begin(conn: sqlite3.Connection, mailbox_id: int, folder: str) -> bool:
    """True if cur/ is unchanged since the last reconcile, so our own write may move the recorded mtime."""
    row = conn.execute("SELECT cur_mtime FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
    try:
        return row is not None and os.stat(os.path.join(folder, "cur")).st_mtime_ns == row[0]
    except OSError:
        return False


def own_write_end(conn: sqlite3.Connection, mailbox_id: int, folder: str, clean: bool) -> None:
    if not clean:
        return
    try:
        mtime = os.stat(os.path.join(folder, "cur")).st_mtime_ns
    except OSError:
        return
    conn.execute("UPDATE mailboxes SET cur_mtime=? WHERE id=?", (mtime, mailbox_id))


def record_expunges(conn: sqlite3.Connection, mailbox_id: int, uids: list[int], modseq: int,
                    limit: int) -> None:
    """Delete message rows, add expunge history, trim history to ``limit`` rows (oldest modseqs first)."""
    conn.executemany("DELETE FROM messages WHERE mailbox=? AND uid=?", [(mailbox_id, u) for u in uids])
    conn.executemany("INSERT OR REPLACE INTO expunged(mailbox, uid, modseq) VALUES (?, ?, ?)",
                     [(mailbox_id, u, modseq) for u in uids])
    row = conn.execute("SELECT modseq FROM expunged WHERE mailbox=? ORDER BY modseq DESC LIMIT 1 OFFSET ?",
                       (mailbox_id, limit)).fetchone()
    if row is not None:
        cut = int(row[0])
        conn.execute("DELETE FROM expunged WHERE mailbox=? AND modseq<=?", (mailbox_id, cut))
        conn.execute("UPDATE mailboxes SET history_floor=max(history_floor, ?) WHERE id=?", (cut, mailbox_id))


def reconcile(conn: sqlite3.Connection, mailbox_id: int, folder: str, *, history_limit: int,
              force: bool = False, uid_hints: dict[str, int] | None = None, parse_limit: int = 64) -> bool:
    """Bring the index rows of one mailbox in line with its directory; True if anything changed.

    Raises FileNotFoundError if the folder's cur/ or new/ no longer exists.
    """
    row = conn.execute("SELECT uidnext, highestmodseq, cur_mtime, new_mtime FROM mailboxes WHERE id=?",
                       (mailbox_id,)).fetchone()
    if row is None:
        raise FileNotFoundError(folder)
    uidnext, hms, rec_cur, rec_new = (int(x) for x in row)
    cur = os.path.join(folder, "cur")
    new = os.path.join(folder, "new")
    st_cur = os.stat(cur).st_mtime_ns
    st_new = os.stat(new).st_mtime_ns
    scan_cur = force or st_cur != rec_cur
    scan_new = force or st_new != rec_new
    if not scan_cur and not scan_new:
        return False
    modseq = hms + 1
    adds: list[str] = []
    expunged: list[int] = []
    updates: list[tuple[int, int, int, str, int, int]] = []
    renamed: list[tuple[str, int, int]] = []
    if scan_cur:
        disk = {maildir.base_of(n): n for n in maildir.scan_names(cur)}
        for uid, fname, flags, kw in conn.execute(
                "SELECT uid, fname, flags, keywords FROM messages WHERE mailbox=?", (mailbox_id,)):
            dn = disk.pop(fname.partition(":")[0], None)
            if dn is None:
                expunged.append(uid)
            elif dn != fname:
                _, bits, letters = parse_info(dn)
                nkw = (kw & ~_DISK_KW_MASK) | letters
                if bits != flags or nkw != kw:
                    updates.append((bits, nkw, modseq, dn, mailbox_id, uid))
                else:
                    renamed.append((dn, mailbox_id, uid))
        adds.extend(disk.values())
    moved = False
    if scan_new:
        for n in list(maildir.scan_names(new)):
            base, sep, info = n.partition(":")
            target = base + (":" + info if sep and info.startswith("2,") else ":2,")
            try:
                os.rename(os.path.join(new, n), os.path.join(cur, target))
            except FileNotFoundError:
                continue
            moved = True
            adds.append(target)
    # UIDs: hinted names (dovecot-uidlist) keep theirs, the rest in name (= delivery time) order.
    used: set[int] = set()
    hinted: list[tuple[int, str]] = []
    rest: list[str] = []
    for fname in adds:
        hint = uid_hints.get(maildir.base_of(fname)) if uid_hints else None
        if hint is not None and hint not in used:
            used.add(hint)
            hinted.append((hint, fname))
        else:
            rest.append(fname)
    rest.sort(key=lambda n: (maildir.info_from_name(n)[0] or 0, n))
    if hinted:
        uidnext = max(uidnext, max(u for u, _ in hinted) + 1)
    assigned = sorted(hinted)
    for fname in rest:
        assigned.append((uidnext, fname))
        uidnext += 1
    parse = mime_available() and len(assigned) <= parse_limit
    rows = []
    for uid, fname in assigned:
        base, bits, letters = parse_info(fname)
        date, size = maildir.info_from_name(base)
        path = os.path.join(cur, fname)
        blob = None
        if date is None or size is None:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            date = date if date is not None else int(st.st_mtime)
            size = size if size is not None else st.st_size
        if parse:
            try:
                with open(path, "rb") as f:
                    blob = parse_to_blob(f.read())
            except OSError:
                blob = None
        rows.append((mailbox_id, uid, fname, base, bits, letters, modseq, date, size, new_emailid(), blob))
    if rows:
        conn.executemany(
            "INSERT INTO messages(mailbox, uid, fname, base, flags, keywords, modseq, internaldate, size,"
            " emailid, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    if updates:
        conn.executemany("UPDATE messages SET flags=?, keywords=?, modseq=?, fname=? WHERE mailbox=? AND uid=?",
                         updates)
    if renamed:
        conn.executemany("UPDATE messages SET fname=? WHERE mailbox=? AND uid=?", renamed)
    if expunged:
        record_expunges(conn, mailbox_id, expunged, modseq, history_limit)
    changed = bool(rows or updates or expunged)
    now = time.time_ns()
    if scan_cur and now - st_cur < _DIRTY_NS:
        cur_rec = -1
    elif moved:
        cur_rec = os.stat(cur).st_mtime_ns
    else:
        cur_rec = st_cur
    new_rec = -1 if now - st_new < _DIRTY_NS else st_new
    conn.execute("UPDATE mailboxes SET uidnext=?, highestmodseq=?, cur_mtime=?, new_mtime=? WHERE id=?",
                 (uidnext, modseq if changed else hms, cur_rec, new_rec, mailbox_id))
    return changed
