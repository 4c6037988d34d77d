"""Catching a client up on a mailbox from a known MODSEQ: QRESYNC SELECT (RFC 7162 3.2.5), UID FETCH
(CHANGEDSINCE n VANISHED) and, later, X-STATE RESTORE all send the same two things: the UIDs expunged
since then and the messages whose metadata changed since then.

The cost is the number of changes, not the mailbox size, as long as the expunge history reaches back to
the client's MODSEQ. When it does not, RFC 7162 lets the server report every UID of the client's known
set that no longer exists, which we compute from the set difference.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from imapd.protocol.sequence import SequenceSet

if TYPE_CHECKING:
    from imapd.store.mailbox import Mailbox

__all__ = ["changed_since", "vanished_since"]


def vanished_since(mailbox: Mailbox, modseq: int, known: SequenceSet | None) -> SequenceSet:
    """UIDs the client may still know (within ``known``, default all below UIDNEXT) that are gone."""
    top = mailbox.uidnext - 1
    if top < 1:
        return SequenceSet()
    ranges = known.resolve(top, clip=True) if known is not None else ((1, top),)
    expunged, complete = mailbox.expunged_since(modseq)
    if complete:
        return SequenceSet.of(u for u in expunged if _in_ranges(u, ranges))
    # History no longer reaches back: every UID in the known ranges that is not in the mailbox now.
    return SequenceSet(tuple(_gaps(ranges, mailbox.uid_array)))


def changed_since(mailbox: Mailbox, modseq: int, uids: Iterable[int] | None = None) -> list[int]:
    """UIDs whose MODSEQ is above ``modseq``, ascending, optionally restricted to ``uids``."""
    changed = [u for u, _, _ in mailbox.changed_since(modseq)]
    if uids is None:
        return changed
    wanted = set(uids)
    return [u for u in changed if u in wanted]


def _in_ranges(uid: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    i = bisect.bisect_right(ranges, (uid, 1 << 40)) - 1
    return i >= 0 and ranges[i][0] <= uid <= ranges[i][1]


def _gaps(ranges: tuple[tuple[int, int], ...], present: Sequence[int]) -> Iterator[tuple[int | None, int | None]]:
    """The sub-ranges of ``ranges`` holding no UID of ``present`` (ascending), without expanding them."""
    for lo, hi in ranges:
        nxt = lo
        i = bisect.bisect_left(present, lo)
        while i < len(present) and present[i] <= hi:
            if present[i] > nxt:
                yield (nxt, present[i] - 1)
            nxt = present[i] + 1
            i += 1
        if nxt <= hi:
            yield (nxt, hi)
