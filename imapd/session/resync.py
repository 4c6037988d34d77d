"""One catch-up: telling a client what changed in a mailbox since a state it saw.

QRESYNC SELECT (RFC 7162 3.2.5), X-STATE RESTORE and a session handed to another process all do the same
three steps, in this order:

1. **compute** a :class:`CatchUp` from the mailbox and its history (synchronous, may fail with a store
   error or :class:`NotRestorable`): the UIDs that vanished, the sequence numbers they had, the new
   EXISTS, the messages whose flags changed, with their sequence numbers *in the end state*;
2. **commit**: the caller makes the session's view the end state (a fresh :class:`SelectedView` of the
   mailbox as it is now). No ``await`` separates 1 and 2, so no change can slip in between; a change
   that comes later lands in the view's pending sets like any other and is reported after the catch-up;
3. **send** it with :func:`send_catch_up`, which waits for the socket to drain between batches but reads
   only the immutable :class:`CatchUp` (and, for FETCH, the current flags), never changing the view.

The cost is the number of changes, not the mailbox size: what vanished from a range-encoded UID set is
found by bisecting the mailbox's UID array range by range (a range with all its UIDs present costs two
bisections), and the old sequence number of a vanished UID is its rank in the old map, computed per
vanished range.
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imapd.protocol.response_codes import NumberCode
from imapd.protocol.responses import UntaggedStatus, VanishedResponse
from imapd.protocol.sequence import SequenceSet
from imapd.session.updates import Exists, Expunge, FlagChange, Keywords, Recent, Update
from statecodec import MailboxView, UidFingerprint, UidRanges

if TYPE_CHECKING:
    from imapd.session.session import Session
    from imapd.session.view import SelectedView
    from imapd.store.mailbox import Mailbox

__all__ = [
    "CatchUp",
    "NotRestorable",
    "changed_since",
    "missing_ranges",
    "plan_qresync_select",
    "plan_restore",
    "plan_restore_by_uid",
    "send_catch_up",
    "vanished_since",
]

BATCH = 128
"""Lines written between two waits for the socket to drain."""

Ranges = tuple[tuple[int, int], ...]


class NotRestorable(Exception):
    """The saved mailbox state cannot be put back exactly; the text says why (X-STATE-STALE)."""


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Everything a client must be told, computed before the first line is sent."""

    vanished: Ranges = ()
    """UIDs the client knew that are gone, as ascending inclusive ranges (the VANISHED form)."""
    expunge_runs: Ranges = ()
    """The same messages as EXPUNGE: ``(highest sequence number, count)`` runs, highest first; sending
    them in that order keeps every number valid at the moment it is sent."""
    exists: int | None = None
    """``* n EXISTS`` to send, if any."""
    flags: tuple[str, ...] | None = None
    """The mailbox's flag list when its keywords changed (``* FLAGS`` and ``PERMANENTFLAGS``)."""
    changed_seqs: Sequence[int] = ()
    changed_uids: Sequence[int] = ()
    """Messages whose flags to send (changed or new), by sequence number in the end state."""
    highest_modseq: int | None = None
    """``* OK [HIGHESTMODSEQ n]`` to send last, if any."""
    earlier: bool = False
    """VANISHED (EARLIER), for QRESYNC SELECT (RFC 7162 3.2.5.2)."""


# -- computing -------------------------------------------------------------------------------------------
def missing_ranges(ranges: Iterable[tuple[int, int]], present: Sequence[int], end: int | None = None) -> Ranges:
    """The sub-ranges of ``ranges`` (sorted, disjoint) holding no UID of ``present[:end]`` (ascending).

    Divide and conquer on each range: a piece whose UIDs are all present, or all absent, is settled by
    two bisections, so the cost grows with the number of gaps, not with the size of the ranges.
    """
    stop = len(present) if end is None else end
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        stack = [(lo, hi, bisect.bisect_left(present, lo, 0, stop), bisect.bisect_right(present, hi, 0, stop))]
        while stack:
            a, b, i, j = stack.pop()
            if j - i == b - a + 1:
                continue  # all present
            if i == j:
                if out and out[-1][1] + 1 == a:
                    out[-1] = (out[-1][0], b)
                else:
                    out.append((a, b))
                continue
            mid = (a + b) // 2
            k = bisect.bisect_right(present, mid, i, j)
            stack.append((mid + 1, b, k, j))
            stack.append((a, mid, i, k))  # popped first: output stays ascending
    return tuple(out)


