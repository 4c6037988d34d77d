"""Commands on the selected mailbox: FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE, CLOSE, UNSELECT, IDLE."""

from __future__ import annotations

from collections.abc import Iterable

from imapd.protocol import commands as c
from imapd.protocol.response_codes import CopyUidCode, ModifiedCode
from imapd.protocol.responses import (
    ContinuationResponse,
    FetchResponse,
    SearchResponse,
    UntaggedStatus,
)
from imapd.protocol.sequence import SequenceSet
from imapd.protocol.values import Atom
from imapd.session.errors import CommandBad, CommandNo
from imapd.session.session import Done, Session
from imapd.session.view import SelectedView
from imapd.store.errors import NoSuchMailbox


def _view(s: Session) -> SelectedView:
    view = s.selected
    assert view is not None
    return view


def resolve(s: Session, view: SelectedView, sequence: SequenceSet, *, uid: bool) -> list[tuple[int, int]]:
    """(seq, uid) pairs the set names in the client's view, ascending."""
    if sequence.saved:
        saved = s.search_result or []
        pairs = []
        for u in saved:
            seq = view.seq_of(u)
            if seq is not None:
                pairs.append((seq, u))
        return pairs
    out: list[tuple[int, int]] = []
    if uid:
        for lo, hi in sequence.resolve(max(view.max_uid, 0) or 0, clip=False):
            if view.exists == 0:
                break
            out.extend(view.uid_range_seqs(lo, hi))
        # ``*`` on UIDs is the largest UID even if the range is reversed (RFC 3501 6.4.8).
        return out
    if view.exists == 0 or sequence.exceeds(view.exists):
        raise CommandBad("Message sequence number out of range")
    for lo, hi in sequence.resolve(view.exists):
        out.extend(view.seq_range_uids(lo, hi))
    return out


def _flag_atoms(flags: Iterable[str]) -> list[Atom]:
    return [Atom(f) for f in flags]


def _condstore(s: Session) -> bool:
    return "CONDSTORE" in s.enabled or "QRESYNC" in s.enabled


# -- FETCH --------------------------------------------------------------------------------------------------
async def fetch(s: Session, cmd: c.Fetch) -> Done:
    from imapd.mime import UnknownEncoding
    from imapd.session.fetch import FetchPlan, render

    view = _view(s)
    mailbox = view.mailbox
    pairs = resolve(s, view, cmd.sequence, uid=cmd.uid)
    plan = FetchPlan(cmd.items)
    live = [(seq, u) for seq, u in pairs if u in mailbox]
    gone = len(live) != len(pairs)
    if plan.sets_seen and not view.readonly:
        unseen = [u for _, u in live if "\\Seen" not in (mailbox.flags(u) or ())]
        if unseen:
            mailbox.store_flags(unseen, "add", ["\\Seen"])
            view.forget_flag_updates(unseen)
    infos = {}
    if plan.needs_info:
        infos = {i.uid: i for i in mailbox.message_info([u for _, u in live])}
    want_uid = cmd.uid and not plan.wants_uid
    recent_from = view.recent_from
    for seq, u in live:
        flags = mailbox.flags(u)
        if flags is None:
            gone = True
            continue
        if u >= recent_from:
            flags = (*flags, "\\Recent")
        try:
            items = render(plan, mailbox, u, info=infos.get(u), flags=flags, modseq=mailbox.modseq(u))
        except UnknownEncoding as exc:
            raise CommandNo(f"Cannot decode message {u}: {exc}", "UNKNOWN-CTE") from None
        except FileNotFoundError:
            gone = True
            continue
        if want_uid:
            items.insert(0, ("UID", u))
        s.send(FetchResponse(seq, items))
        await s.conn.drain()
    if gone:
        raise CommandNo("Some of the requested messages no longer exist", "EXPUNGEISSUED")
    return Done("FETCH completed")


# -- STORE --------------------------------------------------------------------------------------------------
_MODES = {"+": "add", "-": "remove", "": "replace"}


