"""The object of one open mailbox, shared by every session of the process that selected it.

Three parts, each with one writer: the index rows (:mod:`imapd.store.mailindex`, SQL only), the message
files (:mod:`imapd.store.maildir`), and the in-memory state (:mod:`imapd.store.mailstate`, arrays only).
A write is split the same way: :meth:`Mailbox._write` runs the SQL and file steps in one index
transaction and reads what the index now holds beyond the in-memory HIGHESTMODSEQ (an
:class:`~imapd.store.mailindex.IndexDelta`); :meth:`Mailbox._apply` applies that delta to the arrays and
publishes it on the change feed. Own writes, other processes' writes and Maildir changes found by
:meth:`sync` take the same path and are published exactly once. The first part needs no event loop and
may run on a worker thread; every method that touches the index holds the user's index lock. The arrays
are read without a lock, so the apply must run on the thread that reads them: a server that calls the
write methods from a worker thread sets ``Store.applier`` to hand each delta to its event loop.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from imapd.store import dovecot, maildir
from imapd.store.changefeed import FlagsChanged, MessageEvent, MessagesAdded, MessagesExpunged, Subscription
from imapd.store.content import MessageContent
from imapd.store.errors import NoSuchMailbox, StorageIOError
from imapd.store.flags import PASSED, info_letters, split_flags, system_flag_names
from imapd.store.fts import searchable
from imapd.store.mailindex import (
    IndexDelta,
    KeywordTable,
    MessageRow,
    changes_since,
    expunged_since,
    fname_of_base,
    insert_messages,
    load_mailbox,
    mailbox_counters,
    new_emailid,
    record_expunges,
    select_rows,
    set_counters,
    size_totals,
    uids_changed_since,
    update_flags,
)
from imapd.store.mailstate import MailboxState
from imapd.store.metadata import parse_to_blob
from imapd.store.pacing import GilPacer
from imapd.store.reconcile import distrust_young_mtimes, own_write_begin, own_write_end, reconcile
from imapd.store.sortkeys import SortKeys

if TYPE_CHECKING:
    from imapd.store.userstore import UserStore

__all__ = ["AppendItem", "FlagMode", "Mailbox", "MailboxStatus", "MessageInfo", "StoreResult"]

FlagMode = Literal["add", "remove", "replace"]
Progress = Callable[[int, "int | None"], None]
"""``progress(done, total)``, called by long loops (the session turns it into RFC 9585 INPROGRESS)."""


_UNNAMED_MAX = 16
"""An APPEND of at most this many messages writes them as unnamed files (``maildir.write_unnamed``)."""

_COMMIT_KINDS: dict[type, str] = {MessagesAdded: "append", MessagesExpunged: "expunge", FlagsChanged: "flags"}
"""The change channel's ``kind`` of a commit, by its last event (``ChangeFeed.committed``)."""


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
    savedate: int = 0
    """RFC 8514 save date, unix seconds: when the message entered this mailbox (INTERNALDATE for messages
    stored before the index kept it)."""
    threadid: str | None = None
    """RFC 8474 THREADID, None when not known (stored before the index kept it, or never parsed)."""


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
    deleted: int = 0
    """Messages with ``\\Deleted`` (STATUS DELETED, RFC 9051)."""
    deleted_size: int = 0
    """Octets an EXPUNGE would free (STATUS DELETED-STORAGE, RFC 9208)."""


