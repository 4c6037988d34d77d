"""Message contents of an open mailbox: the files in ``cur/`` and the parsed-metadata cache in the index.

A part of :class:`~imapd.store.mailbox.Mailbox` (which inherits it); kept apart because it holds neither
the arrays nor the write path: it reads files and fills the ``meta`` column, nothing else.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from imapd.store.mailindex import store_metadata
from imapd.store.metadata import decode_metadata, parse_to_blob
from imapd.store.previews import load_previews, store_previews

if TYPE_CHECKING:
    from imapd.store.index import UserIndex

__all__ = ["MessageContent", "MessageFile"]


_SCAN_CHUNK = 1 << 20


class MessageFile:
    """One message file held open: ``size`` octets as :func:`os.fstat` saw them when it was opened.

    Held open so that a Maildir rename or delete after the open changes nothing for its reader (a
    FETCH that promised ``size`` octets can still send them). The holder must :meth:`close` it."""

    __slots__ = ("fd", "size", "uid")

    def __init__(self, uid: int, fd: int, size: int) -> None:
        self.uid = uid
        self.fd = fd
        self.size = size

    def read(self) -> bytes:
        """All ``size`` octets (fewer if the file shrank since it was opened)."""
        chunks: list[bytes] = []
        got = 0
        while got < self.size:
            data = os.pread(self.fd, self.size - got, got)
            if not data:
                break
            chunks.append(data)
            got += len(data)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def has_nul(self) -> bool:
        """Whether a NUL octet is in the file (read in 1 MiB pieces, none kept)."""
        buf = bytearray(min(self.size, _SCAN_CHUNK))
        view = memoryview(buf)
        offset = 0
        while offset < self.size:
            n = os.preadv(self.fd, [view], offset)
            if n <= 0:
                return False
            if buf.find(b"\0", 0, n) >= 0:
                return True
            offset += n
        return False

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class MessageContent:
    path: str
    mailbox_id: int
    _index: UserIndex

    def _rows(self, uids: Iterable[int] | None, cols: str) -> list[Any]:
        raise NotImplementedError

    def sync(self) -> None:
        raise NotImplementedError

    def message_path(self, uid: int) -> str:
        """Path of the message file; raises KeyError if the message does not exist."""
        rows = self._rows([uid], "fname")
        if not rows:
            raise KeyError(uid)
        path = os.path.join(self.path, "cur", rows[0][1])
        if os.path.exists(path):
            return path
        self.sync()
        rows = self._rows([uid], "fname")
        if not rows:
            raise KeyError(uid)
        return os.path.join(self.path, "cur", rows[0][1])

    def open_messages(self, uids: Iterable[int]) -> Iterator[MessageFile]:
        """The files of those of ``uids`` that exist, opened one at a time as the caller iterates (one
        index query for all); a file that vanished is looked for again as :meth:`message_path` does, and
        left out if it is gone. The caller closes each."""
        rows = self._rows(uids, "fname")
        folder = os.path.join(self.path, "cur")
        for uid, fname in rows:
            try:
                fd = os.open(os.path.join(folder, fname), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                try:
                    fd = os.open(self.message_path(uid), os.O_RDONLY | os.O_CLOEXEC)
                except (KeyError, FileNotFoundError):
                    continue
            try:
                size = os.fstat(fd).st_size
            except OSError:
                os.close(fd)
                raise
            yield MessageFile(uid, fd, size)

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
        return self._rows(uids, cols)

    def metadata_blob(self, uid: int) -> bytes | None:
        """The msgpack metadata blob of ``uid``, parsed from the file and stored now if missing; None when
        it cannot be had (no such message, file gone, ``imapd.mime`` unavailable or failing)."""
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
                store_metadata(conn, self.mailbox_id, uid, blob)
        except sqlite3.Error:
            pass  # a cache write; the caller still gets the parsed value
        return blob

    def metadata(self, uid: int) -> Any:
        """The cached ``imapd.mime.MessageMetadata`` of ``uid``, parsed and stored now if missing."""
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
        rows = self._rows(uids, "meta")
        for uid, blob in rows:
            if blob is None:
                try:
                    blob = self._parse_and_store(uid)
                except KeyError:
                    continue
            out[uid] = decode_metadata(blob)
        return out

    def previews(self, uids: Sequence[int], compute: Callable[[bytes], str] | None) -> dict[int, str]:
        """RFC 8970 previews of ``uids``: the cached ones, and with ``compute`` (raw message -> text) the
        others too, computed from their files now and cached in one write (messages gone are left out)."""
        with self._index.lock:
            found = load_previews(self._index.conn, self.mailbox_id, uids)
        if compute is None:
            return found
        made: list[tuple[int, str]] = []
        for uid in uids:
            if uid not in found:
                try:
                    text = compute(self.read_message(uid))
                except KeyError:
                    continue
                found[uid] = text
                made.append((uid, text))
        if made:
            try:
                with self._index.write() as conn:
                    store_previews(conn, self.mailbox_id, made)
            except sqlite3.Error:
                pass  # a cache write; the caller still gets the computed values
        return found