async def store(s: Session, cmd: c.Store) -> Done:
    view = _view(s)
    if view.readonly:
        raise CommandNo("Mailbox is read-only", "READ-ONLY")
    mailbox = view.mailbox
    pairs = [(seq, u) for seq, u in resolve(s, view, cmd.sequence, uid=cmd.uid) if u in mailbox]
    uids = [u for _, u in pairs]
    result = mailbox.store_flags(uids, _MODES[cmd.mode], cmd.flags,  # type: ignore[arg-type]
                                 unchanged_since=cmd.unchangedsince)
    failed = set(result.failed)
    view.forget_flag_updates([u for u in uids if u not in failed])
    condstore = _condstore(s) or cmd.unchangedsince is not None
    for seq, u in pairs:
        if u in failed:
            continue
        if cmd.silent:
            continue
        flags = mailbox.flags(u) or ()
        if u >= view.recent_from:
            flags = (*flags, "\\Recent")
        items: list[tuple[str, object]] = []
        if cmd.uid:
            items.append(("UID", u))
        items.append(("FLAGS", _flag_atoms(flags)))
        if condstore:
            items.append(("MODSEQ", [mailbox.modseq(u) or 0]))
        s.send(FetchResponse(seq, items))  # type: ignore[arg-type]
    if failed:
        numbers = sorted(failed) if cmd.uid else sorted(seq for seq, u in pairs if u in failed)
        return Done("Conditional STORE failed for some messages", ModifiedCode(SequenceSet.of(numbers)))
    return Done("STORE completed")


# -- SEARCH -------------------------------------------------------------------------------------------------
async def search(s: Session, cmd: c.Search) -> Done:
    from imapd.session.search import BadCharset
    from imapd.session.search import search as run_search

    view = _view(s)
    known = view.uids[: view.exists]
    try:
        uids = run_search(view.mailbox, known, cmd.criteria, saved=s.search_result, charset=cmd.charset,
                          recent_from=view.recent_from)
    except BadCharset:
        raise CommandNo(f"Unsupported charset {cmd.charset}", "BADCHARSET", "(UTF-8 US-ASCII)") from None
    if cmd.uid:
        numbers = tuple(uids)
    else:
        numbers = tuple(seq for u in uids if (seq := view.seq_of(u)) is not None)
    s.send(SearchResponse(numbers))
    return Done("SEARCH completed")


# -- COPY / MOVE --------------------------------------------------------------------------------------------
async def copy(s: Session, cmd: c.Copy | c.Move) -> Done:
    view = _view(s)
    mailbox = view.mailbox
    move = isinstance(cmd, c.Move)
    if move and view.readonly:
        raise CommandNo("Mailbox is read-only", "READ-ONLY")
    uids = [u for _, u in resolve(s, view, cmd.sequence, uid=cmd.uid) if u in mailbox]
    user = s.user
    assert user is not None
    if not user.exists(cmd.mailbox):
        raise CommandNo(f"Mailbox does not exist: {cmd.mailbox}", "TRYCREATE")
    if not uids:
        return Done(("MOVE" if move else "COPY") + " completed (no messages)")
    try:
        pairs = mailbox.move(uids, cmd.mailbox) if move else mailbox.copy(uids, cmd.mailbox)
    except NoSuchMailbox:
        raise CommandNo(f"Mailbox does not exist: {cmd.mailbox}", "TRYCREATE") from None
    uidvalidity = user.status(cmd.mailbox).uidvalidity
    code = CopyUidCode(uidvalidity, SequenceSet.of(a for a, _ in pairs), SequenceSet.of(b for _, b in pairs))
    if move:
        # RFC 6851: COPYUID goes in an untagged OK before the expunges.
        s.send(UntaggedStatus("OK", "Moved UIDs", code))
        return Done("MOVE completed")
    return Done("COPY completed", code)


# -- EXPUNGE / CLOSE / UNSELECT -----------------------------------------------------------------------------
def _deleted_uids(view: SelectedView, restrict: set[int] | None) -> list[int]:
    mailbox = view.mailbox
    out = []
    for u in view.uids[: view.exists]:
        if restrict is not None and u not in restrict:
            continue
        flags = mailbox.flags(u)
        if flags is not None and "\\Deleted" in flags:
            out.append(u)
    return out


async def expunge(s: Session, cmd: c.Expunge) -> Done:
    view = _view(s)
    if view.readonly:
        raise CommandNo("Mailbox is read-only", "READ-ONLY")
    restrict = None
    if cmd.uid:
        if cmd.sequence is None:
            raise CommandBad("UID EXPUNGE needs a UID set")
        restrict = {u for _, u in resolve(s, view, cmd.sequence, uid=True)}
    uids = _deleted_uids(view, restrict)
    if uids:
        view.mailbox.expunge(uids)
    return Done("EXPUNGE completed")


async def close(s: Session, cmd: c.Close) -> Done:
    view = _view(s)
    if not view.readonly:
        uids = _deleted_uids(view, None)
        if uids:
            view.mailbox.expunge(uids)
    s.close_selected()
    return Done("CLOSE completed")


async def unselect(s: Session, cmd: c.Unselect) -> Done:
    s.close_selected()
    return Done("UNSELECT completed")


# -- IDLE ---------------------------------------------------------------------------------------------------
async def idle(s: Session, cmd: c.Idle) -> None:
    s.send(ContinuationResponse("idling"))
    s.conn.expect_idle_done()
    s.start_idle(cmd.tag)

