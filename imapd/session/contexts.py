"""Live search results (RFC 5267 CONTEXT=SEARCH and CONTEXT=SORT): what ``RETURN (UPDATE)`` keeps, and the
``ADDTO`` / ``REMOVEFROM`` that keep the client's copy of the result right as the mailbox changes.

A context is registered on the selected view and ends with it (RFC 5267 4.3: updates cease when the mailbox
is no longer selected) or at CANCELUPDATE. It holds the result as UIDs in the requested order (mailbox order
for SEARCH, sort order for SORT) and the criteria *frozen*: message numbers, ``*`` and ``$`` are resolved
to UIDs when the command is received (RFC 5267 4.3, after the RFC 3501 errata), so the criteria match the
same way whatever the sequence numbers become, and any single message can be re-tested alone.

When the view reports changes (:meth:`imapd.session.view.SelectedView.take_updates`), only the messages
that changed are re-tested: new ones, those whose flags changed (by anyone, this session included) and
those expunged. The cost is the number of changes, plus, for a sorted context that gains messages, one
sort of its result. The updates are placed where RFC 5267 4.3.2-4.3.4 wants them:

- ``REMOVEFROM`` for expunged messages goes just before the EXPUNGE/VANISHED (message numbers must still
  be valid), so it is held back exactly as long as the expunge is (RFC 3501 7.4.1);
- ``ADDTO`` / ``REMOVEFROM`` for new mail and flag changes go after EXISTS and the FETCH of the change.

Positions: 0 for SEARCH (the client keeps mailbox order); for SORT the position in the sorted result, so
that inserting in the order sent rebuilds the server's order. Numbers are UIDs for UID SEARCH/UID SORT and
message numbers otherwise, as the view numbers messages at the moment the response is sent.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imapd.protocol import NEED_DATA, ServerConnection
from imapd.protocol import commands as c
from imapd.protocol.command_writer import write_command
from imapd.protocol.events import CommandReceived
from imapd.protocol.response_codes import Code
from imapd.protocol.responses import ContextChange, EsearchResponse, EsearchValue, Response, UntaggedStatus
from imapd.protocol.search_keys import SearchAll, SearchAnd, SearchKey, SearchNot, SearchOr, SearchSequence
from imapd.protocol.sequence import SequenceSet
from imapd.session.search import search as run_search
from imapd.session.sortrows import sort_uids
from imapd.session.updates import ContextUpdate, Expunge, Update, Vanished
from statecodec import MAX_LIVE_SEARCH_BYTES, LiveSearch, UidRanges, UidSet

if TYPE_CHECKING:
    from imapd.session.view import SelectedView

__all__ = ["Before", "LiveContext", "LiveContexts", "cancel", "freeze", "in_use", "parse_saved", "register",
           "restore_saved", "saved_command", "to_saved"]


@dataclass(slots=True)
class LiveContext:
    """One searching command with ``RETURN (UPDATE)``."""

    tag: str
    uid: bool
    criteria: SearchKey
    """Frozen: only UID sets, no message numbers, ``*`` or ``$``."""
    charset: str | None
    keys: tuple[c.SortKey, ...] | None
    """The sort order (CONTEXT=SORT), None for a SEARCH context."""
    result: list[int]
    """UIDs in the requested order, as the client holds them."""

    def command(self) -> c.Search | c.Sort:
        """The searching command that recomputes this result (what X-STATE saves, re-serialized)."""
        if self.keys is None:
            return c.Search(self.tag, self.criteria, self.uid, self.charset, ("UPDATE",))
        return c.Sort(self.tag, self.keys, self.charset or "UTF-8", self.criteria, self.uid, ("UPDATE",))


@dataclass(slots=True)
class LiveContexts:
    """The live contexts of one selected view, and the UIDs to re-test at the next update."""

    entries: dict[str, LiveContext] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.entries)


@dataclass(slots=True)
class Before:
    """The view just before it applies its pending updates: what the contexts need to compare."""

    max_uid: int
    expunged: list[int]
    """UIDs whose expunge is about to be reported."""
    seqs: dict[int, int]
    """Their message numbers before the expunge (for message-number contexts)."""


# -- registering ---------------------------------------------------------------------------------------
def in_use(view: SelectedView, tag: str) -> bool:
    live = view.contexts
    return live is not None and tag in live.entries


def freeze(view: SelectedView, key: SearchKey, saved: Sequence[int] | None) -> SearchKey:
    """``key`` with every message set as the UIDs it names now (message numbers, ``*``, ``$``)."""
    if isinstance(key, SearchAnd):
        return SearchAnd(tuple(freeze(view, k, saved) for k in key.keys))
    if isinstance(key, SearchOr):
        return SearchOr(freeze(view, key.left, saved), freeze(view, key.right, saved))
    if isinstance(key, SearchNot):
        return SearchNot(freeze(view, key.key, saved))
    if isinstance(key, SearchSequence):
        uids = _frozen_uids(view, key, saved)
        # No empty sequence-set can be written (X-STATE keeps the criteria as text): match nothing instead.
        return SearchSequence(uids, uid=True) if uids.ranges else SearchNot(SearchAll())
    return key


def _frozen_uids(view: SelectedView, key: SearchSequence, saved: Sequence[int] | None) -> SequenceSet:
    if key.sequence.saved:
        return SequenceSet.of(saved or ())
    if key.uid:
        return SequenceSet(key.sequence.resolve(view.max_uid))
    uids = view.uids
    return SequenceSet.of(u for lo, hi in key.sequence.resolve(view.exists) for u in uids[lo - 1 : hi])


def register(view: SelectedView, cmd: c.Search | c.Sort, result: list[int], *, limit: int,
             saved: Sequence[int] | None = None) -> bool:
    """Keep ``cmd``'s ``result`` (UIDs, requested order) live; ``saved`` is ``$`` as the command saw it.
    False when the view has ``limit`` contexts already (NOUPDATE; RFC 5267 4.3.1 asks for at least one)."""
    live = view.contexts
    if live is None:
        live = view.contexts = LiveContexts()
    if len(live.entries) >= max(1, limit):
        return False
    keys = cmd.keys if isinstance(cmd, c.Sort) else None
    criteria = freeze(view, cmd.criteria, saved)
    live.entries[cmd.tag] = LiveContext(cmd.tag, cmd.uid, criteria, cmd.charset, keys, list(result))
    return True


def cancel(view: SelectedView, tags: Iterable[str]) -> None:
    live = view.contexts
    if live is None:
        return
    for tag in tags:
        live.entries.pop(tag, None)
    if not live.entries:
        live.dirty.clear()


# -- updating ------------------------------------------------------------------------------------------
def before(view: SelectedView, *, allow_expunge: bool) -> Before:
    expunged = sorted(view.pending_expunged) if allow_expunge and view.pending_expunged else []
    seqs = {u: seq for u in expunged if (seq := view.seq_of(u)) is not None}
    return Before(view.max_uid, expunged, seqs)


def weave(view: SelectedView, was: Before, updates: list[Update]) -> list[Update]:
    """``updates`` (already applied to the view) with the contexts' ADDTO/REMOVEFROM in their places."""
    live = view.contexts
    assert live is not None
    gone = set(was.expunged)
    first: list[Update] = []
    last: list[Update] = []
    candidates = _candidates(view, was, live.dirty)
    live.dirty.clear()
    for ctx in live.entries.values():
        if gone:
            removed = _remove(ctx, gone, was.seqs.get)
            if removed is not None:
                first.append(ContextUpdate(_response(ctx, removed)))
        if candidates:
            changed = _retest(view, ctx, candidates)
            if changed:
                last.append(ContextUpdate(_response(ctx, changed)))
    if not first and not last:
        return updates
    if first:
        at = next((i for i, u in enumerate(updates) if isinstance(u, (Expunge, Vanished))), len(updates))
        updates = [*updates[:at], *first, *updates[at:]]
    return [*updates, *last]


