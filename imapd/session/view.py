"""The selected mailbox as one client sees it: its sequence-number map and what it has not been told yet.

The store keeps one shared mailbox object per process; a view never copies the mailbox's data while
it is in step with it. It holds a reference to the mailbox's UID array and the count of messages the
client knows. The store only ever *appends* to that array in place (new UIDs are always larger) and
builds a new array when messages are expunged, so ``uids[:exists]`` stays exactly the client's map
until the view reports the change. Only when an update must be held back (no EXPUNGE during FETCH,
STORE or SEARCH, RFC 3501 7.4.1) while new mail must still be announced does a view take a private
copy, and it drops it at the next point where expunges may be sent.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from imapd.protocol.flags import STORABLE_SYSTEM_FLAGS
from imapd.session import contexts
from imapd.session.contexts import LiveContexts
from imapd.session.recent import RecentUids
from imapd.session.updates import (
    Exists,
    Expunge,
    FlagChange,
    Keywords,
    Recent,
    Update,
    Vanished,
    mailbox_flags,
)
from imapd.store.changefeed import FlagsChanged, MessagesAdded, MessagesExpunged

if TYPE_CHECKING:
    from imapd.session.recent import RecentClaims
    from imapd.store.mailbox import Mailbox
    from imapd.store.userstore import UserStore

__all__ = ["SelectedView", "Update"]


class SelectedView:
    __slots__ = (
        "_claims",
        "_notify",
        "_subscription",
        "_user",
        "contexts",
        "exists",
        "flags_sent",
        "mailbox",
        "pending_expunged",
        "pending_flags",
        "readonly",
        "recent",
        "uids",
    )

    def __init__(self, mailbox: Mailbox, *, readonly: bool, claims: RecentClaims | None = None,
                 user: UserStore | None = None) -> None:
        self.mailbox = mailbox
        self.readonly = readonly
        self.uids: array[int] = mailbox.uid_array
        self.exists = len(self.uids)
        self.pending_expunged: set[int] | None = None
        self.pending_flags: set[int] | None = None
        # \Recent for this session (RFC 3501 2.3.2); with ``claims`` new mail is claimed as it is announced.
        self.recent = RecentUids()
        self._claims = claims
        self._user = user
        self.flags_sent: tuple[str, ...] = mailbox_flags(mailbox)  # the FLAGS list the client holds
        self._notify: Callable[[], None] | None = None
        self._subscription: Any = None
        self.contexts: LiveContexts | None = None  # RFC 5267 RETURN (UPDATE) results kept live here

    # -- sequence numbers ---------------------------------------------------------------------------
    def uid_of(self, seq: int) -> int:
        return self.uids[seq - 1]

    def seq_of(self, uid: int) -> int | None:
        """Sequence number of ``uid`` in the client's view, or None."""
        i = bisect.bisect_left(self.uids, uid, 0, self.exists)
        if i < self.exists and self.uids[i] == uid:
            return i + 1
        return None

    @property
    def max_uid(self) -> int:
        return self.uids[self.exists - 1] if self.exists else 0

    def seq_range_uids(self, first: int, last: int) -> Iterator[tuple[int, int]]:
        """(seq, uid) for a resolved, clipped message-number range."""
        uids = self.uids
        for seq in range(first, last + 1):
            yield seq, uids[seq - 1]

    def uid_range_seqs(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """(seq, uid) for the known messages whose UID is within [lo, hi]."""
        uids = self.uids
        start = bisect.bisect_left(uids, lo, 0, self.exists)
        stop = bisect.bisect_right(uids, hi, start, self.exists)
        for i in range(start, stop):
            yield i + 1, uids[i]

    def is_expunged(self, uid: int) -> bool:
        return self.pending_expunged is not None and uid in self.pending_expunged

    # -- change feed --------------------------------------------------------------------------------
    def set_listener(self, subscription: Any, notify: Callable[[], None] | None) -> None:
        self._subscription = subscription
        self._notify = notify

    def set_notify(self, notify: Callable[[], None] | None) -> None:
        """Called on every change while the session is in IDLE."""
        self._notify = notify

    def recent_count(self) -> int:
        return self.recent.count_in(self.uids, self.exists)

    @property
    def recent_from(self) -> int:
        """The first UID of this session's \\Recent (UIDNEXT when none): the older, single-range view."""
        ranges = self.recent.ranges()
        return ranges[0][0] if ranges else self.mailbox.uidnext

    @recent_from.setter
    def recent_from(self, first: int) -> None:
        """Keep only the \\Recent UIDs from ``first`` on (X-STATE RESTORE before it carried \\Recent)."""
        self.recent = RecentUids((max(lo, first), hi) for lo, hi in self.recent.ranges())

    def learn_recent(self, lo: int, hi: int) -> None:
        """The client is being told about UIDs ``lo..hi``: a read-write view claims whatever nobody has
        claimed yet, a read-only one (EXAMINE) only shows it as \\Recent (RFC 3501 6.3.2)."""
        claims, user = self._claims, self._user
        if claims is None or user is None or hi < lo:
            return
        # A claim also takes unclaimed UIDs below ``lo``: the client knows them, and nobody else may get them.
        won = claims.peek(user, self.mailbox, lo, hi) if self.readonly else claims.claim(user, self.mailbox, hi)
        if won is not None:
            self.recent.add(*won)

    def restore_recent(self, saved: Iterable[tuple[int, int]], client_uidnext: int) -> None:
        """X-STATE RESTORE or a hand-off: a restored session is the same session, so it keeps the
        \\Recent it held (``saved``: inclusive UID ranges from its state, e.g. ``UidRanges.to_set().ranges()``)
        and, like a SELECT, claims the mail it is now told about (from the client's old UIDNEXT on) if
        nobody was told first meanwhile."""
        self.recent = RecentUids(saved)
        self.learn_recent(client_uidnext, self.mailbox.uidnext - 1)

    def keywords_changed(self) -> Keywords | None:
        """The FLAGS update to send before anything shows a keyword the client was not told about."""
        flags = mailbox_flags(self.mailbox)
        if flags == self.flags_sent:
            return None
        self.flags_sent = flags
        return Keywords(flags)

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        self._notify = None

    def on_event(self, event: object) -> None:
        """The change-feed callback (a bound method: no closure per session)."""
        if isinstance(event, MessagesExpunged):
            self.on_expunged(event.uids)
        elif isinstance(event, FlagsChanged):
            self.on_flags([u for u, _, _ in event.changes])
        elif isinstance(event, MessagesAdded):
            self.on_added()

    def on_expunged(self, uids: list[int]) -> None:
        top = self.max_uid
        known = [u for u in uids if u <= top]
        if known:
            if self.pending_expunged is None:
                self.pending_expunged = set()
            self.pending_expunged.update(known)
            if self.pending_flags:
                self.pending_flags.difference_update(known)
        if self._notify is not None:
            self._notify()

    def on_flags(self, uids: list[int]) -> None:
        top = self.max_uid
        known = [u for u in uids if u <= top]
        if known:
            if self.pending_flags is None:
                self.pending_flags = set()
            self.pending_flags.update(known)
            if self.contexts:
                self.contexts.dirty.update(known)  # also when this session made the change itself
        if self._notify is not None:
            self._notify()

    def on_added(self) -> None:
        if self._notify is not None:
            self._notify()

    def forget_flag_updates(self, uids: list[int]) -> None:
        """This session reported these flags itself (STORE without .SILENT)."""
        if self.pending_flags:
            self.pending_flags.difference_update(uids)

    @property
    def has_pending(self) -> bool:
        return (bool(self.pending_expunged or self.pending_flags) or len(self.mailbox.uid_array) != self.exists
                or len(self.flags_sent) != len(STORABLE_SYSTEM_FLAGS) + len(self.mailbox.keywords())
                or bool(self.contexts and self.contexts.dirty))

    # -- catching the client up -----------------------------------------------------------------------
    def take_updates(self, *, allow_expunge: bool, vanished: bool) -> list[Update]:
        """Updates to send now, already applied to the view. Expunges first, then EXISTS, then flags; the
        live contexts' ADDTO/REMOVEFROM where RFC 5267 wants them (``contexts.weave``)."""
        live = self.contexts
        if not live:
            return self._take_updates(allow_expunge=allow_expunge, vanished=vanished)
        was = contexts.before(self, allow_expunge=allow_expunge)
        return contexts.weave(self, was, self._take_updates(allow_expunge=allow_expunge, vanished=vanished))

    def _take_updates(self, *, allow_expunge: bool, vanished: bool) -> list[Update]:
        out: list[Update] = []
        current = self.mailbox.uid_array
        if self.pending_expunged and allow_expunge:
            gone = sorted(self.pending_expunged)
            self.pending_expunged = None
            if vanished:
                out.append(Vanished(tuple(gone)))
            else:
                # Highest first, so every number sent is valid at the moment it is sent.
                for uid in reversed(gone):
                    seq = self.seq_of(uid)
                    if seq is not None:
                        out.append(Expunge(seq))
            # Everything still known is in ``current`` in the same order, followed by new arrivals.
            self.exists -= len(gone)
            self.uids = current
        if self.pending_expunged:
            # Held back: keep the old map (the store replaced its array on expunge) and graft the
            # new arrivals onto a private copy of it. The old array may have grown in place before it
            # was replaced, with UIDs since expunged, so only ``exists`` counts, never its length.
            start = bisect.bisect_right(current, self.max_uid)
            n = self.exists
            if start < len(current):
                self._graft(current[start:])
                n = len(self.uids)
        else:
            if self.uids is not current:
                self.uids = current
            n = len(current)
        if n != self.exists:
            self._announce_size(out, n)
        keywords = self.keywords_changed()
        if keywords is not None:
            out.append(keywords)
        if self.pending_flags:
            changed = sorted(self.pending_flags)
            self.pending_flags = None
            for uid in changed:
                if self.pending_expunged and uid in self.pending_expunged:
                    continue
                seq = self.seq_of(uid)
                if seq is not None:
                    out.append(FlagChange(seq, uid))
        return out

    def _announce_size(self, out: list[Update], n: int) -> None:
        """EXISTS and RECENT (RFC 3501 7.3.2); new mail is \\Recent here if nobody was told first."""
        if n > self.exists:
            self.learn_recent(self.max_uid + 1, self.uids[n - 1])
        self.exists = n
        out.append(Exists(n))
        out.append(Recent(self.recent_count()))

    def _graft(self, new_uids: array[int]) -> None:
        base = self.uids[: self.exists]
        if not isinstance(base, array):  # pragma: no cover - slicing an array gives an array
            base = array("I", base)
        base.extend(new_uids)
        self.uids = base
