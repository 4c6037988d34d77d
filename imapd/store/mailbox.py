"""The in-memory object of one open mailbox, shared by every session of the process that selected it.

Memory is proportional to the message count with small constants: parallel arrays of UIDs (``I``),
MODSEQs (``Q``) and system-flag bits (``B``); keyword bits only for messages that have keywords.
Every mutation is one index transaction; afterwards :meth:`Mailbox._catch_up` reads what changed since
the in-memory HIGHESTMODSEQ (whoever made it: this process, another process, the Maildir reconcile),
applies it to the arrays and publishes it on the change feed. So own writes, other processes' writes and
external Maildir changes take the same path and are published exactly once.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from imapd.store import maildir
from imapd.store.changefeed import FlagsChanged, MessageEvent, MessagesAdded, MessagesExpunged, Subscription
from imapd.store.errors import LimitExceeded, NoSuchMailbox, StorageIOError
from imapd.store.flags import (
    MAX_KEYWORDS,
    PASSED,
    SEEN,
    VISIBLE_MASK,
    info_letters,
    split_flags,
    system_flag_names,
)
from imapd.store.metadata import decode_metadata, parse_to_blob
from imapd.store.reconcile import new_emailid, own_write_begin, own_write_end, reconcile, record_expunges
from imapd.store.sortkeys import SortKeys

if TYPE_CHECKING:
    from imapd.store.userstore import UserStore

# Maps a system-flags byte to 1 when \\Seen is set, 0 when not (for C-speed counting and searching).
_SEEN_BIT = bytes((b & SEEN) and 1 for b in range(256))

__all__ = ["AppendItem", "FlagMode", "Mailbox", "MailboxStatus", "MessageInfo", "StoreResult"]

FlagMode = Literal["add", "remove", "replace"]
_IN_LIMIT = 900


class AppendItem(msgspec.Struct, frozen=True):
    data: bytes
    flags: tuple[str, ...] = ()
    internaldate: float | None = None
    """Unix time; None = now."""


class StoreResult(msgspec.Struct, frozen=True):
    changed: list[tuple[int, tuple[str, ...], int]]
    """``(uid, flags, modseq)`` of every message whose flags changed."""
    failed: list[int]
    """UIDs not changed because their MODSEQ was above UNCHANGEDSINCE (RFC 7162 MODIFIED)."""


class MessageInfo(msgspec.Struct, frozen=True):
    uid: int
    size: int
    internaldate: int
    """Unix seconds."""
    emailid: str
    modseq: int
    flags: tuple[str, ...]


class MailboxStatus(msgspec.Struct, frozen=True):
    mailbox_id: int
    messages: int
    unseen: int
    size: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int
    mailboxid: str
    """RFC 8474 MAILBOXID."""


class Mailbox:
    """One open mailbox. Get it from :meth:`UserStore.open`, give it back with :meth:`release`."""

    def __init__(self, owner: UserStore, mailbox_id: int, name: str) -> None:
        self._owner = owner
        self.user = owner.user
        self.mailbox_id = mailbox_id
        self.name = name
        self.path = owner.folder_path(name)
        self.refcount = 0
        self.deleted = False
        self._index = owner.index
        self._uids = array("I")
        self._modseqs = array("Q")
        self._sysflags = array("B")
        self._kw: dict[int, int] = {}
        self._kwnames: dict[int, str] = {}
        self._kwidx: dict[str, int] = {}
        self._names_cache: dict[tuple[int, int], tuple[str, ...]] = {}
        self.uidvalidity = 0
        self.uidnext = 1
        self.highestmodseq = 0
        self.mailboxid = ""
        self.special_use: str | None = None
        self._sort_keys: SortKeys | None = None
        self._load()

    # ----------------------------------------------------------------- loading and catching up

    def _load(self) -> None:
        conn = self._index.conn
        with self._index.lock:
            outer = conn.in_transaction
            if not outer:
                conn.execute("BEGIN")
            try:
                row = conn.execute(
                    "SELECT uidvalidity, uidnext, highestmodseq, guid, special_use FROM mailboxes WHERE id=?",
                    (self.mailbox_id,)).fetchone()
                if row is None:
                    raise NoSuchMailbox(f"mailbox {self.name!r} does not exist")
                self.uidvalidity, self.uidnext, self.highestmodseq, self.mailboxid, self.special_use = row
                rows = conn.execute("SELECT uid, modseq, flags, keywords FROM messages WHERE mailbox=? ORDER BY uid",
                                    (self.mailbox_id,)).fetchall()
                self._load_keywords(conn)
            finally:
                if not outer:
                    conn.execute("COMMIT")
        self._uids = array("I", [r[0] for r in rows])
        self._modseqs = array("Q", [r[1] for r in rows])
        self._sysflags = array("B", [r[2] for r in rows])
        self._kw = {r[0]: r[3] for r in rows if r[3]}

    def _load_keywords(self, conn: sqlite3.Connection) -> None:
        self._kwnames = dict(conn.execute("SELECT idx, name FROM keywords WHERE mailbox=?", (self.mailbox_id,)))
        self._kwidx = {v: k for k, v in self._kwnames.items()}

    def _catch_up(self) -> None:
        """Apply index changes newer than the in-memory HIGHESTMODSEQ and publish them."""
        events: list[MessageEvent] = []
        with self._index.lock:
            conn = self._index.conn
            outer = conn.in_transaction
            if not outer:
                conn.execute("BEGIN")
            try:
                row = conn.execute("SELECT highestmodseq, uidnext, history_floor FROM mailboxes WHERE id=?",
                                   (self.mailbox_id,)).fetchone()
                if row is None:
                    self.deleted = True
                    return
                hms, uidnext, floor = row
                self.uidnext = uidnext
                if hms == self.highestmodseq:
                    return
                since = self.highestmodseq
                rows = conn.execute(
                    "SELECT uid, flags, keywords, modseq FROM messages WHERE mailbox=? AND modseq>? ORDER BY uid",
                    (self.mailbox_id, since)).fetchall()
                if since >= floor:
                    gone = [u for (u,) in conn.execute(
                        "SELECT uid FROM expunged WHERE mailbox=? AND modseq>?", (self.mailbox_id, since))]
                else:
                    present = {u for (u,) in conn.execute("SELECT uid FROM messages WHERE mailbox=?",
                                                          (self.mailbox_id,))}
                    gone = [u for u in self._uids if u not in present]
                self._load_keywords(conn)
            finally:
                if not outer:
                    conn.execute("COMMIT")
            expunged = self._remove_uids(gone)
            added: list[int] = []
            changed: list[tuple[int, tuple[str, ...], int]] = []
            for uid, flags, kw, modseq in rows:
                pos = bisect_left(self._uids, uid)
                if pos < len(self._uids) and self._uids[pos] == uid:
                    self._modseqs[pos] = modseq
                    self._sysflags[pos] = flags
                    changed.append((uid, self._names(flags, kw), modseq))
                else:
                    self._uids.insert(pos, uid)
                    self._modseqs.insert(pos, modseq)
                    self._sysflags.insert(pos, flags)
                    added.append(uid)
                if kw:
                    self._kw[uid] = kw
                else:
                    self._kw.pop(uid, None)
            self.highestmodseq = hms
            if expunged:
                events.append(MessagesExpunged(self.user, self.mailbox_id, expunged, hms))
            if added:
                events.append(MessagesAdded(self.user, self.mailbox_id, added, hms))
            if changed:
                events.append(FlagsChanged(self.user, self.mailbox_id, changed, hms))
            for ev in events:
                self._owner.feed.publish(ev)

    def _remove_uids(self, uids: Iterable[int]) -> list[int]:
        drop = set(uids)
        if not drop:
            return []
        keep = [i for i, u in enumerate(self._uids) if u not in drop]
        removed = [u for u in self._uids if u in drop]
        if len(keep) != len(self._uids):
            self._uids = array("I", [self._uids[i] for i in keep])
            self._modseqs = array("Q", [self._modseqs[i] for i in keep])
            self._sysflags = array("B", [self._sysflags[i] for i in keep])
            for u in removed:
                self._kw.pop(u, None)
        return removed

    def _names(self, bits: int, kw: int) -> tuple[str, ...]:
        key = (bits & VISIBLE_MASK, kw)
        names = self._names_cache.get(key)
        if names is None:
            out = system_flag_names(bits)
            n = 0
            k = kw
            while k:
                if k & 1 and n in self._kwnames:
                    out.append(self._kwnames[n])
                k >>= 1
                n += 1
            names = tuple(out)
            if len(self._names_cache) < 4096:
                self._names_cache[key] = names
        return names

    def _next_modseq(self, conn: sqlite3.Connection) -> int:
        """The MODSEQ a write transaction will give its changes (the mailbox may have gone meanwhile)."""
        row = conn.execute("SELECT highestmodseq FROM mailboxes WHERE id=?", (self.mailbox_id,)).fetchone()
        if row is None:
            self.deleted = True
            raise NoSuchMailbox(f"mailbox {self.name!r} does not exist")
        return int(row[0]) + 1

    def _check(self) -> None:
        if self.deleted:
            raise NoSuchMailbox(f"mailbox {self.name!r} was deleted")

    def _io_error(self, action: str, exc: BaseException) -> StorageIOError:
        return StorageIOError(self.user, self.name, action, exc)

    # ----------------------------------------------------------------------------- reading

    @property
    def exists(self) -> int:
        return len(self._uids)

    def uids(self) -> array[int]:
        """A copy of the UIDs in ascending order."""
        return array("I", self._uids)

    @property
    def uid_array(self) -> array[int]:
        """The live UID array, shared without copying (session views hold it).

        Contract: new UIDs are only ever appended in place (they are larger than every existing one);
        an expunge replaces the array with a new object. So a holder that remembers how many entries it
        has seen keeps a stable prefix until it rebinds to the new array.
        """
        return self._uids

    def _pos(self, uid: int) -> int:
        pos = bisect_left(self._uids, uid)
        if pos < len(self._uids) and self._uids[pos] == uid:
            return pos
        return -1

    def __contains__(self, uid: int) -> bool:
        return self._pos(uid) >= 0

    def flags(self, uid: int) -> tuple[str, ...] | None:
        """Flags of ``uid`` (system flags first, then keywords), or None if there is no such message."""
        pos = self._pos(uid)
        if pos < 0:
            return None
        return self._names(self._sysflags[pos], self._kw.get(uid, 0))

    def modseq(self, uid: int) -> int | None:
        pos = self._pos(uid)
        return None if pos < 0 else self._modseqs[pos]

    def keywords(self) -> list[str]:
        """Every keyword defined in this mailbox (for the FLAGS / PERMANENTFLAGS responses)."""
        return [self._kwnames[i] for i in sorted(self._kwnames)]

    def unseen_count(self) -> int:
        # In C rather than a Python loop: SELECT of a 100k-message mailbox asks for this.
        return self._sysflags.tobytes().translate(_SEEN_BIT).count(0)

    def first_unseen_uid(self) -> int | None:
        i = self._sysflags.tobytes().translate(_SEEN_BIT).find(0)
        return None if i < 0 else self._uids[i]

    def changed_since(self, modseq: int) -> list[tuple[int, tuple[str, ...], int]]:
        """``(uid, flags, modseq)`` for every message with MODSEQ > ``modseq``, ascending UID.

        Costs the number of changes, not the mailbox size: the UIDs come from the index's MODSEQ index,
        the values from the in-memory arrays (which the index never runs ahead of for this process).
        """
        if modseq >= self.highestmodseq:
            return []
        with self._index.lock:
            uids = sorted(u for (u,) in self._index.conn.execute(
                "SELECT uid FROM messages WHERE mailbox=? AND modseq>?", (self.mailbox_id, modseq)))
        out = []
        for uid in uids:
            pos = self._pos(uid)
            if pos < 0 or self._modseqs[pos] <= modseq:
                continue  # expunged or not yet caught up in memory: reported by the change feed instead
            out.append((uid, self._names(self._sysflags[pos], self._kw.get(uid, 0)), self._modseqs[pos]))
        return out

    def expunged_since(self, modseq: int) -> tuple[list[int], bool]:
        """UIDs expunged after ``modseq``, and whether the history reaches back that far.

        When the second value is False the list is incomplete: the caller must fall back to comparing
        UID sets (QRESYNC without known-uids: send VANISHED for the whole missing range).
        """
        with self._index.lock:
            conn = self._index.conn
            row = conn.execute("SELECT history_floor FROM mailboxes WHERE id=?", (self.mailbox_id,)).fetchone()
            floor = row[0] if row else 0
            uids = sorted(u for (u,) in conn.execute(
                "SELECT uid FROM expunged WHERE mailbox=? AND modseq>?", (self.mailbox_id, modseq)))
        return uids, modseq >= floor

    def _rows(self, uids: Iterable[int], cols: str) -> list[Any]:
        """Index rows (``uid`` first) of the given UIDs that exist, ascending UID."""
        wanted = sorted(set(uids))
        if not wanted:
            return []
        conn = self._index.conn
        if len(wanted) <= _IN_LIMIT:
            marks = ",".join("?" * len(wanted))
            return conn.execute(f"SELECT uid, {cols} FROM messages WHERE mailbox=? AND uid IN ({marks}) "
                                "ORDER BY uid", (self.mailbox_id, *wanted)).fetchall()
        want = set(wanted)
        return [r for r in conn.execute(f"SELECT uid, {cols} FROM messages WHERE mailbox=? AND uid BETWEEN ? AND ? "
                                        "ORDER BY uid", (self.mailbox_id, wanted[0], wanted[-1]))
                if r[0] in want]

    def message_info(self, uids: Iterable[int]) -> list[MessageInfo]:
        """Size, INTERNALDATE, EMAILID, MODSEQ and flags of the given (existing) UIDs, ascending."""
        with self._index.lock:
            rows = self._rows(uids, "size, internaldate, emailid, modseq, flags, keywords")
        return [MessageInfo(uid, size, date, eid, ms, self._names(fl, kw))
                for uid, size, date, eid, ms, fl, kw in rows]

    def message_path(self, uid: int) -> str:
        """Path of the message file; raises KeyError if the message does not exist."""
        with self._index.lock:
            rows = self._rows([uid], "fname")
        if not rows:
            raise KeyError(uid)
        path = os.path.join(self.path, "cur", rows[0][1])
        if os.path.exists(path):
            return path
        self.sync()
        with self._index.lock:
            rows = self._rows([uid], "fname")
        if not rows:
            raise KeyError(uid)
        return os.path.join(self.path, "cur", rows[0][1])

    def read_message(self, uid: int) -> bytes:
        """The raw message; KeyError if it does not exist (or vanished from disk)."""
        try:
            with open(self.message_path(uid), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise KeyError(uid) from None

    def index_rows(self, uids: Iterable[int] | None, cols: str) -> list[Any]:
        """Index rows ``(uid, *cols)`` of the given UIDs that exist (None: every message), ascending UID,
        in one query. ``cols`` are columns of the ``messages`` table (store-internal callers only)."""
        with self._index.lock:
            if uids is not None:
                return self._rows(uids, cols)
            return self._index.conn.execute(f"SELECT uid, {cols} FROM messages WHERE mailbox=? ORDER BY uid",
                                            (self.mailbox_id,)).fetchall()

    def metadata_blob(self, uid: int) -> bytes | None:
        """The msgpack metadata blob of ``uid``, parsed from the file and stored now if missing; None when
        it cannot be had (no such message, file gone, ``imapd.mime`` unavailable or failing)."""
        with self._index.lock:
            rows = self._rows([uid], "meta")
        if not rows:
            return None
        blob: bytes | None = rows[0][1]
        if blob is None:
            try:
                blob = self._parse_and_store(uid)
            except (KeyError, RuntimeError):
                return None
        return blob

    def _parse_and_store(self, uid: int) -> bytes:
        blob = parse_to_blob(self.read_message(uid))
        if blob is None:
            raise RuntimeError("imapd.mime is not available or failed on this message")
        try:
            with self._index.write() as conn:
                conn.execute("UPDATE messages SET meta=? WHERE mailbox=? AND uid=?", (blob, self.mailbox_id, uid))
        except sqlite3.Error:
            pass  # a cache write; the caller still gets the parsed value
        return blob

    def metadata(self, uid: int) -> Any:
        """The cached ``imapd.mime.MessageMetadata`` of ``uid``, parsed and stored now if missing."""
        with self._index.lock:
            rows = self._rows([uid], "meta")
        if not rows:
            raise KeyError(uid)
        blob = rows[0][1]
        if blob is None:
            blob = self._parse_and_store(uid)
        return decode_metadata(blob)

    def metadata_many(self, uids: Iterable[int]) -> dict[int, Any]:
        """``{uid: MessageMetadata}`` for the given UIDs that exist, in one query (messages whose metadata
        is not cached yet are parsed and stored as by :meth:`metadata`; messages whose file vanished
        meanwhile are left out)."""
        out: dict[int, Any] = {}
        with self._index.lock:
            rows = self._rows(uids, "meta")
        for uid, blob in rows:
            if blob is None:
                try:
                    blob = self._parse_and_store(uid)
                except KeyError:
                    continue
            out[uid] = decode_metadata(blob)
        return out

    def sort_keys(self) -> SortKeys:
        """The in-memory SORT/THREAD keys (:mod:`imapd.store.sortkeys`), built on first use from one
        query and brought up to date with the UIDs on every call."""
        self._check()
        keys = self._sort_keys
        if keys is None or not keys.refresh(self):
            keys = self._sort_keys = SortKeys.build(self)
        return keys

    def status(self) -> MailboxStatus:
        with self._index.lock:
            row = self._index.conn.execute("SELECT total(size) FROM messages WHERE mailbox=?",
                                           (self.mailbox_id,)).fetchone()
        return MailboxStatus(self.mailbox_id, self.exists, self.unseen_count(), int(row[0]), self.uidnext,
                             self.uidvalidity, self.highestmodseq, self.mailboxid)

    # ------------------------------------------------------------------------------ writing

    def _keyword_bits(self, conn: sqlite3.Connection, names: list[str], create: bool) -> int:
        """Bits for keyword names (case-insensitive match), allocating table entries if ``create``."""
        bits = 0
        lower = {n.lower(): i for n, i in self._kwidx.items()}
        added = False
        for name in names:
            idx = lower.get(name.lower())
            if idx is None:
                if not create:
                    continue
                free = next((i for i in range(MAX_KEYWORDS) if i not in self._kwnames), None)
                if free is None:
                    raise LimitExceeded(f"mailbox {self.name!r} has too many keywords")
                conn.execute("INSERT INTO keywords(mailbox, idx, name) VALUES (?, ?, ?)",
                             (self.mailbox_id, free, name))
                self._kwnames[free] = name
                self._kwidx[name] = free
                lower[name.lower()] = free
                idx = free
                added = True
            bits |= 1 << idx
        if added:
            self._owner.write_dovecot_keywords(self.path, self._kwnames)
        return bits

    def append(self, data: bytes, flags: Iterable[str] = (), internaldate: float | None = None) -> int:
        """Deliver one message into ``cur/`` with its flags; return its UID once it is durable."""
        return self.append_many([AppendItem(data, tuple(flags), internaldate)])[0]

    def append_many(self, items: Sequence[AppendItem], *, fsync: bool = True) -> list[int]:
        """Deliver several messages in one index transaction (MULTIAPPEND); all or nothing.

        ``fsync=False`` is the bulk-import path (benchmarks, migrations): the message files and ``cur/``
        are not fsynced one by one, so a power loss can lose messages the index already lists (the next
        reconcile drops those rows). Call ``os.sync()`` at the end of an import for durability.
        """
        self._check()
        parsed = [split_flags(it.flags) for it in items]
        blobs = [parse_to_blob(it.data) for it in items]
        tmp: list[tuple[str, str]] = []
        placed: list[str] = []
        try:
            for it in items:
                tmp.append(maildir.write_tmp(self.path, it.data, it.internaldate, fsync=fsync))
        except OSError as exc:
            for path, _ in tmp:
                maildir.unlink_quiet(path)
            raise self._io_error("append", exc) from exc
        uids: list[int] = []
        try:
            with self._index.write() as conn:
                row = conn.execute("SELECT uidnext, highestmodseq FROM mailboxes WHERE id=?",
                                   (self.mailbox_id,)).fetchone()
                if row is None:
                    self.deleted = True
                    raise NoSuchMailbox(f"mailbox {self.name!r} does not exist")
                uidnext, hms = row
                modseq = hms + 1
                self._load_keywords(conn)
                clean = own_write_begin(conn, self.mailbox_id, self.path)
                rows = []
                for it, (bits, kwnames), blob, (tpath, base) in zip(items, parsed, blobs, tmp, strict=True):
                    kw = self._keyword_bits(conn, kwnames, True)
                    fname = base + info_letters(bits, kw)
                    dest = os.path.join(self.path, "cur", fname)
                    os.link(tpath, dest)
                    placed.append(dest)
                    date = int(it.internaldate if it.internaldate is not None else time.time())
                    rows.append((self.mailbox_id, uidnext, fname, base, bits, kw, modseq, date, len(it.data),
                                 new_emailid(), blob))
                    uids.append(uidnext)
                    uidnext += 1
                if fsync:
                    maildir.fsync_dir(os.path.join(self.path, "cur"))
                conn.executemany(
                    "INSERT INTO messages(mailbox, uid, fname, base, flags, keywords, modseq, internaldate, size,"
                    " emailid, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
                conn.execute("UPDATE mailboxes SET uidnext=?, highestmodseq=? WHERE id=?",
                             (uidnext, modseq, self.mailbox_id))
                own_write_end(conn, self.mailbox_id, self.path, clean)
        except (OSError, sqlite3.Error) as exc:
            for p in placed:
                maildir.unlink_quiet(p)
            self._reload_keywords()
            raise self._io_error("append", exc) from exc
        except BaseException:
            for p in placed:
                maildir.unlink_quiet(p)
            self._reload_keywords()
            raise
        finally:
            for path, _ in tmp:
                maildir.unlink_quiet(path)
        self._catch_up()
        return uids

    def _reload_keywords(self) -> None:
        with self._index.lock:
            self._load_keywords(self._index.conn)

    def store_flags(self, uids: Iterable[int], mode: FlagMode, flags: Iterable[str],
                    unchanged_since: int | None = None) -> StoreResult:
        """Change flags (one new MODSEQ for the whole operation); the file names follow."""
        self._check()
        if mode not in ("add", "remove", "replace"):
            raise ValueError(f"bad mode {mode!r}")
        bits, kwnames = split_flags(flags)
        renames: list[tuple[str, str]] = []
        changed: list[tuple[int, int, int]] = []
        failed: list[int] = []
        cur = os.path.join(self.path, "cur")
        try:
            with self._index.write() as conn:
                modseq = self._next_modseq(conn)
                self._load_keywords(conn)
                kwbits = self._keyword_bits(conn, kwnames, mode != "remove")
                clean = own_write_begin(conn, self.mailbox_id, self.path)
                updates = []
                for uid, fl, kw, ms, fname in self._rows(uids, "flags, keywords, modseq, fname"):
                    if unchanged_since is not None and ms > unchanged_since:
                        failed.append(uid)
                        continue
                    if mode == "add":
                        nfl, nkw = fl | bits, kw | kwbits
                    elif mode == "remove":
                        nfl, nkw = fl & ~bits, kw & ~kwbits
                    else:
                        nfl, nkw = bits | (fl & PASSED), kwbits
                    if (nfl, nkw) == (fl, kw):
                        continue
                    nfname = fname.partition(":")[0] + info_letters(nfl, nkw)
                    if nfname != fname:
                        src = os.path.join(cur, fname)
                        try:
                            os.rename(src, os.path.join(cur, nfname))
                        except FileNotFoundError:
                            continue  # changed or removed behind our back; the next sync sorts it out
                        renames.append((src, os.path.join(cur, nfname)))
                    updates.append((nfl, nkw, modseq, nfname, self.mailbox_id, uid))
                    changed.append((uid, nfl, nkw))
                if updates:
                    if renames:
                        maildir.fsync_dir(cur)
                    conn.executemany(
                        "UPDATE messages SET flags=?, keywords=?, modseq=?, fname=? WHERE mailbox=? AND uid=?",
                        updates)
                    conn.execute("UPDATE mailboxes SET highestmodseq=? WHERE id=?", (modseq, self.mailbox_id))
                    own_write_end(conn, self.mailbox_id, self.path, clean)
        except BaseException as exc:
            for src, dst in reversed(renames):
                with contextlib.suppress(OSError):
                    os.rename(dst, src)
            self._reload_keywords()
            if isinstance(exc, (OSError, sqlite3.Error)):
                raise self._io_error("store flags", exc) from exc
            raise
        self._catch_up()
        return StoreResult([(uid, self._names(fl, kw), modseq) for uid, fl, kw in changed], failed)

    def expunge(self, uids: Iterable[int]) -> list[int]:
        """Remove messages (one MODSEQ for the operation, recorded in the expunge history)."""
        self._check()
        done: list[int] = []
        error: OSError | None = None
        cur = os.path.join(self.path, "cur")
        try:
            with self._index.write() as conn:
                modseq = self._next_modseq(conn)
                clean = own_write_begin(conn, self.mailbox_id, self.path)
                for uid, fname in self._rows(uids, "fname"):
                    try:
                        os.unlink(os.path.join(cur, fname))
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        error = exc
                        break
                    done.append(uid)
                if done:
                    maildir.fsync_dir(cur)
                    record_expunges(conn, self.mailbox_id, done, modseq, self._owner.history_limit)
                    conn.execute("UPDATE mailboxes SET highestmodseq=? WHERE id=?", (modseq, self.mailbox_id))
                    own_write_end(conn, self.mailbox_id, self.path, clean)
        except (OSError, sqlite3.Error) as exc:
            raise self._io_error("expunge", exc) from exc
        self._catch_up()
        if error is not None:
            raise self._io_error("expunge", error)
        return done

    def copy(self, uids: Iterable[int], dest: Mailbox | str) -> list[tuple[int, int]]:
        """Copy messages (hard links where possible) into ``dest``; ``(src_uid, dst_uid)`` pairs."""
        return self._transfer(uids, dest, move=False)

    def move(self, uids: Iterable[int], dest: Mailbox | str) -> list[tuple[int, int]]:
        """Copy then expunge, in one index transaction."""
        return self._transfer(uids, dest, move=True)

    def _transfer(self, uids: Iterable[int], dest: Mailbox | str, *, move: bool) -> list[tuple[int, int]]:
        self._check()
        dest_name = dest.name if isinstance(dest, Mailbox) else dest
        dest_id, dest_name = self._owner.resolve(dest_name)
        dest_path = self._owner.folder_path(dest_name)
        dest_cur = os.path.join(dest_path, "cur")
        cur = os.path.join(self.path, "cur")
        pairs: list[tuple[int, int]] = []
        placed: list[str] = []
        try:
            with self._index.write() as conn:
                src_row = conn.execute("SELECT highestmodseq FROM mailboxes WHERE id=?",
                                       (self.mailbox_id,)).fetchone()
                drow = conn.execute("SELECT uidnext, highestmodseq FROM mailboxes WHERE id=?",
                                    (dest_id,)).fetchone()
                if src_row is None:
                    self.deleted = True
                    raise NoSuchMailbox(f"mailbox {self.name!r} does not exist")
                if drow is None:
                    raise NoSuchMailbox(f"mailbox {dest_name!r} does not exist")
                self._load_keywords(conn)
                src_names = dict(self._kwnames)
                dest_kw = _KeywordTable(conn, dest_id, self._owner, dest_path)
                uidnext, dhms = drow
                dmodseq = dhms + 1 if dest_id != self.mailbox_id else src_row[0] + 1
                dclean = own_write_begin(conn, dest_id, dest_path)
                rows = []
                sources: list[tuple[int, str]] = []
                for uid, fname, fl, kw, date, size, eid, blob in self._rows(
                        uids, "fname, flags, keywords, internaldate, size, emailid, meta"):
                    names = [src_names[i] for i in range(MAX_KEYWORDS) if kw >> i & 1 and i in src_names]
                    nkw = dest_kw.bits(names)
                    base = maildir.new_base_name(size)
                    nfname = base + info_letters(fl, nkw)
                    target = os.path.join(dest_cur, nfname)
                    try:
                        maildir.link_or_copy(os.path.join(cur, fname), target)
                    except FileNotFoundError:
                        continue
                    placed.append(target)
                    rows.append((dest_id, uidnext, nfname, base, fl, nkw, dmodseq, date, size, eid, blob))
                    pairs.append((uid, uidnext))
                    sources.append((uid, fname))
                    uidnext += 1
                if rows:
                    maildir.fsync_dir(dest_cur)
                    conn.executemany(
                        "INSERT INTO messages(mailbox, uid, fname, base, flags, keywords, modseq, internaldate,"
                        " size, emailid, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
                    conn.execute("UPDATE mailboxes SET uidnext=?, highestmodseq=? WHERE id=?",
                                 (uidnext, dmodseq, dest_id))
                    own_write_end(conn, dest_id, dest_path, dclean)
                if move and sources:
                    smodseq = max(dmodseq, src_row[0]) + 1 if dest_id == self.mailbox_id else src_row[0] + 1
                    sclean = own_write_begin(conn, self.mailbox_id, self.path)
                    for _, fname in sources:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(cur, fname))
                    maildir.fsync_dir(cur)
                    record_expunges(conn, self.mailbox_id, [u for u, _ in sources], smodseq,
                                    self._owner.history_limit)
                    conn.execute("UPDATE mailboxes SET highestmodseq=? WHERE id=?", (smodseq, self.mailbox_id))
                    own_write_end(conn, self.mailbox_id, self.path, sclean)
        except BaseException as exc:
            for p in placed:
                maildir.unlink_quiet(p)
            self._reload_keywords()
            if isinstance(exc, (OSError, sqlite3.Error)):
                raise StorageIOError(self.user, dest_name, "move" if move else "copy", exc) from exc
            raise
        self._catch_up()
        self._owner.catch_up_open(dest_id)
        return pairs

    def sync(self) -> None:
        """Reconcile with the Maildir (new/ deliveries, flag renames, deletions) and publish changes.

        Cheap when nothing changed on disk (two stats and one small query).
        """
        self._check()
        try:
            with self._index.write() as conn:
                try:
                    reconcile(conn, self.mailbox_id, self.path, history_limit=self._owner.history_limit)
                except FileNotFoundError:
                    self._owner.forget_vanished(self.mailbox_id)
                    self.deleted = True
        except (OSError, sqlite3.Error) as exc:
            raise self._io_error("sync", exc) from exc
        self._catch_up()
        if self.deleted:
            raise NoSuchMailbox(f"mailbox {self.name!r} no longer exists")

    # ----------------------------------------------------------------------------- lifetime

    def subscribe(self, callback: Callable[[MessageEvent], None]) -> Subscription:
        """Shortcut for ``feed.subscribe_mailbox(user, mailbox_id, callback)``."""
        return self._owner.feed.subscribe_mailbox(self.user, self.mailbox_id, callback)

    def release(self) -> None:
        """Give back one reference taken by :meth:`UserStore.open`."""
        self._owner.release(self)

    def memory_bytes(self) -> int:
        """Approximate bytes held for per-message state (sort keys included once built)."""
        per = self._uids.itemsize + self._modseqs.itemsize + self._sysflags.itemsize
        keys = self._sort_keys.memory_bytes() if self._sort_keys is not None else 0
        return len(self._uids) * per + len(self._kw) * 100 + keys


class _KeywordTable:
    """Keyword allocation for a mailbox that may not be open (COPY/MOVE destination)."""

    def __init__(self, conn: sqlite3.Connection, mailbox_id: int, owner: UserStore, path: str) -> None:
        self.conn = conn
        self.mailbox_id = mailbox_id
        self.owner = owner
        self.path = path
        self.names = dict(conn.execute("SELECT idx, name FROM keywords WHERE mailbox=?", (mailbox_id,)))
        self.lower = {v.lower(): k for k, v in self.names.items()}

    def bits(self, names: list[str]) -> int:
        out = 0
        for name in names:
            idx = self.lower.get(name.lower())
            if idx is None:
                idx = next((i for i in range(MAX_KEYWORDS) if i not in self.names), None)
                if idx is None:
                    raise LimitExceeded("too many keywords in destination mailbox")
                self.conn.execute("INSERT INTO keywords(mailbox, idx, name) VALUES (?, ?, ?)",
                                  (self.mailbox_id, idx, name))
                self.names[idx] = name
                self.lower[name.lower()] = idx
                self.owner.write_dovecot_keywords(self.path, self.names)
            out |= 1 << idx
        return out