def _candidates(view: SelectedView, was: Before, dirty: set[int]) -> list[int]:
    """The UIDs to re-test: new in the view, or changed, and still in the client's view."""
    uids, exists = view.uids, view.exists
    start = bisect.bisect_right(uids, was.max_uid, 0, exists)
    out = set(uids[start:exists])
    held = view.pending_expunged or ()
    out.update(u for u in dirty if u not in held and view.seq_of(u) is not None)
    return sorted(out)


Change = list[tuple[str, tuple[tuple[int, SequenceSet], ...]]]


SeqOf = Callable[[int], int | None]


def _numbers(ctx: LiveContext, uids: Iterable[int], seq_of: SeqOf) -> list[int]:
    if ctx.uid:
        return list(uids)
    return [n for u in uids if (n := seq_of(u)) is not None]


def _member(ctx: LiveContext) -> Callable[[int], bool]:
    """Membership in the result: a bisection for SEARCH (mailbox order), a set for SORT."""
    result = ctx.result
    if ctx.keys is not None:
        return set(result).__contains__

    def member(u: int) -> bool:
        i = bisect.bisect_left(result, u)
        return i < len(result) and result[i] == u

    return member


def _remove(ctx: LiveContext, gone: set[int], seq_of: SeqOf) -> Change | None:
    """REMOVEFROM for the members in ``gone``, numbered by ``seq_of``; None if none is a member."""
    member = _member(ctx)
    if not any(member(u) for u in gone):
        return None
    pairs = _removal_pairs(ctx, gone, seq_of)
    ctx.result = [u for u in ctx.result if u not in gone]
    return [("REMOVEFROM", pairs)]


