"""The SORT/THREAD keys of one open mailbox, kept in memory as compact columns.

Why in memory and not in index columns (measured on a 100,000-message mailbox, 2-core machine): merely
reading ``uid, internaldate, size`` of every row from SQLite takes 135-190 ms, so any design that reads
the index on each SORT misses the "well under 100 ms" target before sorting anything. Before this
module, SORT called ``Mailbox.metadata(uid)`` once per message (one query and one full msgpack decode
each): 3.5 s, plus 0.3 s for ``message_info``.

So :class:`SortKeys` is built lazily, on the first SORT/THREAD of an open :class:`~imapd.store.Mailbox`,
from ONE query (``uid, internaldate, size, meta``), decoding only the sort fields of the cached metadata
blob (ENVELOPE and BODYSTRUCTURE are skipped as :class:`msgspec.Raw`, never turned into objects); it then
lives as long as the shared Mailbox object. It is brought up to date on use (:meth:`SortKeys.refresh`):
new UIDs at the tail are read with one query for just those rows, expunged UIDs are filtered out; any
other difference (a reload) rebuilds it. Message contents never change under a UID, so nothing else can
make a key stale.

Layout, per message in UID order (about 45 bytes per message plus the distinct strings):

- ``uids`` (``I``), ``internaldate`` (``q``, Unix seconds), ``size`` (``Q``), ``date`` (``q``: the RFC 5256
  sent date, i.e. the Date header in UTC, INTERNALDATE when missing);
- one :class:`StringColumn` per string key (base subject, first From/To/Cc local part, DISPLAYFROM,
  DISPLAYTO): the distinct raw values once, and per message the index of its value (``I``). The session
  layer ranks the distinct values with its collation once per column (cached in :attr:`SortKeys.ranks`
  until a new distinct value appears), so a SORT is integer work over arrays.

THREAD also needs Message-ID, In-Reply-To and References; keeping those would multiply the memory by ten
(they are long and mostly unique), so :func:`thread_rows` reads them with one query per THREAD command.

The store never imports ``imapd.mime``: :class:`SortFields` / :class:`ThreadFields` mirror the positional
(``array_like``) layout of ``imapd.mime.MessageMetadata`` (a test checks that they stay in step).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from imapd.store.mailbox import Mailbox

__all__ = ["STRING_KEYS", "SortFields", "SortKeys", "StringColumn", "ThreadFields", "thread_rows"]


class SortFields(msgspec.Struct, array_like=True, gc=False):
    """The leading fields of ``MessageMetadata`` that SORT needs (trailing ones are ignored)."""

    envelope: msgspec.Raw
    body: msgspec.Raw
    header_size: int
    date: int | None
    base_subject: str
    is_reply: bool
    from_mailbox: str
    from_display: str
    to_mailbox: str
    to_display: str
    cc_mailbox: str


class ThreadFields(msgspec.Struct, array_like=True, gc=False):
    """Every field of ``MessageMetadata`` except ENVELOPE/BODYSTRUCTURE (skipped undecoded)."""

    envelope: msgspec.Raw
    body: msgspec.Raw
    header_size: int
    date: int | None
    base_subject: str
    is_reply: bool
    from_mailbox: str
    from_display: str
    to_mailbox: str
    to_display: str
    cc_mailbox: str
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]


_sort_decoder = msgspec.msgpack.Decoder(SortFields)
_thread_decoder = msgspec.msgpack.Decoder(ThreadFields)
_EMPTY = msgspec.Raw(b"")

STRING_KEYS = ("base_subject", "from_mailbox", "to_mailbox", "cc_mailbox", "from_display", "to_display")
"""The string columns of :class:`SortKeys`, named after the ``MessageMetadata`` fields they hold."""


def _empty_sort(internaldate: int) -> SortFields:
    return SortFields(_EMPTY, _EMPTY, 0, internaldate, "", False, "", "", "", "", "")


class StringColumn:
    """Distinct values once (append-only), and the value index of every message."""

    __slots__ = ("ids", "index", "values")

    def __init__(self) -> None:
        self.values: list[str] = []
        self.index: dict[str, int] = {}
        self.ids = array("I")

    def add(self, value: str) -> None:
        i = self.index.get(value)
        if i is None:
            i = self.index[value] = len(self.values)
            self.values.append(value)
        self.ids.append(i)


class SortKeys:
    """See the module docstring. Get it from :meth:`Mailbox.sort_keys`, which refreshes it."""

    __slots__ = ("_synced", "date", "internaldate", "ranks", "size", "strings", "uids", "uidvalidity")

    def __init__(self, uidvalidity: int) -> None:
        self.uidvalidity = uidvalidity
        self.uids = array("I")
        self.internaldate = array("q")
        self.size = array("Q")
        self.date = array("q")
        self.strings: dict[str, StringColumn] = {name: StringColumn() for name in STRING_KEYS}
        self.ranks: dict[Any, Any] = {}
        """Free for the session layer: collation ranks it derived from :attr:`strings` (keyed so that it
        can tell when they are stale, e.g. by the number of distinct values)."""
        self._synced: array[int] | None = None

    @classmethod
    def build(cls, mailbox: Mailbox) -> SortKeys:
        keys = cls(mailbox.uidvalidity)
        keys._append(mailbox, mailbox.index_rows(None, "internaldate, size, meta"))
        keys._synced = mailbox.uid_array
        return keys

    def __len__(self) -> int:
        return len(self.uids)

    def memory_bytes(self) -> int:
        per = sum(a.itemsize for a in (self.uids, self.internaldate, self.size, self.date))
        n = len(self.uids) * (per + 4 * len(self.strings))
        for col in self.strings.values():
            n += sum(50 + len(v) for v in col.values) + 100 * len(col.values)
        return n

    def _append(self, mailbox: Mailbox, rows: list[tuple[int, int, int, bytes | None]]) -> None:
        decode = _sort_decoder.decode
        fields: list[SortFields] = []
        for uid, idate, _, blob in rows:
            if blob is None:
                blob = mailbox.metadata_blob(uid)
            try:
                fields.append(_empty_sort(idate) if blob is None else decode(blob))
            except msgspec.DecodeError:
                fields.append(_empty_sort(idate))
        self.uids.extend([r[0] for r in rows])
        self.internaldate.extend([r[1] for r in rows])
        self.size.extend([r[2] for r in rows])
        self.date.extend([r[1] if (d := f.date) is None else d for r, f in zip(rows, fields, strict=True)])
        for name in STRING_KEYS:  # column by column: the inner loops stay in C
            col = self.strings[name]
            index, values = col.index, col.values
            get = attrgetter(name)
            before = len(index)
            col.ids.extend([index.setdefault(v, len(index)) for v in map(get, fields)])
            if len(index) != before:
                values.extend(list(index)[before:])

    def _keep(self, positions: Sequence[int]) -> None:
        self.uids = array("I", [self.uids[p] for p in positions])
        self.internaldate = array("q", [self.internaldate[p] for p in positions])
        self.size = array("Q", [self.size[p] for p in positions])
        self.date = array("q", [self.date[p] for p in positions])
        for col in self.strings.values():
            ids = col.ids
            col.ids = array("I", [ids[p] for p in positions])

    def refresh(self, mailbox: Mailbox) -> bool:
        """Bring the keys in line with the mailbox's UIDs; False when they must be rebuilt instead."""
        if self.uidvalidity != mailbox.uidvalidity:
            return False
        live = mailbox.uid_array
        n = len(self.uids)
        if live is self._synced and len(live) == n:
            return True
        # Same array object: only insertions happened (the Mailbox replaces the array on expunge). If
        # our last UID is still at the same index, every insertion is at the tail.
        if not (live is self._synced and (n == 0 or live[n - 1] == self.uids[-1])):
            present = set(live)
            if any(u not in present for u in self.uids):
                self._keep([p for p, u in enumerate(self.uids) if u in present])
            n = len(self.uids)
            if n and (len(live) < n or live[n - 1] != self.uids[-1]):
                return False  # a UID appeared below our last one: not an append
        if len(live) > n:
            tail = live[n:]
            self._append(mailbox, mailbox.index_rows(tail, "internaldate, size, meta"))
        self._synced = live
        return len(self.uids) == len(live)

    def positions(self, uids: Sequence[int]) -> list[int] | None:
        """Indexes of ``uids`` (ascending) in the columns, skipping UIDs that are gone; None means all,
        in order (``uids`` is exactly the mailbox)."""
        mine = self.uids
        n = len(mine)
        if (len(uids) == n and (n == 0 or (uids[0] == mine[0] and uids[-1] == mine[-1]))
                and array("I", uids) == mine):
            return None
        out = []
        for u in uids:
            p = bisect_left(mine, u)
            if p < n and mine[p] == u:
                out.append(p)
        return out


def thread_rows(mailbox: Mailbox, uids: Iterable[int] | None) -> list[tuple[int, int, int, ThreadFields]]:
    """``(uid, internaldate, size, fields)`` of the ``uids`` that exist (None: every message), ascending
    UID, from one query; messages whose metadata cannot be had get empty fields."""
    out: list[tuple[int, int, int, ThreadFields]] = []
    decode = _thread_decoder.decode
    for uid, idate, size, blob in mailbox.index_rows(uids, "internaldate, size, meta"):
        if blob is None:
            blob = mailbox.metadata_blob(uid)
        fields = None
        if blob is not None:
            try:
                fields = decode(blob)
            except msgspec.DecodeError:
                fields = None
        if fields is None:
            fields = ThreadFields(_EMPTY, _EMPTY, 0, None, "", False, "", "", "", "", "", None, [], [])
        out.append((uid, idate, size, fields))
    return out
