"""Reconcile one mailbox's index rows with its Maildir directory listing.

Runs inside the caller's ``BEGIN IMMEDIATE`` transaction. Reads names only (``os.scandir``); a file is
stat'ed only when it is new to the index and its name carries no ``,S=`` size. ``cur/`` and ``new/`` are
scanned only when their mtime differs from the one recorded at the last reconcile (Dovecot's trick).

The same-tick rule: a change made in the same timestamp tick as the mtime we record leaves the mtime as
it was, so an mtime still inside its tick when we look at it ("racy") cannot prove that nothing follows.
It is recorded negated (``-mtime``); the next sync that finds that mtime again verifies the listing
cheaply (names only, compared as sets in C, no per-row work) instead of trusting it. The tick is the
kernel's coarse clock (a few ms) when the file system keeps sub-second mtimes, one second otherwise.
This holds for our own writes too (:func:`own_write_end`): a foreign rename right after our write in the
same tick must not be taken for ours. Files in ``new/`` are moved to ``cur/`` and given UIDs, as Dovecot does.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time

from imapd.store import dovecot, maildir
from imapd.store.flags import DISK_KEYWORDS, parse_info
from imapd.store.mailindex import (
    MessageRow,
    insert_messages,
    new_emailid,
    record_expunges,
    rename_files,
    update_flags,
)
from imapd.store.metadata import mime_available, parse_to_blob

__all__ = ["distrust_young_mtimes", "own_write_begin", "own_write_end", "reconcile"]

_SECOND_NS = 1_000_000_000
_DISK_KW_MASK = (1 << DISK_KEYWORDS) - 1


def _coarse_tick_ns() -> int:
    """Resolution of the clock Linux stamps inode times from (CLOCK_REALTIME_COARSE, id 5; Python has no
    constant for it); one second elsewhere."""
    if not sys.platform.startswith("linux"):
        return _SECOND_NS
    try:
        return int(time.clock_getres(5) * 1e9)
    except OSError:
        return _SECOND_NS


# Two coarse ticks plus 10 ms for scheduling; never below what a whole-second file system needs (below).
_FINE_TICK_NS = min(_SECOND_NS, 2 * _coarse_tick_ns() + 10_000_000)


def tick_ns(mtime_ns: int) -> int:
    """How long after ``mtime_ns`` another change may still carry the same mtime.

    An mtime with a sub-millisecond part comes from a file system with fine timestamps, stamped from the
    coarse clock; anything else (whole seconds, FAT's two, NFS servers rounding) gets the old one second.
    """
    return _FINE_TICK_NS if mtime_ns % 1_000_000 else _SECOND_NS


def _record(mtime_ns: int, now_ns: int, watched: bool = False) -> int:
    """What to store for an mtime seen at ``now_ns``: itself when settled, negated while racy.

    ``watched``: this process's watcher sees every change in the directory and checks the names it
    reports against the index (:meth:`Mailbox.sync_names`), so a change hidden in the tick is found
    that way and the mtime can be trusted at once.
    """
    return mtime_ns if watched or now_ns - mtime_ns >= tick_ns(mtime_ns) else -mtime_ns


NOT_CLEAN, CLEAN, RACY = 0, 1, 2


def own_write_begin(conn: sqlite3.Connection, mailbox_id: int, folder: str, watched: bool = False) -> int:
    """How cur/ stands before our own write: CLEAN (as recorded), RACY (as recorded, not yet verified) or
    NOT_CLEAN (changed by someone else: our write must not move the recorded mtime, the next sync scans)."""
    row = conn.execute("SELECT cur_mtime FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
    try:
        mtime = os.stat(os.path.join(folder, "cur")).st_mtime_ns
    except OSError:
        return NOT_CLEAN
    if row is None:
        return NOT_CLEAN
    if mtime == row[0] or (watched and mtime == -row[0]):
        return CLEAN
    return RACY if mtime == -row[0] else NOT_CLEAN


def own_write_end(conn: sqlite3.Connection, mailbox_id: int, folder: str, state: int,
                  watched: bool = False) -> None:
    """Record cur/'s mtime after our own write: racy (verified once by the next sync) while its tick may
    still run, or when the state before was not verified yet; not at all when someone else had changed it."""
    if state == NOT_CLEAN:
        return
    try:
        mtime = os.stat(os.path.join(folder, "cur")).st_mtime_ns
    except OSError:
        return
    rec = _record(mtime, time.time_ns(), watched) if state == CLEAN else -mtime
    conn.execute("UPDATE mailboxes SET cur_mtime=? WHERE id=?", (rec, mailbox_id))


def distrust_young_mtimes(conn: sqlite3.Connection, mailbox_id: int, horizon_ns: int = 5 * _SECOND_NS) -> None:
    """Mark recorded mtimes younger than ``horizon_ns`` racy (negated): a watcher that vouched for them
    (``watched=True``) stops covering the folder before it may have seen a change hidden in their tick."""
    limit = time.time_ns() - horizon_ns
    conn.execute("UPDATE mailboxes SET cur_mtime=CASE WHEN cur_mtime>? THEN -cur_mtime ELSE cur_mtime END, "
                 "new_mtime=CASE WHEN new_mtime>? THEN -new_mtime ELSE new_mtime END WHERE id=?",
                 (limit, limit, mailbox_id))


def _listing_matches(conn: sqlite3.Connection, mailbox_id: int, cur: str) -> bool:
    """True if cur/ holds exactly the file names the index lists (C-level set comparison)."""
    disk = [n for n in os.listdir(cur) if not n.startswith(".")]
    names = [n for (n,) in conn.execute("SELECT fname FROM messages WHERE mailbox=?", (mailbox_id,))]
    return len(disk) == len(names) and set(disk) == set(names)


def _stat_dir(folder: str, sub: str) -> int:
    """mtime of ``folder/sub``; a lost ``cur/``/``new/`` is recreated (as Dovecot does) if the folder exists."""
    path = os.path.join(folder, sub)
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        if not os.path.isdir(folder):
            raise
        maildir.ensure_maildir(folder)
        return os.stat(path).st_mtime_ns


def reconcile(conn: sqlite3.Connection, mailbox_id: int, folder: str, *, history_limit: int,
              force: bool = False, uid_hints: dict[str, int] | None = None, parse_limit: int = 64,
              watched: bool = False, force_new: bool = False) -> bool:
    """Bring the index rows of one mailbox in line with its directory; True if anything changed.

    Raises FileNotFoundError if the folder itself no longer exists (a lost cur/ or new/ is recreated).
    """
    row = conn.execute("SELECT uidnext, highestmodseq, cur_mtime, new_mtime FROM mailboxes WHERE id=?",
                       (mailbox_id,)).fetchone()
    if row is None:
        raise FileNotFoundError(folder)
    uidnext, hms, rec_cur, rec_new = (int(x) for x in row)
    cur = os.path.join(folder, "cur")
    new = os.path.join(folder, "new")
    st_cur = _stat_dir(folder, "cur")
    st_new = _stat_dir(folder, "new")
    scan_cur = force or st_cur != rec_cur
    scan_new = force or force_new or st_new != rec_new
    if scan_cur and not force and st_cur == -rec_cur and (watched or _listing_matches(conn, mailbox_id, cur)):
        # racy record verified (the listing is what the index says), or covered by this process's watcher
        scan_cur = False
        rec_cur = _record(st_cur, time.time_ns(), watched)
        conn.execute("UPDATE mailboxes SET cur_mtime=? WHERE id=?", (rec_cur, mailbox_id))
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
    rows: list[MessageRow] = []
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
        insert_messages(conn, rows)
    if updates:
        update_flags(conn, updates)
    if renamed:
        rename_files(conn, renamed)
    if expunged:
        record_expunges(conn, mailbox_id, expunged, modseq, history_limit)
    changed = bool(rows or updates or expunged)
    now = time.time_ns()
    if moved:
        cur_rec = _record(os.stat(cur).st_mtime_ns, now, watched)
    elif scan_cur:
        cur_rec = _record(st_cur, now, watched)
    else:
        cur_rec = rec_cur
    new_rec = _record(st_new, now, watched) if scan_new else rec_new
    conn.execute("UPDATE mailboxes SET uidnext=?, highestmodseq=?, cur_mtime=?, new_mtime=? WHERE id=?",
                 (uidnext, modseq if changed else hms, cur_rec, new_rec, mailbox_id))
    if rows:
        dovecot.record_uids(conn, mailbox_id, folder, [(r[1], r[3]) for r in rows])
    if expunged:
        dovecot.compact_uidlist(conn, mailbox_id, folder, None)
    return changed