def _removal_pairs(ctx: LiveContext, gone: set[int], seq_of: SeqOf) -> tuple[tuple[int, SequenceSet], ...]:
    if ctx.keys is None:
        return ((0, SequenceSet.of(_numbers(ctx, (u for u in ctx.result if u in gone), seq_of))),)
    # Runs of consecutive positions, last run first: each position is valid when the client applies it.
    runs: list[tuple[int, list[int]]] = []
    for i, u in enumerate(ctx.result):
        if u in gone:
            if runs and runs[-1][0] + len(runs[-1][1]) == i + 1:
                runs[-1][1].append(u)
            else:
                runs.append((i + 1, [u]))
    return tuple((pos, SequenceSet.in_order(_numbers(ctx, run, seq_of))) for pos, run in reversed(runs))


def _retest(view: SelectedView, ctx: LiveContext, candidates: list[int]) -> Change:
    matched = set(run_search(view.mailbox, candidates, ctx.criteria, charset=ctx.charset, recent=view.recent))
    member = _member(ctx)
    leaving = {u for u in candidates if u not in matched and member(u)}
    joining = [u for u in candidates if u in matched and not member(u)]
    out: Change = []
    seq_of = view.seq_of
    if leaving:
        out.append(("REMOVEFROM", _removal_pairs(ctx, leaving, seq_of)))
        ctx.result = [u for u in ctx.result if u not in leaving]
    if joining:
        out.append(("ADDTO", _insert(view, ctx, joining)))
    return out


def _insert(view: SelectedView, ctx: LiveContext, joining: list[int]) -> tuple[tuple[int, SequenceSet], ...]:
    """Add ``joining`` (ascending) to the result; the ADDTO pairs that do the same on the client."""
    seq_of = view.seq_of
    if ctx.keys is None:
        if len(joining) <= _FEW:
            for u in joining:
                bisect.insort(ctx.result, u)
        else:
            ctx.result = sorted({*ctx.result, *joining})
        return ((0, SequenceSet.of(_numbers(ctx, joining, seq_of))),)
    held = view.pending_expunged
    if len(joining) <= _FEW and not (held and any(u in held for u in ctx.result)):
        return _insert_few(view, ctx, joining)
    new = set(joining)
    # Sort what the mailbox still holds; a member whose expunge is held back keeps its place.
    order = sort_uids(view.mailbox, sorted({*ctx.result, *joining}), ctx.keys)
    after: dict[int | None, list[int]] = {}
    prev: int | None = None
    for u in order:
        if u in new:
            after.setdefault(prev, []).append(u)
        else:
            prev = u
    result = list(after.get(None, ()))
    pairs: list[tuple[int, SequenceSet]] = []
    if result:
        pairs.append((1, SequenceSet.in_order(_numbers(ctx, result, seq_of))))
    for member in ctx.result:
        result.append(member)
        run = after.get(member)
        if run:
            pairs.append((len(result) + 1, SequenceSet.in_order(_numbers(ctx, run, seq_of))))
            result.extend(run)
    ctx.result = result
    return tuple(pairs)


_FEW = 16
"""Up to this many joining messages are placed by binary search instead of sorting the whole result."""