def _to_ranges(uids: Iterable[int]) -> Ranges:
    out: list[tuple[int, int]] = []
    for u in uids:
        if out and out[-1][1] + 1 == u:
            out[-1] = (out[-1][0], u)
        else:
            out.append((u, u))
    return tuple(out)


def _count(ranges: Ranges) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)


def _expunge_runs(vanished: Ranges, present: Sequence[int], below: int) -> Ranges:
    """(old seq of the highest UID, count) per vanished range, highest first.

    The old map is ``present[:below]`` plus the vanished UIDs; a vanished range is a run of consecutive
    sequence numbers in it, so its highest UID's rank fixes the whole run.
    """
    runs: list[tuple[int, int]] = []
    gone_before = 0
    for lo, hi in vanished:
        size = hi - lo + 1
        gone_before += size
        runs.append((bisect.bisect_right(present, hi, 0, below) + gone_before, size))
    runs.reverse()
    return tuple(runs)


def _old_map_vanished(mailbox: Mailbox, saved: MailboxView, present: Sequence[int], below: int) -> Ranges:
    """What vanished of the client's saved UIDs; NotRestorable if the saved map cannot be rebuilt."""
    known = saved.known_uids
    if isinstance(known, UidRanges):
        uidset = known.to_set()
        vanished = missing_ranges(uidset.ranges(), present, below)
        count = len(uidset)
    else:
        assert isinstance(known, UidFingerprint)
        expunged, complete = mailbox.expunged_since(saved.highest_modseq)
        if not complete:
            raise NotRestorable("the change history no longer reaches back to the saved state")
        gone = [u for u in expunged if u < saved.uidnext]
        vanished = _to_ranges(gone)
        count = known.count
        candidate = array("I", sorted(itertools.chain(present[:below], gone))) if gone else present[:below]
        if not known.matches(candidate):  # O(n): a fingerprint can only be checked whole
            raise NotRestorable("the saved message list does not match the mailbox history")
    # Everything the client knew and still exists is below the saved UIDNEXT, so equal counts mean
    # the client's surviving UIDs are exactly the mailbox's UIDs below it.
    if count != saved.message_count or count - _count(vanished) != below:
        raise NotRestorable("the mailbox holds messages the saved state never knew")
    return vanished


def _changed(mailbox: Mailbox, modseq: int, present: Sequence[int]) -> tuple[array[int], array[int]]:
    seqs, uids = array("I"), array("I")
    for uid, _, _ in mailbox.changed_since(modseq):
        i = bisect.bisect_left(present, uid)
        if i < len(present) and present[i] == uid:
            seqs.append(i + 1)
            uids.append(uid)
    return seqs, uids


def plan_restore(mailbox: Mailbox, saved: MailboxView, *, flags: tuple[str, ...] | None) -> CatchUp:
    """The catch-up from a saved view (X-STATE token or hand-off) to the mailbox as it is now.

    The end state is the mailbox's current UID list (``mailbox.uid_array``, all of it). ``flags`` is the
    mailbox's flag list when the keywords changed since the save, else None.
    """
    present = mailbox.uid_array
    below = bisect.bisect_left(present, saved.uidnext)
    vanished = _old_map_vanished(mailbox, saved, present, below)
    exists = len(present)
    seqs, uids = _changed(mailbox, saved.highest_modseq, present)
    return CatchUp(
        vanished=vanished,
        expunge_runs=_expunge_runs(vanished, present, below),
        exists=exists if vanished or exists != saved.message_count else None,
        flags=flags,
        changed_seqs=seqs,
        changed_uids=uids,
        highest_modseq=mailbox.highestmodseq,
    )


def plan_restore_by_uid(mailbox: Mailbox, saved: MailboxView, *, flags: tuple[str, ...] | None) -> CatchUp:
    """The catch-up of a UIDONLY (RFC 9586) state, which carries no known-UID map (the client has no
    sequence numbers to keep in step): what vanished is what was expunged since the saved HIGHESTMODSEQ
    below the saved UIDNEXT or, when the history no longer reaches back, every UID below it that is not
    in the mailbox (a client ignores UIDs it never knew, as under QRESYNC). Always sent as VANISHED."""
    present = mailbox.uid_array
    top = saved.uidnext - 1
    expunged, complete = mailbox.expunged_since(saved.highest_modseq)
    if complete:
        vanished = _to_ranges(u for u in expunged if u <= top)
    else:
        vanished = missing_ranges(((1, top),) if top >= 1 else (), present)
    seqs, uids = _changed(mailbox, saved.highest_modseq, present)
    exists = len(present)
    return CatchUp(
        vanished=vanished,
        exists=exists if vanished or exists != saved.message_count else None,
        flags=flags,
        changed_seqs=seqs,
        changed_uids=uids,
        highest_modseq=mailbox.highestmodseq,
    )