class Mailbox(MessageContent):
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
        self._state = MailboxState(self.user, mailbox_id)
        self.uidvalidity = 0
        self.mailboxid = ""
        self.special_use: str | None = None
        self._sort_keys: SortKeys | None = None
        self._load()

    # ----------------------------------------------------------------- loading and catching up

    def _load(self) -> None:
        with self._index.lock:
            got = load_mailbox(self._index.conn, self.mailbox_id)
            if got is None:
                raise NoSuchMailbox(f"mailbox {self.name!r} does not exist")
            self.uidvalidity, self.mailboxid, self.special_use = got.uidvalidity, got.guid, got.special_use
            self._state.load(got.rows, got.highestmodseq, got.uidnext, got.keywords)

    @property
    def uidnext(self) -> int:
        return self._state.uidnext

    @property
    def highestmodseq(self) -> int:
        return self._state.highestmodseq

    def read_changes(self) -> IndexDelta:
        """What the index holds beyond the in-memory state (SQL only; any thread)."""
        with self._index.lock:
            return changes_since(self._index.conn, self.mailbox_id, self._state.highestmodseq)

    def _apply(self, delta: IndexDelta) -> None:
        """Apply a delta to the arrays and publish it (no I/O). A stale delta is read again."""
        with self._index.lock:
            if delta.since != self._state.highestmodseq:
                delta = self.read_changes()
            if delta.deleted:
                self.deleted = True
            events = self._state.apply(delta)
            feed = self._owner.feed
            for ev in events:
                feed.publish(ev)
            if events and feed.on_commit is not None:
                feed.committed(self.user, self.name, self.uidvalidity, self._state.highestmodseq,
                               _COMMIT_KINDS.get(type(events[-1]), "flags"))

    def catch_up(self) -> None:
        """Apply index changes newer than the in-memory HIGHESTMODSEQ (any writer's) and publish them."""
        with self._index.lock:
            self._apply(self.read_changes())

    def _after_write(self) -> None:
        """Read what the write changed; apply it here, or hand it to ``Store.applier`` when one is set
        (a server that runs writes on a worker thread applies deltas on its event loop)."""
        applier = self._owner.store.applier
        if applier is None:
            self.catch_up()
        else:
            applier(self, self.read_changes())

    def apply(self, delta: IndexDelta) -> None:
        """Apply a delta returned by a write (see ``Store.applier``) and publish its events."""
        self._apply(delta)

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One index transaction for a write; storage errors become StorageIOError, then the catch-up runs."""
        self._check()
        with self._index.lock:
            try:
                with self._index.write() as conn:
                    yield conn
            except (OSError, sqlite3.Error) as exc:
                raise self._io_error(action, exc) from exc
            finally:
                self._after_write()

    @property
    def _watched(self) -> bool:
        return self._owner.store.watching

    def _counters(self, conn: sqlite3.Connection) -> tuple[int, int]:
        try:
            return mailbox_counters(conn, self.mailbox_id, self.name)
        except NoSuchMailbox:
            self.deleted = True
            raise

    def _keyword_table(self, conn: sqlite3.Connection, mailbox_id: int | None = None,
                       path: str | None = None, name: str | None = None) -> KeywordTable:
        folder = path or self.path
        return KeywordTable(conn, mailbox_id or self.mailbox_id, name or self.name,
                            lambda names: self._owner.write_dovecot_keywords(folder, names))

    def _check(self) -> None:
        if self.deleted:
            raise NoSuchMailbox(f"mailbox {self.name!r} was deleted")

    def _io_error(self, action: str, exc: BaseException) -> StorageIOError:
        return StorageIOError(self.user, self.name, action, exc)

    # ----------------------------------------------------------------------------- reading

    @property
    def exists(self) -> int:
        return len(self._state.uids)

    def uids(self) -> array[int]:
        """A copy of the UIDs in ascending order."""
        return array("I", self._state.uids)

    @property
    def uid_array(self) -> array[int]:
        """The live UID array, shared without copying (session views hold it).

        Contract: new UIDs are only ever appended in place (they are larger than every existing one);
        an expunge replaces the array with a new object. So a holder that remembers how many entries it
        has seen keeps a stable prefix until it rebinds to the new array.
        """
        return self._state.uids

    def __contains__(self, uid: int) -> bool:
        return self._state.pos(uid) >= 0

    def flags(self, uid: int) -> tuple[str, ...] | None:
        """Flags of ``uid`` (system flags first, then keywords), or None if there is no such message."""
        pos = self._state.pos(uid)
        return None if pos < 0 else self._state.flags_at(pos)

    def flag_rows(self, uids: Sequence[int]) -> tuple[list[int], list[tuple[str, ...]], list[int]]:
        """UIDs, flags and MODSEQs of those of ``uids`` (ascending) that exist: FETCH (FLAGS) of many
        messages in one call (:meth:`MailboxState.flag_rows`)."""
        return self._state.flag_rows(uids)

    def modseq(self, uid: int) -> int | None:
        pos = self._state.pos(uid)
        return None if pos < 0 else self._state.modseqs[pos]

    def keywords(self) -> list[str]:
        """Every keyword defined in this mailbox (for the FLAGS / PERMANENTFLAGS responses)."""
        names = self._state.kwnames
        return [names[i] for i in sorted(names)]

    def unseen_count(self) -> int:
        return self._state.unseen_count()

    def first_unseen_uid(self) -> int | None:
        return self._state.first_unseen_uid()

    def changed_since(self, modseq: int) -> list[tuple[int, tuple[str, ...], int]]:
        """``(uid, flags, modseq)`` for every message with MODSEQ > ``modseq``, ascending UID.

        Costs the number of changes, not the mailbox size: the UIDs come from the index's MODSEQ index,
        the values from the in-memory arrays (which the index never runs ahead of for this process).
        """
        state = self._state
        if modseq >= state.highestmodseq:
            return []
        with self._index.lock:
            uids = uids_changed_since(self._index.conn, self.mailbox_id, modseq)
            out = []
            for uid in uids:
                pos = state.pos(uid)
                if pos < 0 or state.modseqs[pos] <= modseq:
                    continue  # expunged or not yet caught up in memory: reported by the change feed instead
                out.append((uid, state.flags_at(pos), state.modseqs[pos]))
        return out

    def expunged_since(self, modseq: int) -> tuple[list[int], bool]:
        """UIDs expunged after ``modseq``, and whether the history reaches back that far.

        When the second value is False the list is incomplete: the caller must fall back to comparing
        UID sets (QRESYNC without known-uids: send VANISHED for the whole missing range).
        """
        with self._index.lock:
            return expunged_since(self._index.conn, self.mailbox_id, modseq)

    def _rows(self, uids: Iterable[int] | None, cols: str) -> list[Any]:
        with self._index.lock:
            return select_rows(self._index.conn, self.mailbox_id, uids, cols)

    def message_info(self, uids: Iterable[int]) -> list[MessageInfo]:
        """Size, INTERNALDATE, EMAILID, MODSEQ, flags, save date and THREADID of the given (existing) UIDs, ascending."""
        rows = self._rows(uids, "size, internaldate, emailid, modseq, flags, keywords, "
                                "coalesce(savedate, internaldate), threadid")
        names = self._state.names
        return [MessageInfo(uid, size, date, eid, ms, names(fl, kw), saved, tid)
                for uid, size, date, eid, ms, fl, kw, saved, tid in rows]

    def text_unanswered(self, needle: str) -> set[int] | None:
        """The UIDs of this mailbox the full-text index cannot answer a search for ``needle`` for (not
        indexed yet, or unreadable; the caller tests those itself), or None when the index cannot be used
        at all (disabled, broken, or a needle it cannot look up). May include UIDs expunged meanwhile."""
        if not searchable(needle):
            return None
        ti = self._owner.texts.get(self.mailbox_id)
        if ti is None:
            return None
        try:
            unanswered = ti.missing(self._state.uids)
        except sqlite3.Error:
            return None
        if unanswered and ti.pending():
            self._owner.texts.stale(self.mailbox_id)
        return unanswered

    def text_matches(self, column: str, needle: str, field: str | None = None) -> set[int] | None:
        """UIDs of the messages the full-text index covers whose ``column`` contains ``needle`` (see
        :meth:`imapd.store.fts.TextIndex.search`); exactly the scan's answer for those. None: no index."""
        ti = self._owner.texts.get(self.mailbox_id)
        if ti is None:
            return None
        try:
            return ti.search(column, needle, field)
        except sqlite3.Error:
            return None

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
            size, deleted, deleted_size = size_totals(self._index.conn, self.mailbox_id)
        return MailboxStatus(self.mailbox_id, self.exists, self.unseen_count(), size, self.uidnext,
                             self.uidvalidity, self.highestmodseq, self.mailboxid, deleted, deleted_size)

    # ------------------------------------------------------------------------------ writing

    def append(self, data: bytes, flags: Iterable[str] = (), internaldate: float | None = None) -> int:
        """Deliver one message into ``cur/`` with its flags; return its UID once it is durable."""
        return self.append_many([AppendItem(data, tuple(flags), internaldate)])[0]

    def append_many(self, items: Sequence[AppendItem], *, fsync: bool = True,
                    text_later: bool = False) -> list[int]:
        """Deliver several messages in one index transaction (MULTIAPPEND); all or nothing.

        ``text_later``: queue the messages for the full-text index rather than index them before returning
        (LMTP: see :mod:`imapd.store.textindexes`).

        ``fsync=False`` is the bulk-import path (benchmarks, migrations): the message files and ``cur/``
        are not fsynced one by one, so a power loss can lose messages the index already lists (the next
        reconcile drops those rows). Call ``os.sync()`` at the end of an import for durability.
        """
        self._check()
        parsed = [split_flags(it.flags) for it in items]
        blobs = [parse_to_blob(it.data) for it in items]
        tmp: list[tuple[str, str]] = []  # (path in tmp/, base), or ("", base) for a file of ``unnamed``
        unnamed: dict[int, int] = {}  # item -> descriptor of its O_TMPFILE file (few at a time: a MULTIAPPEND
        placed: list[str] = []        # of many uses tmp/ names, which hold no descriptor open)
        try:
            for n, it in enumerate(items):
                got = (maildir.write_unnamed(self.path, it.data, it.internaldate, fsync=fsync)
                       if len(items) <= _UNNAMED_MAX else None)
                if got is not None:
                    unnamed[n] = got[0]
                    tmp.append(("", got[1]))
                else:
                    tmp.append(maildir.write_tmp(self.path, it.data, it.internaldate, fsync=fsync))
        except OSError as exc:
            self._drop_tmp(tmp, unnamed)
            raise self._io_error("append", exc) from exc
        uids: list[int] = []
        try:
            with self._write("append") as conn:
                self._owner.enforce_quota(conn, messages=len(items), storage_bytes=sum(len(it.data) for it in items))
                uidnext, hms = self._counters(conn)
                modseq = hms + 1
                kwtable = self._keyword_table(conn)
                clean = own_write_begin(conn, self.mailbox_id, self.path, self._watched)
                rows: list[MessageRow] = []
                for n, (it, (bits, kwnames), blob, (tpath, base)) in enumerate(zip(items, parsed, blobs, tmp,
                                                                                     strict=True)):
                    kw = kwtable.bits(kwnames)
                    fname = base + info_letters(bits, kw)
                    dest = os.path.join(self.path, "cur", fname)
                    if tpath:
                        os.link(tpath, dest)
                    else:
                        maildir.link_unnamed(unnamed[n], dest)
                    placed.append(dest)
                    date = int(it.internaldate if it.internaldate is not None else time.time())
                    rows.append((self.mailbox_id, uidnext, fname, base, bits, kw, modseq, date, len(it.data),
                                 new_emailid(), blob))
                    uids.append(uidnext)
                    uidnext += 1
                if fsync:
                    maildir.fsync_dir(os.path.join(self.path, "cur"))
                insert_messages(conn, rows)
                set_counters(conn, self.mailbox_id, highestmodseq=modseq, uidnext=uidnext)
                own_write_end(conn, self.mailbox_id, self.path, clean, self._watched)
                dovecot.record_uids(conn, self.mailbox_id, self.path, [(r[1], r[3]) for r in rows])
        except BaseException:
            for p in placed:
                maildir.unlink_quiet(p)
            raise
        finally:
            self._drop_tmp(tmp, unnamed)
        self._owner.texts.add(self.mailbox_id, [(uid, it.data, blob) for uid, it, blob in zip(uids, items, blobs,
                                                                                              strict=True)],
                              later=text_later)
        return uids

    @staticmethod
    def _drop_tmp(tmp: list[tuple[str, str]], unnamed: dict[int, int]) -> None:
        """Remove the tmp/ names and close the unnamed files of an APPEND (linked into cur/ or not)."""
        for path, _ in tmp:
            if path:
                maildir.unlink_quiet(path)
        for fd in unnamed.values():
            os.close(fd)

    def store_flags(self, uids: Iterable[int], mode: FlagMode, flags: Iterable[str],
                    unchanged_since: int | None = None) -> StoreResult:
        """Change flags (one new MODSEQ for the whole operation); the file names follow."""
        self._check()
        if mode not in ("add", "remove", "replace"):
            raise ValueError(f"bad mode {mode!r}")
        bits, kwnames = split_flags(flags)
        renames: list[tuple[str, str]] = []
        changed: list[tuple[int, tuple[str, ...], int]] = []
        failed: list[int] = []
        cur = os.path.join(self.path, "cur")
        try:
            with self._write("store flags") as conn:
                modseq = self._counters(conn)[1] + 1
                kwtable = self._keyword_table(conn)
                kwbits = kwtable.bits(kwnames, create=mode != "remove")
                clean = own_write_begin(conn, self.mailbox_id, self.path, self._watched)
                updates = []
                for uid, fl, kw, ms, fname in select_rows(conn, self.mailbox_id, uids,
                                                          "flags, keywords, modseq, fname"):
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
                        src, dst = os.path.join(cur, fname), os.path.join(cur, nfname)
                        try:
                            os.rename(src, dst)
                        except FileNotFoundError:
                            continue  # changed or removed behind our back; the next sync sorts it out
                        renames.append((src, dst))
                    updates.append((nfl, nkw, modseq, nfname, self.mailbox_id, uid))
                    changed.append((uid, (*system_flag_names(nfl), *kwtable.names_of(nkw)), modseq))
                if updates:
                    if renames:
                        maildir.fsync_dir(cur)
                    update_flags(conn, updates)
                    set_counters(conn, self.mailbox_id, highestmodseq=modseq)
                    own_write_end(conn, self.mailbox_id, self.path, clean, self._watched)
        except BaseException:
            for src, dst in reversed(renames):
                with contextlib.suppress(OSError):
                    os.rename(dst, src)
            raise
        return StoreResult(changed, failed)

    def expunge(self, uids: Iterable[int], *, progress: Progress | None = None) -> list[int]:
        """Remove messages (one MODSEQ for the operation, recorded in the expunge history); ``progress``
        is called with (files removed, total) as it goes."""
        done: list[int] = []
        error: OSError | None = None
        cur = os.path.join(self.path, "cur")
        pace = GilPacer()  # a big expunge must not starve the other threads (see imapd.store.pacing)
        with self._write("expunge") as conn:
            modseq = self._counters(conn)[1] + 1
            clean = own_write_begin(conn, self.mailbox_id, self.path, self._watched)
            rows = select_rows(conn, self.mailbox_id, uids, "fname", pace)
            for n, (uid, fname) in enumerate(rows):
                pace()
                if progress is not None:
                    progress(n, len(rows))
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
                record_expunges(conn, self.mailbox_id, done, modseq, self._owner.history_limit, pace)
                set_counters(conn, self.mailbox_id, highestmodseq=modseq)
                own_write_end(conn, self.mailbox_id, self.path, clean, self._watched)
                dovecot.compact_uidlist(conn, self.mailbox_id, self.path, self.exists - len(done))
        self._owner.texts.remove(self.mailbox_id, done)
        if error is not None:
            raise self._io_error("expunge", error)
        return done

    def copy(self, uids: Iterable[int], dest: Mailbox | str, *,
             progress: Progress | None = None) -> list[tuple[int, int]]:
        """Copy messages (hard links where possible) into ``dest``; ``(src_uid, dst_uid)`` pairs.
        ``progress`` is called with (messages placed, total) as it goes."""
        return self._transfer(uids, dest, move=False, progress=progress)

    def move(self, uids: Iterable[int], dest: Mailbox | str, *,
             progress: Progress | None = None) -> list[tuple[int, int]]:
        """Copy then expunge, in one index transaction."""
        return self._transfer(uids, dest, move=True, progress=progress)

    def _transfer(self, uids: Iterable[int], dest: Mailbox | str, *, move: bool,
                  progress: Progress | None = None) -> list[tuple[int, int]]:
        self._check()
        dest_name = dest.name if isinstance(dest, Mailbox) else dest
        dest_id, dest_name = self._owner.resolve(dest_name)
        dest_path = self._owner.folder_path(dest_name)
        dest_cur = os.path.join(dest_path, "cur")
        cur = os.path.join(self.path, "cur")
        pairs: list[tuple[int, int]] = []
        placed: list[str] = []
        try:
            with self._write("move" if move else "copy") as conn:
                src_hms = self._counters(conn)[1]
                try:
                    uidnext, dhms = mailbox_counters(conn, dest_id, dest_name)
                except NoSuchMailbox:
                    raise NoSuchMailbox(f"mailbox {dest_name!r} does not exist") from None
                src_kw = self._keyword_table(conn)
                dest_kw = self._keyword_table(conn, dest_id, dest_path, dest_name)
                dmodseq = dhms + 1 if dest_id != self.mailbox_id else src_hms + 1
                dclean = own_write_begin(conn, dest_id, dest_path, self._watched)
                rows: list[MessageRow] = []
                sources: list[tuple[int, str]] = []
                pace = GilPacer()
                found = select_rows(conn, self.mailbox_id, uids,
                                    "fname, flags, keywords, internaldate, size, emailid, meta", pace)
                for n, (uid, fname, fl, kw, date, size, eid, blob) in enumerate(found):
                    pace()
                    if progress is not None:
                        progress(n, len(found))
                    nkw = dest_kw.bits(src_kw.names_of(kw))
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
                if rows and not move:  # a MOVE stays inside the user's one quota root: usage is unchanged
                    self._owner.enforce_quota(conn, messages=len(rows), storage_bytes=sum(r[8] for r in rows))
                if rows:
                    maildir.fsync_dir(dest_cur)
                    insert_messages(conn, rows)
                    set_counters(conn, dest_id, highestmodseq=dmodseq, uidnext=uidnext)
                    own_write_end(conn, dest_id, dest_path, dclean, self._watched)
                    dovecot.record_uids(conn, dest_id, dest_path, [(r[1], r[3]) for r in rows])
                if move and sources:
                    smodseq = max(dmodseq, src_hms) + 1 if dest_id == self.mailbox_id else src_hms + 1
                    sclean = own_write_begin(conn, self.mailbox_id, self.path, self._watched)
                    for _, fname in sources:
                        pace()
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(cur, fname))
                    maildir.fsync_dir(cur)
                    record_expunges(conn, self.mailbox_id, [u for u, _ in sources], smodseq,
                                    self._owner.history_limit, pace)
                    set_counters(conn, self.mailbox_id, highestmodseq=smodseq)
                    own_write_end(conn, self.mailbox_id, self.path, sclean, self._watched)
        except StorageIOError as exc:
            for p in placed:
                maildir.unlink_quiet(p)
            raise StorageIOError(self.user, dest_name, exc.action, exc.__cause__ or exc) from exc.__cause__
        except BaseException:
            for p in placed:
                maildir.unlink_quiet(p)
            raise
        self._owner.catch_up_open(dest_id)
        if pairs:
            if move:
                self._owner.texts.remove(self.mailbox_id, [u for u, _ in pairs])
            self._owner.texts.stale(dest_id)  # copies are indexed by the backfill, off this command
        return pairs

    def sync(self) -> None:
        """Reconcile with the Maildir (new/ deliveries, flag renames, deletions) and publish changes.

        Cheap when nothing changed on disk (two stats and one small query).
        """
        with self._write("sync") as conn:
            try:
                if reconcile(conn, self.mailbox_id, self.path, history_limit=self._owner.history_limit,
                             watched=self._watched):
                    self._owner.texts.stale(self.mailbox_id)
            except FileNotFoundError:
                self._owner.forget_vanished(self.mailbox_id)
                self.deleted = True
        if self.deleted:
            raise NoSuchMailbox(f"mailbox {self.name!r} no longer exists")

    def sync_names(self, cur_names: set[str], new_changed: bool = True) -> None:
        """Sync after the watcher saw changes to these ``cur/`` file names (and any in ``new/``).

        Each name is checked against the index (on disk exactly when the index lists that file name):
        a foreign change is found even when it left cur/'s mtime as our own write set it (same tick), and
        our own changes cost a stat and an indexed lookup each, never a listing.
        """
        with self._write("sync") as conn:
            force = len(cur_names) > 256 or not self._names_match(conn, cur_names)
            try:
                if reconcile(conn, self.mailbox_id, self.path, history_limit=self._owner.history_limit,
                             force=force, watched=self._watched, force_new=new_changed):
                    self._owner.texts.stale(self.mailbox_id)
            except FileNotFoundError:
                self._owner.forget_vanished(self.mailbox_id)
                self.deleted = True
        if self.deleted:
            raise NoSuchMailbox(f"mailbox {self.name!r} no longer exists")

    def _names_match(self, conn: sqlite3.Connection, names: set[str]) -> bool:
        cur = os.path.join(self.path, "cur")
        for name in names:
            listed = fname_of_base(conn, self.mailbox_id, maildir.base_of(name)) == name
            if listed != os.path.exists(os.path.join(cur, name)):
                return False
        return True

    def unwatched(self) -> None:
        """This process's watcher no longer covers the folder (evicted, watcher stopped, shutdown): young
        directory mtimes it let us trust are marked racy again, so the next look verifies them."""
        if self.deleted:
            return
        with contextlib.suppress(OSError, sqlite3.Error), self._index.write() as conn:
            distrust_young_mtimes(conn, self.mailbox_id)

    # ----------------------------------------------------------------------------- lifetime

    def subscribe(self, callback: Callable[[MessageEvent], None]) -> Subscription:
        """Shortcut for ``feed.subscribe_mailbox(user, mailbox_id, callback)``."""
        return self._owner.feed.subscribe_mailbox(self.user, self.mailbox_id, callback)

    def release(self) -> None:
        """Give back one reference taken by :meth:`UserStore.open`."""
        self._owner.release(self)

    def memory_bytes(self) -> int:
        """Approximate bytes held for per-message state (sort keys included once built)."""
        keys = self._sort_keys.memory_bytes() if self._sort_keys is not None else 0
        return self._state.memory_bytes() + keys