def _insert_few(view: SelectedView, ctx: LiveContext, joining: list[int]) -> tuple[tuple[int, SequenceSet], ...]:
    """Place each joining message by binary search over the sorted result, comparing two messages at a
    time with the same sort (ties in UID order, so the order is exactly the full sort's): a new message in
    a 100,000-message sorted context costs about 17 comparisons, not a sort. Every member is in the mailbox."""
    mailbox, keys = view.mailbox, ctx.keys
    assert keys is not None
    result = ctx.result
    runs: list[tuple[int, list[int]]] = []
    for u in joining:
        lo, hi = 0, len(result)
        while lo < hi:
            mid = (lo + hi) // 2
            if sort_uids(mailbox, sorted((result[mid], u)), keys)[0] != u:
                lo = mid + 1
            else:
                hi = mid
        result.insert(lo, u)
        if runs and runs[-1][0] + len(runs[-1][1]) == lo + 1:
            runs[-1][1].append(u)
        else:
            runs.append((lo + 1, [u]))
    return tuple((pos, SequenceSet.in_order(_numbers(ctx, run, view.seq_of))) for pos, run in runs)


def _response(ctx: LiveContext, change: Change) -> EsearchResponse:
    items: tuple[tuple[str, EsearchValue], ...] = tuple((name, ContextChange(pairs)) for name, pairs in change)
    return EsearchResponse(ctx.tag, ctx.uid, items)


# -- saving and restoring (X-STATE, hand-off) ----------------------------------------------------------
def saved_command(ctx: LiveContext) -> str:
    """The context's command as text (tag, UID SEARCH/SORT, frozen criteria): what a state keeps."""
    return write_command(ctx.command(), utf8=True)[:-2].decode()


def parse_saved(text: str) -> c.Search | c.Sort | None:
    """The command of :func:`saved_command`, parsed by the protocol layer (literals included)."""
    conn = ServerConnection()
    conn.utf8 = True
    conn.receive_data(text.encode() + b"\r\n")
    while (event := conn.next_event()) is not NEED_DATA:
        if isinstance(event, CommandReceived):
            cmd = event.command
            return cmd if isinstance(cmd, (c.Search, c.Sort)) else None
    return None


def to_saved(view: SelectedView) -> tuple[LiveSearch, ...]:
    """The UID contexts as an X-STATE keeps them, as many as fit :data:`MAX_LIVE_SEARCH_BYTES`. A
    message-number context is left out: its numbers cannot be caught up across expunges the client was
    told of in another connection."""
    live = view.contexts
    if not live:
        return ()
    out: list[LiveSearch] = []
    budget = MAX_LIVE_SEARCH_BYTES
    for ctx in live.entries.values():
        if not ctx.uid:
            continue
        item = LiveSearch(saved_command(ctx), UidRanges.from_set(UidSet.from_uids(sorted(ctx.result))))
        cost = len(item.command) + len(item.result.data)
        if cost <= budget:
            out.append(item)
            budget -= cost
    return tuple(out)


def restore_saved(view: SelectedView, saved: Iterable[LiveSearch], *, limit: int) -> list[Response]:
    """Put saved contexts back on a restored view (already in the mailbox's current state) and return what
    the client must hear: per context, REMOVEFROM/ADDTO from the result it holds to the current one, or
    ``NO [NOUPDATE]`` when its updates cannot continue (a sorted result lost members whose position is no
    longer known, or the limit)."""
    out: list[Response] = []
    mailbox = view.mailbox
    for item in saved:
        cmd = parse_saved(item.command)
        if cmd is None or not cmd.uid or in_use(view, cmd.tag):
            continue
        held = list(item.result.to_set())
        keys = cmd.keys if isinstance(cmd, c.Sort) else None
        if keys is not None:
            if any(u not in mailbox for u in held):
                out.append(_no_update(cmd.tag, "Context lost while away; search again"))
                continue
            held = sort_uids(mailbox, held, keys)
        if not register(view, cmd, held, limit=limit):
            out.append(_no_update(cmd.tag, "Too many contexts"))
            continue
        assert view.contexts is not None
        ctx = view.contexts.entries[cmd.tag]
        now = run_search(mailbox, view.uids[: view.exists], ctx.criteria, charset=ctx.charset, recent=view.recent)
        current = set(now)
        change: Change = []
        leaving = {u for u in held if u not in current}
        if leaving:
            change.append(("REMOVEFROM", _removal_pairs(ctx, leaving, view.seq_of)))
            ctx.result = [u for u in ctx.result if u not in leaving]
        joining = sorted(current.difference(held))
        if joining:
            change.append(("ADDTO", _insert(view, ctx, joining)))
        if change:
            out.append(_response(ctx, change))
    return out


def _no_update(tag: str, text: str) -> UntaggedStatus:
    return UntaggedStatus("NO", text, Code("NOUPDATE", '"' + tag + '"'))