def plan_qresync_select(mailbox: Mailbox, modseq: int, known: SequenceSet | None) -> CatchUp:
    """RFC 7162 3.2.5.2: VANISHED (EARLIER) for what is gone, then FETCH for what changed (the SELECT
    responses already told EXISTS and HIGHESTMODSEQ)."""
    present = mailbox.uid_array
    seqs, uids = _changed(mailbox, modseq, present)
    return CatchUp(vanished=_vanished_ranges(mailbox, modseq, known), changed_seqs=seqs, changed_uids=uids,
                   earlier=True)


def vanished_since(mailbox: Mailbox, modseq: int, known: SequenceSet | None) -> SequenceSet:
    """UIDs the client may still know (within ``known``, default all below UIDNEXT) that are gone."""
    return SequenceSet(_vanished_ranges(mailbox, modseq, known))


def _vanished_ranges(mailbox: Mailbox, modseq: int, known: SequenceSet | None) -> Ranges:
    top = mailbox.uidnext - 1
    if top < 1:
        return ()
    ranges = known.resolve(top, clip=True) if known is not None else ((1, top),)
    expunged, complete = mailbox.expunged_since(modseq)
    if complete:
        return _to_ranges(u for u in expunged if _in_ranges(u, ranges))
    # History no longer reaches back: every UID in the known ranges that is not in the mailbox now.
    return missing_ranges(ranges, mailbox.uid_array)


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


# -- sending ---------------------------------------------------------------------------------------------
def _expunge_seqs(runs: Ranges) -> Iterator[int]:
    for top, count in runs:
        yield from range(top, top - count, -1)


def _batches(items: Iterable[Update]) -> Iterator[list[Update]]:
    it = iter(items)
    while batch := list(itertools.islice(it, BATCH)):
        yield batch


def leave_pending(view: SelectedView, plan: CatchUp, saved_uidnext: int) -> None:
    """Put ``view`` (selected in the mailbox's current state) back to the client's saved view and leave
    ``plan`` in it as pending updates (X-STATE RESTORE ... PENDING): the expunged UIDs stay in the map
    until an EXPUNGE may be sent, flag changes and new messages go out with the next command's updates.
    The old map is the UIDs below the saved UIDNEXT that still exist plus those that vanished."""
    present = view.mailbox.uid_array
    below = bisect.bisect_left(present, saved_uidnext)
    gone = [u for lo, hi in plan.vanished for u in range(lo, hi + 1)]
    view.uids = array("I", sorted(itertools.chain(present[:below], gone))) if gone else present[:below]
    view.exists = len(view.uids)
    if gone:
        view.pending_expunged = set(gone)
    top = view.max_uid
    changed = {u for u in plan.changed_uids if u <= top}
    if changed:
        view.pending_flags = changed
    if plan.flags is not None:
        view.flags_sent = ()  # the keywords changed: the next updates say FLAGS again


async def send_catch_up(s: Session, plan: CatchUp) -> None:
    """Write ``plan`` to the session's selected mailbox (already committed to the end state).

    Every update goes through the session's one update path (``Session.send_updates``, rendered by
    ``imapd.session.updates``), so a catch-up follows the same rules as every other update: RECENT with
    EXISTS, ``\\Recent`` per session, UID and MODSEQ under CONDSTORE.
    """
    view = s.selected
    if view is None:
        return
    if plan.vanished:
        if s.vanished:
            s.send(VanishedResponse(SequenceSet(plan.vanished), earlier=plan.earlier))
        else:
            for batch in _batches(Expunge(n) for n in _expunge_seqs(plan.expunge_runs)):
                s.send_updates(batch)
                await s.conn.drain()
    if plan.exists is not None:
        s.send_updates([Exists(plan.exists), Recent(view.recent_count())])
    if plan.flags is not None:
        s.send_updates([Keywords(plan.flags)])
    changes = zip(plan.changed_seqs, plan.changed_uids, strict=True)
    for batch in _batches(FlagChange(seq, uid) for seq, uid in changes):
        s.send_updates(batch)
        await s.conn.drain()
    if plan.highest_modseq is not None:
        s.send(UntaggedStatus("OK", "Highest", NumberCode("HIGHESTMODSEQ", plan.highest_modseq)))
