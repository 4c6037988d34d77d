"""``\\Recent`` (RFC 3501 2.3.2): which session is the first to be told about a message.

Two pieces of state, one per level:

- :class:`RecentUids` belongs to one session (its selected view): the UIDs that are ``\\Recent`` *for
  it*, as a few ascending UID ranges. It is plain data, so X-STATE SAVE / RESTORE and a hand-off to
  another process can carry it (a restored session is the same session and keeps its ``\\Recent``).
- :class:`RecentClaims` belongs to the process and is backed by the user's index: per mailbox, the
  *horizon*, the first UID nobody has claimed yet. Every UID below it has been announced to some
  read-write session (which then held it as ``\\Recent``); every UID from it on is still ``\\Recent``
  for the next session to be told. The horizon lives in the index's ``meta`` table, so it is shared by
  every process of the user (a claim is one ``BEGIN IMMEDIATE`` transaction: exactly one session wins)
  and it survives a restart of the server.

A read-write SELECT claims ``[horizon, UIDNEXT)`` (so mail delivered before the first SELECT is
``\\Recent`` for that first session); a read-write view claims new mail when it announces it. EXAMINE
never claims (RFC 3501 6.3.2): it sees as ``\\Recent`` what is unclaimed when it is told, and leaves it
so. ``STATUS (RECENT)`` counts the unclaimed messages, which is what the next SELECT will report.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from imapd.store.errors import StorageIOError

if TYPE_CHECKING:
    from imapd.store.mailbox import Mailbox
    from imapd.store.userstore import UserStore

__all__ = ["RecentClaims", "RecentUids"]


class RecentUids:
    """The UIDs that are ``\\Recent`` for one session: disjoint, ascending, inclusive ``(lo, hi)`` ranges."""

    __slots__ = ("_his", "_los")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._los: list[int] = []
        self._his: list[int] = []
        for lo, hi in ranges:
            self.add(lo, hi)

    def add(self, lo: int, hi: int) -> None:
        """Add the inclusive range ``lo..hi`` (claims arrive in ascending order; any order works)."""
        if hi < lo:
            return
        los, his = self._los, self._his
        if los and lo > his[-1]:  # the common case: past everything held
            if lo == his[-1] + 1:
                his[-1] = hi
            else:
                los.append(lo)
                his.append(hi)
            return
        merged = [(a, b) for a, b in zip(los, his, strict=True)] + [(lo, hi)]
        merged.sort()
        los.clear()
        his.clear()
        for a, b in merged:
            if los and a <= his[-1] + 1:
                his[-1] = max(his[-1], b)
            else:
                los.append(a)
                his.append(b)

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        i = bisect.bisect_right(self._los, uid) - 1
        return i >= 0 and uid <= self._his[i]

    def __bool__(self) -> bool:
        return bool(self._los)

    def count_in(self, uids: Sequence[int], n: int) -> int:
        """How many of the ascending ``uids[:n]`` are ``\\Recent``: O(ranges x log n), no scan."""
        total = 0
        for lo, hi in zip(self._los, self._his, strict=True):
            total += bisect.bisect_right(uids, hi, 0, n) - bisect.bisect_left(uids, lo, 0, n)
        return total

    def ranges(self) -> list[tuple[int, int]]:
        """The inclusive ranges, for a saved state (statecodec ``UidRanges``)."""
        return list(zip(self._los, self._his, strict=True))

    def __repr__(self) -> str:
        return f"RecentUids({self.ranges()!r})"


def _key(mailbox_id: int, uidvalidity: int) -> str:
    return f"recent:{mailbox_id}:{uidvalidity}"


class RecentClaims:
    """The per-mailbox claim horizon, read from and advanced in the user's index."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        # A lower bound of each horizon (it only ever grows): when it already covers what a session asks
        # for, nothing is left to claim and no query is needed (repeated SELECTs with no new mail).
        self._known: dict[tuple[str, int, int], int] = {}

    def horizon(self, user: UserStore, mailbox_id: int, uidvalidity: int) -> int:
        """The first unclaimed UID (1 when the mailbox was never selected read-write)."""
        key = (user.user, mailbox_id, uidvalidity)
        try:
            with user.index.lock:
                row = user.index.conn.execute("SELECT value FROM meta WHERE key=?",
                                              (_key(mailbox_id, uidvalidity),)).fetchone()
        except sqlite3.Error as exc:
            raise StorageIOError(user.user, None, "read the \\Recent horizon", exc) from exc
        value = max(int(row[0]) if row else 1, self._known.get(key, 1))
        self._known[key] = value
        return value

    def peek(self, user: UserStore, mailbox: Mailbox, lo: int, hi: int) -> tuple[int, int] | None:
        """The part of ``lo..hi`` nobody has claimed (for EXAMINE: shown as ``\\Recent``, left unclaimed)."""
        if hi < lo or self._known.get((user.user, mailbox.mailbox_id, mailbox.uidvalidity), 1) > hi:
            return None
        start = max(lo, self.horizon(user, mailbox.mailbox_id, mailbox.uidvalidity))
        return (start, hi) if start <= hi else None

    def claim(self, user: UserStore, mailbox: Mailbox, hi: int) -> tuple[int, int] | None:
        """Claim every unclaimed UID up to ``hi``; the inclusive range won, or None when another session
        (of any process) was first. One write transaction, so exactly one claimer gets each UID."""
        key = (user.user, mailbox.mailbox_id, mailbox.uidvalidity)
        if self._known.get(key, 1) > hi:
            return None
        if self.horizon(user, mailbox.mailbox_id, mailbox.uidvalidity) > hi:
            return None
        name = _key(mailbox.mailbox_id, mailbox.uidvalidity)
        try:
            with user.index.write() as conn:
                row = conn.execute("SELECT value FROM meta WHERE key=?", (name,)).fetchone()
                start = int(row[0]) if row else 1
                if start <= hi:
                    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (name, hi + 1))
        except sqlite3.Error as exc:
            raise StorageIOError(user.user, mailbox.name, "claim \\Recent", exc) from exc
        self._known[key] = max(start, hi + 1)
        return (start, hi) if start <= hi else None

    def unclaimed_count(self, user: UserStore, mailbox_id: int, uidvalidity: int, uidnext: int) -> int:
        """STATUS (RECENT): the messages still ``\\Recent`` for the next session to select the mailbox."""
        start = self.horizon(user, mailbox_id, uidvalidity)
        if start >= uidnext:
            return 0
        mailbox = user.store.registry_get(user.user, mailbox_id)
        if mailbox is not None:
            uids = mailbox.uid_array
            return len(uids) - bisect.bisect_left(uids, start)
        try:
            with user.index.lock:
                row = user.index.conn.execute("SELECT count(*) FROM messages WHERE mailbox=? AND uid>=?",
                                              (mailbox_id, start)).fetchone()
        except sqlite3.Error as exc:
            raise StorageIOError(user.user, None, "count \\Recent", exc) from exc
        return int(row[0])
