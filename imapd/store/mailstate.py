"""The in-memory state of one open mailbox: parallel arrays and the events that change them.

Memory is proportional to the message count with small constants: UIDs (``I``), MODSEQs (``Q``) and
system-flag bits (``B``); keyword bits only for messages that have keywords. The only writer is
:meth:`MailboxState.apply`, which takes an :class:`~imapd.store.mailindex.IndexDelta` (read from the
index, possibly on another thread) and returns the change-feed events to publish. It does no I/O.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from imapd.store.changefeed import FlagsChanged, MessageEvent, MessagesAdded, MessagesExpunged
from imapd.store.flags import SEEN, VISIBLE_MASK, system_flag_names
from imapd.store.mailindex import IndexDelta

__all__ = ["MailboxState"]

# Maps a system-flags byte to 1 when \\Seen is set, 0 when not (for C-speed counting and searching).
_SEEN_BIT = bytes((b & SEEN) and 1 for b in range(256))
# Above this many expunged UIDs one pass over the arrays beats deleting entry by entry.
_SMALL_EXPUNGE = 64


class MailboxState:
    """Arrays of one mailbox, HIGHESTMODSEQ/UIDNEXT as last applied, and the keyword names."""

    def __init__(self, user: str, mailbox_id: int) -> None:
        self.user = user
        self.mailbox_id = mailbox_id
        self.uids = array("I")
        self.modseqs = array("Q")
        self.sysflags = array("B")
        self.kw: dict[int, int] = {}
        self.kwnames: dict[int, str] = {}
        self.highestmodseq = 0
        self.uidnext = 1
        self._names_cache: dict[tuple[int, int], tuple[str, ...]] = {}

    def load(self, rows: list[tuple[int, int, int, int]], highestmodseq: int, uidnext: int,
             kwnames: dict[int, str]) -> None:
        """Replace everything with ``(uid, modseq, flags, keywords)`` rows in UID order."""
        self.uids = array("I", [r[0] for r in rows])
        self.modseqs = array("Q", [r[1] for r in rows])
        self.sysflags = array("B", [r[2] for r in rows])
        self.kw = {r[0]: r[3] for r in rows if r[3]}
        self.highestmodseq = highestmodseq
        self.uidnext = uidnext
        self.set_keywords(kwnames)

    def set_keywords(self, kwnames: dict[int, str]) -> None:
        if kwnames != self.kwnames:
            self.kwnames = dict(kwnames)
            self._names_cache.clear()

    # ----------------------------------------------------------------------------- reading

    def pos(self, uid: int) -> int:
        pos = bisect_left(self.uids, uid)
        if pos < len(self.uids) and self.uids[pos] == uid:
            return pos
        return -1

    def names(self, bits: int, kw: int) -> tuple[str, ...]:
        key = (bits & VISIBLE_MASK, kw)
        names = self._names_cache.get(key)
        if names is None:
            out = system_flag_names(bits)
            n = 0
            k = kw
            while k:
                if k & 1 and n in self.kwnames:
                    out.append(self.kwnames[n])
                k >>= 1
                n += 1
            names = tuple(out)
            if len(self._names_cache) < 4096:
                self._names_cache[key] = names
        return names

    def flags_at(self, pos: int) -> tuple[str, ...]:
        return self.names(self.sysflags[pos], self.kw.get(self.uids[pos], 0))

    def flag_rows(self, uids: Sequence[int]) -> tuple[list[int], list[tuple[str, ...]], list[int]]:
        """UIDs, flags and MODSEQs of those of ``uids`` (ascending) that exist, as three parallel lists.

        FETCH 1:* (FLAGS) of a big mailbox asks for runs of consecutive positions: those are sliced out of
        the arrays in C, and each distinct (flags, keywords) pair is named once per call."""
        n = len(uids)
        if not n:
            return [], [], []
        start = bisect_left(self.uids, uids[0])
        stop = start + n
        if self.uids[start:stop] == (uids if isinstance(uids, array) else array("I", uids)):
            found = uids.tolist() if isinstance(uids, array) else list(uids)
            bits = self.sysflags[start:stop]
            modseqs = self.modseqs[start:stop].tolist()
        else:
            found, positions = [], []
            for uid in uids:
                pos = self.pos(uid)
                if pos >= 0:
                    found.append(uid)
                    positions.append(pos)
            bits = array("B", [self.sysflags[p] for p in positions])
            modseqs = [self.modseqs[p] for p in positions]
        names = self.names
        kw = self.kw
        if kw:
            flags = [names(b, kw.get(u, 0)) for u, b in zip(found, bits, strict=True)]
        else:
            by_bits = {b: names(b, 0) for b in set(bits)}
            flags = [by_bits[b] for b in bits]
        return found, flags, modseqs

    def unseen_count(self) -> int:
        # In C rather than a Python loop: SELECT of a 100k-message mailbox asks for this.
        return self.sysflags.tobytes().translate(_SEEN_BIT).count(0)

    def first_unseen_uid(self) -> int | None:
        i = self.sysflags.tobytes().translate(_SEEN_BIT).find(0)
        return None if i < 0 else self.uids[i]

    # ----------------------------------------------------------------------------- writing

    def apply(self, delta: IndexDelta) -> list[MessageEvent]:
        """Bring the arrays to ``delta`` and return the events that describe the step (publish them)."""
        self.uidnext = delta.uidnext or self.uidnext
        self.set_keywords(delta.keywords)
        if delta.deleted or delta.highestmodseq == self.highestmodseq or delta.since != self.highestmodseq:
            return []
        if delta.gone is not None:
            expunged = self._remove(delta.gone)
        else:
            present = delta.present or set()
            expunged = self._remove([u for u in self.uids if u not in present])
        added: list[int] = []
        changed: list[tuple[int, tuple[str, ...], int]] = []
        for uid, flags, kw, modseq in delta.rows:
            pos = bisect_left(self.uids, uid)
            if pos < len(self.uids) and self.uids[pos] == uid:
                self.modseqs[pos] = modseq
                self.sysflags[pos] = flags
                changed.append((uid, self.names(flags, kw), modseq))
            else:
                # New UIDs are larger than every existing one, so this appends in place (views rely on it).
                self.uids.insert(pos, uid)
                self.modseqs.insert(pos, modseq)
                self.sysflags.insert(pos, flags)
                added.append(uid)
            if kw:
                self.kw[uid] = kw
            else:
                self.kw.pop(uid, None)
        hms = self.highestmodseq = delta.highestmodseq
        events: list[MessageEvent] = []
        if expunged:
            events.append(MessagesExpunged(self.user, self.mailbox_id, expunged, hms))
        if added:
            events.append(MessagesAdded(self.user, self.mailbox_id, added, hms))
        if changed:
            events.append(FlagsChanged(self.user, self.mailbox_id, changed, hms))
        return events

    def _remove(self, uids: Iterable[int]) -> list[int]:
        """Drop UIDs; the arrays are replaced by new objects (views keep the old ones as their sequence map).

        A few UIDs cost a bisect each and a C-level copy, not a Python pass over the whole mailbox.
        """
        positions = sorted({p for p in (self.pos(u) for u in uids) if p >= 0})
        if not positions:
            return []
        removed = [self.uids[p] for p in positions]
        if len(positions) <= _SMALL_EXPUNGE:
            uids_a, mods, flags = array("I", self.uids), array("Q", self.modseqs), array("B", self.sysflags)
            for p in reversed(positions):
                del uids_a[p]
                del mods[p]
                del flags[p]
        else:
            drop = set(positions)
            keep = [i for i in range(len(self.uids)) if i not in drop]
            uids_a = array("I", [self.uids[i] for i in keep])
            mods = array("Q", [self.modseqs[i] for i in keep])
            flags = array("B", [self.sysflags[i] for i in keep])
        self.uids, self.modseqs, self.sysflags = uids_a, mods, flags
        for u in removed:
            self.kw.pop(u, None)
        return removed

    def memory_bytes(self) -> int:
        per = self.uids.itemsize + self.modseqs.itemsize + self.sysflags.itemsize
        return len(self.uids) * per + len(self.kw) * 100
