"""One user's mail: the Maildir++ root, the folder list, subscriptions, and the per-user index.

Get it from :meth:`imapd.store.Store.user`. Mailbox objects come from :meth:`UserStore.open` and are
shared process-wide through the store's registry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import msgspec

from imapd.store import annotate, dovecot, maildir, quota
from imapd.store.changefeed import ChangeFeed, MailboxListChanged
from imapd.store.errors import (
    CannotDeleteInbox,
    InvalidMailboxName,
    MailboxExists,
    MailboxHasChildren,
    NoSuchMailbox,
    StorageIOError,
)
from imapd.store.index import UserIndex
from imapd.store.mailbox import Mailbox, MailboxStatus
from imapd.store.mailindex import drop_mailbox
from imapd.store.names import INBOX, SEPARATOR, decode_folder_dir, folder_dir_name, normalize, parent_names
from imapd.store.quota import QuotaLimits, QuotaUsage
from imapd.store.reconcile import reconcile
from imapd.store.textindexes import TextIndexes

if TYPE_CHECKING:
    from imapd.store.store import Store

__all__ = ["DEFAULT_FOLDERS", "SPECIAL_USES", "MailboxInfo", "UserStore"]

log = logging.getLogger(__name__)

SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
DEFAULT_FOLDERS = (("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"),
                   ("Archive", "\\Archive"))
INDEX_FILE = "imapd-index.sqlite"
_TRASH_PREFIX = "imapd-trash."
_RESTORE_MODSEQ_JUMP = 1 << 31


class MailboxInfo(msgspec.Struct, frozen=True):
    name: str
    mailbox_id: int | None
    """None for a \\Noselect parent that exists only because it has children."""
    special_use: str | None
    subscribed: bool
    has_children: bool
    noselect: bool
    mailboxid: str | None = None
    """RFC 8474 MAILBOXID; set by :meth:`UserStore.create_mailbox` only (LIST does not need it)."""


class UserStore:
    def __init__(self, store: Store, user: str, root: str) -> None:
        self.store = store
        self.user = user
        self.root = root
        self.feed: ChangeFeed = store.feed
        self.history_limit = store.history_limit
        self.index = UserIndex(os.path.join(root, INDEX_FILE), durability=store.durability,
                               guard=store.index_guard(user))
        self.texts = TextIndexes(self)
        self._uidlist_checked: set[int] = set()
        for entry in os.scandir(root):
            if entry.name.startswith(_TRASH_PREFIX):
                shutil.rmtree(entry.path, ignore_errors=True)

    # ------------------------------------------------------------------------------ paths

    def folder_path(self, name: str) -> str:
        return self.root if name == INBOX else os.path.join(self.root, folder_dir_name(name))

    def _io(self, action: str, name: str | None, exc: BaseException) -> StorageIOError:
        return StorageIOError(self.user, name, action, exc)

    # ------------------------------------------------------------------------ index of folders

    def _disk_folders(self, known: Collection[str] = ()) -> dict[str, str]:
        """name -> dir for every Maildir++ folder on disk (INBOX included).

        A ``.Name`` directory is a folder if it has ``cur/``, or if the index knows it: a missing ``cur/``,
        ``new/`` or ``tmp/`` is recreated then, as Dovecot does, rather than losing the folder's UIDVALIDITY.
        """
        out = {INBOX: self.root}
        with os.scandir(self.root) as it:
            for entry in it:
                if entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                    name = decode_folder_dir(entry.name)
                    if name is None:
                        continue
                    if os.path.isdir(os.path.join(entry.path, "cur")):
                        out[name] = entry.path
                    elif name in known:
                        with contextlib.suppress(OSError):
                            maildir.ensure_maildir(entry.path)
                            out[name] = entry.path
        return out

    def _index_new(self, conn: sqlite3.Connection, name: str, special_use: str | None = None) -> int:
        """Create the index row of a folder that exists on disk (importing Dovecot's UIDs) and index it."""
        path = self.folder_path(name)
        maildir.ensure_maildir(path)
        uidlist = dovecot.read_uidlist(path)
        guid = secrets.token_hex(16)
        if uidlist is not None:
            uidvalidity, uidnext, floor = uidlist.uidvalidity, uidlist.uidnext, 1
            conn.execute("INSERT INTO meta(key, value) VALUES ('last_uidvalidity', ?) ON CONFLICT(key) "
                         "DO UPDATE SET value=max(value, excluded.value)", (uidvalidity,))
            taken = conn.execute("SELECT 1 FROM mailboxes WHERE guid=?", (uidlist.guid,)).fetchone()
            if uidlist.guid is not None and taken is None:
                guid = uidlist.guid  # Dovecot's mailbox GUID becomes the MAILBOXID, and ours stays the same
        else:
            uidvalidity, uidnext, floor = self.index.next_uidvalidity(int(time.time())), 1, 0
        cur = conn.execute(
            "INSERT INTO mailboxes(name, guid, uidvalidity, uidnext, highestmodseq, history_floor, special_use)"
            " VALUES (?, ?, ?, ?, 1, ?, ?)",
            (name, guid, uidvalidity, uidnext, floor, special_use))
        mailbox_id = int(cur.lastrowid or 0)
        kws = dovecot.read_keywords(path)
        conn.executemany("INSERT INTO keywords(mailbox, idx, name) VALUES (?, ?, ?)",
                         [(mailbox_id, i, n) for i, n in kws.items() if i < 26])
        reconcile(conn, mailbox_id, path, history_limit=self.history_limit, force=True,
                  uid_hints=uidlist.uids if uidlist else None)
        dovecot.ensure_uidlist(conn, mailbox_id, path)
        return mailbox_id

    def _sync_folders(self) -> dict[str, tuple[int, str | None]]:
        """Bring the mailboxes table in line with the folders on disk; name -> (id, special-use)."""
        gone: list[tuple[str, int]] = []
        added: list[tuple[str, int]] = []
        renamed: list[tuple[str, str, int]] = []
        with self.index.write() as conn:
            rows = {n: (i, su) for i, n, su in conn.execute("SELECT id, name, special_use FROM mailboxes")}
            disk = self._disk_folders(set(rows))
            for old, new, mid in self._recover_renames(conn, rows, disk):
                rows[new] = rows.pop(old)
                renamed.append((old, new, mid))
            for name, (mid, _) in list(rows.items()):
                if name not in disk:
                    self._drop_rows(conn, mid)
                    del rows[name]
                    gone.append((name, mid))
            for name in disk:
                if name not in rows:
                    mid = self._index_new(conn, name)
                    rows[name] = (mid, None)
                    added.append((name, mid))
        for old, new, mid in renamed:
            self._renamed_open(mid, new)
            self.feed.publish_list(MailboxListChanged(self.user, "renamed", new, old_name=old, mailbox_id=mid))
        for name, mid in gone:
            self._mark_deleted(mid)
            self.feed.publish_list(MailboxListChanged(self.user, "deleted", name, mailbox_id=mid))
        for name, mid in added:
            if name != INBOX:
                self.feed.publish_list(MailboxListChanged(self.user, "created", name, mailbox_id=mid))
        return rows

    def _recover_renames(self, conn: sqlite3.Connection, rows: dict[str, tuple[int, str | None]],
                         disk: dict[str, str]) -> list[tuple[str, str, int]]:
        """Folders renamed on disk whose index row still has the old name (a crash between the directory
        rename and the COMMIT of RENAME, or a rename by hand): matched by the uidlist's mailbox GUID."""
        missing = {n for n in rows if n not in disk}
        fresh = [n for n in disk if n not in rows]
        if not missing or not fresh:
            return []
        by_guid = {str(g): (n, int(i)) for i, n, g in conn.execute("SELECT id, name, guid FROM mailboxes")
                   if n in missing}
        out = []
        for name in fresh:
            head = dovecot.uidlist_head(disk[name])
            hit = by_guid.pop(head[2], None) if head is not None and head[2] is not None else None
            if hit is None:
                continue
            old, mid = hit
            conn.execute("UPDATE mailboxes SET name=? WHERE id=?", (name, mid))
            if conn.execute("DELETE FROM subscriptions WHERE name=?", (old,)).rowcount:
                conn.execute("INSERT OR IGNORE INTO subscriptions(name) VALUES (?)", (name,))
            out.append((old, name, mid))
        return out

    def _renamed_open(self, mailbox_id: int, new: str) -> None:
        mb = self.store.registry_get(self.user, mailbox_id)
        if mb is not None:
            mb.name = new
            mb.path = self.folder_path(new)

    def _drop_rows(self, conn: sqlite3.Connection, mailbox_id: int) -> None:
        drop_mailbox(conn, mailbox_id)
        self.texts.drop(mailbox_id)  # a cache: gone even if the transaction were rolled back

    def _mark_deleted(self, mailbox_id: int) -> None:
        mb = self.store.registry_get(self.user, mailbox_id)
        if mb is not None:
            mb.deleted = True

    def forget_vanished(self, mailbox_id: int) -> None:
        """A folder's directory disappeared: drop its rows (called inside a write transaction)."""
        self._drop_rows(self.index.conn, mailbox_id)

    def resolve(self, name: str) -> tuple[int, str]:
        """(mailbox id, canonical name) of an existing selectable mailbox, indexing it on first sight."""
        name = normalize(name)
        with self.index.lock:
            row = self.index.conn.execute("SELECT id FROM mailboxes WHERE name=?", (name,)).fetchone()
        path = self.folder_path(name)
        if row is not None and os.path.isdir(path):
            if not os.path.isdir(os.path.join(path, "cur")):
                try:
                    maildir.ensure_maildir(path)  # a lost cur/, new/ or tmp/ is recreated, the folder kept
                except OSError as exc:
                    raise self._io("open", name, exc) from exc
            self._check_uidlist(int(row[0]), name)
            return int(row[0]), name
        if row is None and not os.path.isdir(os.path.join(path, "cur")):
            raise NoSuchMailbox(f"mailbox {name!r} does not exist")
        rows = self._sync_folders()
        if name not in rows:
            raise NoSuchMailbox(f"mailbox {name!r} does not exist")
        return rows[name][0], name

    # --------------------------------------------------------------------------- mailboxes

    def open(self, name: str) -> Mailbox:
        """The shared Mailbox object (one more reference; call ``release()`` when done)."""
        mailbox_id, name = self.resolve(name)
        return self.store.acquire(self, mailbox_id, name)

    def release(self, mailbox: Mailbox) -> None:
        self.store.release(mailbox)

    def catch_up_open(self, mailbox_id: int) -> None:
        mb = self.store.registry_get(self.user, mailbox_id)
        if mb is not None:
            mb.catch_up()

    def index_changed(self) -> bool:
        """Catch up every open mailbox of this user if another process committed to the index since the
        last look (``PRAGMA data_version``): changes stored only in the index (a keyword past the 26 that
        have file-name letters, a MODSEQ-only change) reach this process's sessions without a file change."""
        with self.index.lock:
            if not self.index.changed_elsewhere():
                return False
        for mb in self.store.open_mailboxes():
            if mb.user == self.user and not mb.deleted:
                mb.catch_up()
        return True

    def on_cold_open(self, mailbox_id: int, name: str) -> None:
        """First open of a mailbox in this process: sweep stale ``tmp/`` files (36 hours, Maildir's rule)."""
        maildir.sweep_tmp(self.folder_path(name))
        self.texts.stale(mailbox_id)  # the backfill indexes what the full-text index lacks, if anything

    def _check_uidlist(self, mailbox_id: int, name: str) -> None:
        """Once per mailbox and process: make sure the index has not fallen behind the Maildir's
        ``dovecot-uidlist`` (an index file restored from a backup). If it has, the UIDs the Maildir lists
        are taken over and UIDNEXT moves past every UID it ever handed out, so none is given twice."""
        if mailbox_id in self._uidlist_checked:
            return
        self._uidlist_checked.add(mailbox_id)
        path = self.folder_path(name)
        head = dovecot.uidlist_head(path)
        if head is None:
            return
        with self.index.lock:
            row = self.index.conn.execute("SELECT uidvalidity, uidnext FROM mailboxes WHERE id=?",
                                          (mailbox_id,)).fetchone()
        if row is None or head[0] != row[0] or head[1] <= row[1]:
            return
        log.warning("%s/%s: the index is behind dovecot-uidlist (UIDNEXT %d < %d); re-reading the Maildir",
                    self.user, name, row[1], head[1])
        uidlist = dovecot.read_uidlist(path)
        try:
            with self.index.write() as conn:
                # MODSEQs the lost index handed out are unknown too: jump past any of them (RFC 7162 lets
                # HIGHESTMODSEQ only grow), and mark the expunge history before the jump as incomplete.
                conn.execute("UPDATE mailboxes SET uidnext=max(uidnext, ?), highestmodseq=highestmodseq+?, "
                             "history_floor=highestmodseq+? WHERE id=?",
                             (head[1], _RESTORE_MODSEQ_JUMP, _RESTORE_MODSEQ_JUMP, mailbox_id))
                reconcile(conn, mailbox_id, path, history_limit=self.history_limit, force=True,
                          uid_hints=uidlist.uids if uidlist else None)
        except (OSError, sqlite3.Error) as exc:
            raise self._io("open", name, exc) from exc
        self.catch_up_open(mailbox_id)

    def rebuild_index(self, name: str | None = None) -> list[tuple[str, int, int]]:
        """Rebuild the index rows of one mailbox (or all) from the Maildir: UIDs and UIDVALIDITY from
        ``dovecot-uidlist`` wherever it has them, keywords from ``dovecot-keywords`` and file names.

        What only the index held is lost: keywords past the 26 with file-name letters, EMAILIDs, save
        dates (RFC 8514: now the rebuild's time), the expunge history. THREADIDs are found again from the
        user's Message-ID table. Returns ``(name, uidvalidity, messages)`` per rebuilt mailbox.
        """
        out = []
        with self.index.write() as conn:
            rows = {n: (int(i), su) for i, n, su in conn.execute("SELECT id, name, special_use FROM mailboxes")}
            disk = self._disk_folders(set(rows))
            names = [normalize(name)] if name is not None else sorted(disk, key=lambda n: (n != INBOX, n))
            for n in names:
                if n not in disk:
                    raise NoSuchMailbox(f"mailbox {n!r} does not exist")
                old = rows.get(n)
                if old is not None:
                    self._drop_rows(conn, old[0])
                mid = self._index_new(conn, n, old[1] if old else None)
                dovecot.ensure_uidlist(conn, mid, self.folder_path(n), check_guid=True)
                uv, count = conn.execute("SELECT uidvalidity, (SELECT count(*) FROM messages WHERE mailbox=?) "
                                         "FROM mailboxes WHERE id=?", (mid, mid)).fetchone()
                out.append((n, int(uv), int(count)))
                if old is not None:
                    self._mark_deleted(old[0])
        return out

    def list_mailboxes(self) -> list[MailboxInfo]:
        """Every mailbox, INBOX first then by name; implied parents appear as \\Noselect."""
        rows = self._sync_folders()
        subscribed = set(self.subscriptions())
        names = set(rows)
        implied = {p for n in names for p in parent_names(n)} - names
        every = names | implied
        parents = {p for n in every for p in parent_names(n)}
        out = []
        for name in sorted(every, key=lambda n: (n != INBOX, n)):
            mid, su = rows.get(name, (None, None))
            out.append(MailboxInfo(name, mid, su, name in subscribed, name in parents, name in implied))
        return out

    def exists(self, name: str) -> bool:
        try:
            self.resolve(name)
        except (NoSuchMailbox, InvalidMailboxName):
            return False
        return True

    def has_children(self, name: str) -> bool:
        """Whether a folder lies below ``name``, from one scan of the user's directory (the IMAP4rev2
        SELECT says so without :meth:`list_mailboxes`, which syncs every folder)."""
        return bool(self._children_dirs(normalize(name)))

    def create_mailbox(self, name: str, special_use: str | None = None) -> MailboxInfo:
        """Create a mailbox (and any missing parents, RFC 3501 6.3.3)."""
        name = normalize(name)
        if special_use is not None and special_use not in SPECIAL_USES:
            raise InvalidMailboxName(f"unknown special-use {special_use}")
        rows = self._sync_folders()
        if name in rows or name == INBOX:
            raise MailboxExists(f"mailbox {name!r} already exists")
        created: list[tuple[str, int]] = []
        try:
            with self.index.write() as conn:
                for n in [*parent_names(name), name]:
                    if n in rows:
                        continue
                    path = self.folder_path(n)
                    os.makedirs(path, mode=0o700, exist_ok=True)
                    maildir.ensure_maildir(path)
                    with open(os.path.join(path, "maildirfolder"), "ab"):
                        pass
                    mid = self._index_new(conn, n, special_use if n == name else None)
                    created.append((n, mid))
                maildir.fsync_dir(self.root)
        except OSError as exc:
            raise self._io("create mailbox", name, exc) from exc
        for n, mid in created:
            self.feed.publish_list(MailboxListChanged(self.user, "created", n, mailbox_id=mid))
        mid = created[-1][1]
        with self.index.lock:
            row = self.index.conn.execute("SELECT guid FROM mailboxes WHERE id=?", (mid,)).fetchone()
        return MailboxInfo(name, mid, special_use, name in set(self.subscriptions()), False, False,
                           None if row is None else str(row[0]))

    def set_special_use(self, name: str, special_use: str | None) -> None:
        mid, _ = self.resolve(name)
        if special_use is not None and special_use not in SPECIAL_USES:
            raise InvalidMailboxName(f"unknown special-use {special_use}")
        with self.index.write() as conn:
            conn.execute("UPDATE mailboxes SET special_use=? WHERE id=?", (special_use, mid))

    def _children_dirs(self, name: str) -> list[str]:
        prefix = folder_dir_name(name) + "."
        with os.scandir(self.root) as it:
            return [e.name for e in it if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False)]

    def delete_mailbox(self, name: str) -> None:
        """Delete a mailbox and its messages.

        INBOX cannot be deleted. A mailbox with children is refused (:class:`MailboxHasChildren`), as
        Dovecot does for Maildir++: the layout has no way to keep a \\Noselect parent directory.
        """
        name = normalize(name)
        if name == INBOX:
            raise CannotDeleteInbox("INBOX cannot be deleted")
        mailbox_id, name = self.resolve(name)
        if self._children_dirs(name):
            raise MailboxHasChildren(f"mailbox {name!r} has children; delete them first")
        path = self.folder_path(name)
        trash = os.path.join(self.root, _TRASH_PREFIX + secrets.token_hex(8))
        try:
            with self.index.write() as conn:
                os.rename(path, trash)
                self._drop_rows(conn, mailbox_id)
            maildir.fsync_dir(self.root)
        except OSError as exc:
            raise self._io("delete mailbox", name, exc) from exc
        shutil.rmtree(trash, ignore_errors=True)
        self._mark_deleted(mailbox_id)
        self.feed.publish_list(MailboxListChanged(self.user, "deleted", name, mailbox_id=mailbox_id))

    def rename_mailbox(self, old: str, new: str) -> None:
        """Rename a mailbox and its children (ids, UIDVALIDITY and UIDs kept).

        Renaming INBOX moves all its messages into the new mailbox and leaves INBOX empty (RFC 3501);
        INBOX's children stay where they are.
        """
        old = normalize(old)
        new = normalize(new)
        _, old = self.resolve(old)
        if new == INBOX:
            raise MailboxExists("INBOX already exists")
        if new == old or new.startswith(old + SEPARATOR):
            raise InvalidMailboxName("cannot rename a mailbox into itself")
        rows = self._sync_folders()
        if new in rows:
            raise MailboxExists(f"mailbox {new!r} already exists")
        if old == INBOX:
            self.create_mailbox(new)
            inbox = self.open(INBOX)
            try:
                inbox.move(inbox.uids(), new)
            finally:
                inbox.release()
            return
        moves = [(folder_dir_name(old), folder_dir_name(new))]
        for d in self._children_dirs(old):
            moves.append((d, folder_dir_name(new) + d[len(folder_dir_name(old)):]))
        renamed_names: list[tuple[str, str, int]] = []
        for n in parent_names(new):
            if n not in rows:
                self.create_mailbox(n)
        done: list[tuple[str, str]] = []
        try:
            with self.index.write() as conn:
                for src, dst in moves:
                    if os.path.exists(os.path.join(self.root, dst)):
                        raise MailboxExists(f"mailbox {decode_folder_dir(dst)!r} already exists")
                    oname = decode_folder_dir(src)
                    known = conn.execute("SELECT id FROM mailboxes WHERE name=?", (oname,)).fetchone()
                    if known is not None:
                        # the uidlist's GUID lets a crash before COMMIT be recovered (_recover_renames)
                        dovecot.ensure_uidlist(conn, int(known[0]), os.path.join(self.root, src), check_guid=True)
                    os.rename(os.path.join(self.root, src), os.path.join(self.root, dst))
                    done.append((src, dst))
                    oname, nname = decode_folder_dir(src), decode_folder_dir(dst)
                    if oname is None or nname is None:
                        continue
                    row = conn.execute("SELECT id FROM mailboxes WHERE name=?", (oname,)).fetchone()
                    if row is not None:
                        conn.execute("UPDATE mailboxes SET name=? WHERE id=?", (nname, row[0]))
                        renamed_names.append((oname, nname, int(row[0])))
                    subscribed = conn.execute("DELETE FROM subscriptions WHERE name=?", (oname,)).rowcount
                    if subscribed:
                        conn.execute("INSERT OR IGNORE INTO subscriptions(name) VALUES (?)", (nname,))
                maildir.fsync_dir(self.root)
        except BaseException as exc:
            for src, dst in reversed(done):
                with contextlib.suppress(OSError):
                    os.rename(os.path.join(self.root, dst), os.path.join(self.root, src))
            if isinstance(exc, OSError):
                raise self._io("rename mailbox", old, exc) from exc
            raise
        for oname, nname, mid in renamed_names:
            self._renamed_open(mid, nname)
            self.feed.publish_list(MailboxListChanged(self.user, "renamed", nname, old_name=oname, mailbox_id=mid))

    # ------------------------------------------------------------------------ subscriptions

    def subscribe(self, name: str) -> None:
        """Subscribe to a name (it need not exist, RFC 3501 6.3.6)."""
        name = normalize(name)
        with self.index.write() as conn:
            conn.execute("INSERT OR IGNORE INTO subscriptions(name) VALUES (?)", (name,))
        self.feed.publish_list(MailboxListChanged(self.user, "subscribed", name))

    def unsubscribe(self, name: str) -> None:
        name = normalize(name)
        with self.index.write() as conn:
            conn.execute("DELETE FROM subscriptions WHERE name=?", (name,))
        self.feed.publish_list(MailboxListChanged(self.user, "unsubscribed", name))

    def subscriptions(self) -> list[str]:
        with self.index.lock:
            return sorted(n for (n,) in self.index.conn.execute("SELECT name FROM subscriptions"))

    # ------------------------------------------------------------------------------ quota

    def quota_limits(self) -> QuotaLimits:
        """The user's limits now (``Store.quota_limits``: the passwd file's fields, else the settings)."""
        return self.store.quota_limits(self.user)

    def quota_usage(self) -> QuotaUsage:
        """Messages and octets in all mailboxes: one row the index's triggers keep current."""
        with self.index.lock:
            return quota.read_usage(self.index.conn)

    def check_quota(self, *, messages: int = 1, storage_bytes: int = 0) -> None:
        """Raise :class:`~imapd.store.errors.OverQuota` if this much more mail would not fit now.

        For an LMTP server that wants to refuse early (RCPT, or DATA before writing); the write itself
        checks again under the index's write lock (:meth:`enforce_quota`), so a race cannot pass it."""
        with self.index.lock:
            quota.enforce(self.index.conn, self.quota_limits(), messages=messages, storage_bytes=storage_bytes)

    def enforce_quota(self, conn: sqlite3.Connection, *, messages: int, storage_bytes: int) -> None:
        """The check inside a write transaction that adds mail (APPEND, COPY, delivery)."""
        quota.enforce(conn, self.quota_limits(), messages=messages, storage_bytes=storage_bytes)

    # ------------------------------------------------------------------------ annotations

    def _annotation_target(self, mailbox: str | None) -> int:
        return annotate.SERVER if mailbox is None else self.resolve(mailbox)[0]

    def get_annotations(self, mailbox: str | None, names: Sequence[str],
                        depth: int | None) -> list[tuple[str, bytes]]:
        """RFC 5464 entries of a mailbox (None: the server's); ``depth`` 0, 1 or None for infinity."""
        mailbox_id = self._annotation_target(mailbox)
        with self.index.lock:
            return annotate.get_entries(self.index.conn, mailbox_id, names, depth)

    def set_annotations(self, mailbox: str | None, entries: Sequence[tuple[str, bytes | None]],
                        limits: annotate.AnnotationLimits) -> None:
        """Set or (value None) remove entries, all or nothing."""
        mailbox_id = self._annotation_target(mailbox)
        try:
            with self.index.write() as conn:
                if mailbox_id != annotate.SERVER and conn.execute(
                        "SELECT 1 FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone() is None:
                    raise NoSuchMailbox(f"mailbox {mailbox!r} does not exist")
                annotate.set_entries(conn, mailbox_id, entries, limits)
        except sqlite3.Error as exc:
            raise self._io("set metadata", mailbox, exc) from exc
        self.feed.publish_list(MailboxListChanged(self.user, "metadata", mailbox or "",
                                                  entries=tuple(name for name, _ in entries)))

    # ------------------------------------------------------------------------------ status

    def status(self, name: str) -> MailboxStatus:
        """STATUS figures without opening the mailbox (reconciles cheaply with the Maildir first)."""
        mailbox_id, name = self.resolve(name)
        mb = self.store.registry_get(self.user, mailbox_id)
        if mb is not None:
            mb.sync()
            return mb.status()
        try:
            with self.index.write() as conn:
                reconcile(conn, mailbox_id, self.folder_path(name), history_limit=self.history_limit)
                row = conn.execute("SELECT uidvalidity, uidnext, highestmodseq, guid FROM mailboxes WHERE id=?",
                                   (mailbox_id,)).fetchone()
                agg = conn.execute("SELECT count(*), total(size), total((flags & 1) = 0), total((flags & 8) != 0), "
                                   "total(CASE WHEN flags & 8 THEN size END) FROM messages WHERE mailbox=?",
                                   (mailbox_id,)).fetchone()
        except FileNotFoundError as exc:
            raise NoSuchMailbox(f"mailbox {name!r} does not exist") from exc
        except (OSError, sqlite3.Error) as exc:
            raise self._io("status", name, exc) from exc
        return MailboxStatus(mailbox_id, int(agg[0]), int(agg[2]), int(agg[1]), row[1], row[0], row[2], row[3],
                             int(agg[3]), int(agg[4]))

    # --------------------------------------------------------------------------- provisioning

    def provision(self) -> None:
        """Create INBOX's index and the default special-use folders (new users); subscribe them."""
        rows = self._sync_folders()
        for name, use in DEFAULT_FOLDERS:
            if name not in rows:
                self.create_mailbox(name, use)
        for name in [INBOX, *(n for n, _ in DEFAULT_FOLDERS)]:
            self.subscribe(name)

    def write_dovecot_keywords(self, path: str, names: dict[int, str]) -> None:
        # advisory for other Maildir readers; the index is authoritative
        with contextlib.suppress(OSError):
            dovecot.write_keywords(path, names)

    def close(self) -> None:
        self.texts.close()
        self.index.close()
