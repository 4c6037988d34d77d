"""A live session moved to another process (a reload): what it is, taken between two commands, and how
the new process puts it back exactly, pending updates included.

The snapshot describes the session as its client sees it: user and credential generation, enabled
extensions, the selected mailbox with the client's sequence map, what the client has not been told yet
(expunges, flag changes), SEARCHRES, ``\\Recent`` and IDLE. The sequence map is not copied: it is the
mailbox's UIDs up to the highest one the client knows, plus the expunges it has not been told of. So a
snapshot is small whatever the mailbox size. Expunges and flag changes made by other sessions between the
snapshot and the resume are found from the store's MODSEQ history, as an X-STATE RESTORE finds them, and
stay pending: an EXPUNGE goes out only where RFC 3501 7.4.1 allows it.
"""

from __future__ import annotations

import bisect
import logging
from array import array

import msgspec

from imapd.protocol.responses import UntaggedStatus
from imapd.session import contexts
from imapd.session.cmd_auth import enter_authenticated
from imapd.session.cmd_mailbox import attach_view
from imapd.session.notify import restore_notify
from imapd.session.recent import RecentUids
from imapd.session.session import Session, State
from imapd.session.view import SelectedView
from imapd.store.errors import StoreError

log = logging.getLogger(__name__)

__all__ = ["SelectedSnapshot", "SessionSnapshot", "decode_snapshot", "detach", "encode_snapshot", "resume",
           "snapshot"]


class SelectedSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    mailbox_guid: str
    uidvalidity: int
    readonly: bool
    exists: int
    """Messages the client knows."""
    max_uid: int
    """The highest UID the client knows (0 if none)."""
    modseq: int
    """The mailbox's HIGHESTMODSEQ when the snapshot was taken."""
    pending_expunged: list[int]
    pending_flags: list[int]
    recent: list[tuple[int, int]]
    """This session's \\Recent UIDs (inclusive ranges)."""
    flags_sent: list[str]
    """The FLAGS the client was last told (keywords it knows)."""
    contexts: list[ContextSnapshot] = []
    """RFC 5267 RETURN (UPDATE) results, exactly as the client holds them."""
    context_dirty: list[int] = []
    """Messages changed since the contexts were last brought up to date."""


class ContextSnapshot(msgspec.Struct, frozen=True):
    """A live CONTEXT=SEARCH/SORT result (``contexts.py``): its command as text, its result in order."""

    command: str
    result: list[int]


class SessionSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    version: int = 1
    user: str
    generation: int
    enabled: list[str]
    utf8: bool
    selected: SelectedSnapshot | None = None
    search_result: list[int] | None = None
    idle_tag: str | None = None
    bad_count: int = 0
    session_id: str = ""
    """Kept, so the log lines of one session stay one session across the move."""
    client_origin: tuple[str, int | None] | None = None
    """The real client a trusted proxy named (``ID x-originating-ip``), for limits and logs."""
    xstate_lineage: bytes = b""
    """The login's X-STATE lineage (cmd_xstate), so a reload does not split it from its tokens."""
    notify: str = ""
    """RFC 5465 ``NOTIFY SET ...`` of the session (notify.py), "" for none."""


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(SessionSnapshot)


def encode_snapshot(snap: SessionSnapshot) -> bytes:
    return _ENCODER.encode(snap)


def decode_snapshot(data: bytes) -> SessionSnapshot:
    return _DECODER.decode(data)


def snapshot(s: Session) -> SessionSnapshot:
    """The session as it stands (call on the user's lane, with no command of this session running)."""
    user = s.user_name
    assert user is not None
    record = s.ctx.users.get(user)
    selected: SelectedSnapshot | None = None
    view = s.selected
    if view is not None:
        mailbox = view.mailbox
        selected = SelectedSnapshot(
            name=mailbox.name, mailbox_guid=mailbox.mailboxid, uidvalidity=mailbox.uidvalidity,
            readonly=view.readonly, exists=view.exists, max_uid=view.max_uid, modseq=mailbox.highestmodseq,
            pending_expunged=sorted(view.pending_expunged or ()), pending_flags=sorted(view.pending_flags or ()),
            recent=view.recent.ranges(), flags_sent=list(view.flags_sent),
            contexts=[ContextSnapshot(contexts.saved_command(x), list(x.result))
                      for x in (view.contexts.entries.values() if view.contexts else ())],
            context_dirty=sorted(view.contexts.dirty) if view.contexts else [])
    return SessionSnapshot(
        user=user, generation=record.generation if record is not None else -1, enabled=sorted(s.enabled),
        utf8=s.utf8, selected=selected, search_result=s.search_result, idle_tag=s.idle_tag,
        bad_count=s.bad_count, xstate_lineage=s.xstate_lineage, session_id=s.session_id,
        client_origin=s.client_origin, notify=s.notify.text if s.notify is not None else "")


def detach(s: Session) -> SessionSnapshot:
    """Take the snapshot and stop this process from telling the client anything more: from now on its
    new owner computes and sends what happened (no EXPUNGE told twice)."""
    snap = snapshot(s)
    s.stop_notify()
    view = s.selected
    if view is not None:
        view.close()
    return snap


async def resume(s: Session, snap: SessionSnapshot) -> None:
    """Put ``snap`` back into the fresh session ``s`` (on the user's lane of the new process).

    A session that cannot be put back exactly (the user's password changed, its mailbox went away) is
    ended with ``* BYE``, as the old process would have ended it at its next command.
    """
    record = s.ctx.users.get(snap.user)
    if record is None or record.generation != snap.generation:
        _bye(s, "Your credentials changed; log in again")
        return
    try:
        enter_authenticated(s, snap.user)
    except Exception as exc:
        log.warning("could not resume a session of %s: %s", snap.user, exc)
        _bye(s, "Cannot resume the session; log in again")
        return
    s.enabled = frozenset(snap.enabled)
    if snap.utf8:
        s.utf8 = True
        s.conn.set_utf8(True)
    s.bad_count = snap.bad_count
    s.xstate_lineage = snap.xstate_lineage
    if snap.session_id:
        s.session_id = snap.session_id
    s.client_origin = snap.client_origin
    if snap.selected is not None and not _reselect(s, snap.selected):
        _bye(s, f"Mailbox {snap.selected.name} changed beyond repair; select it again")
        return
    s.search_result = snap.search_result
    restore_notify(s, snap.notify)  # the watched mailboxes' STATUS is sent again (notify.py)
    if snap.idle_tag is not None:
        s.conn.expect_idle_done()
        s.start_idle(snap.idle_tag)


def _reselect(s: Session, sel: SelectedSnapshot) -> bool:
    try:
        mailbox = s.ctx.open_mailbox(s, sel.name)
    except StoreError:
        return False
    try:
        mailbox.sync()
        if mailbox.uidvalidity != sel.uidvalidity or mailbox.mailboxid != sel.mailbox_guid:
            raise LookupError("mailbox replaced")
        gone, complete = mailbox.expunged_since(sel.modseq)
        if not complete:
            raise LookupError("expunge history too short")
    except (StoreError, LookupError):
        s.ctx.release_mailbox(mailbox)
        return False
    current = mailbox.uid_array
    still = bisect.bisect_right(current, sel.max_uid)
    expunged = sorted({*sel.pending_expunged, *(u for u in gone if u <= sel.max_uid)})
    if still + len(expunged) != sel.exists:
        log.error("resuming %s/%s: %d + %d expunged != %d known", s.user_name, sel.name, still, len(expunged),
                  sel.exists)
        s.ctx.release_mailbox(mailbox)
        return False
    view = attach_view(s, mailbox, readonly=sel.readonly)
    view.recent = RecentUids(sel.recent)  # the same session: what it holds, not a new claim
    view.flags_sent = tuple(sel.flags_sent)
    if expunged:
        known = sorted([*current[:still], *expunged])
        view.uids = array("I", known)
        view.pending_expunged = set(expunged)
    view.exists = sel.exists
    changed = [u for u, _, _ in mailbox.changed_since(sel.modseq) if u <= sel.max_uid]
    flags = set(sel.pending_flags).union(changed).difference(expunged)
    view.pending_flags = flags or None
    _resume_contexts(view, sel, flags)
    return True


def _resume_contexts(view: SelectedView, sel: SelectedSnapshot, changed: set[int]) -> None:
    """The live contexts as they were; what changed meanwhile is re-tested at the next update."""
    for snap in sel.contexts:
        cmd = contexts.parse_saved(snap.command)
        if cmd is not None:
            contexts.register(view, cmd, snap.result, limit=len(sel.contexts))
    if view.contexts:
        view.contexts.dirty.update(sel.context_dirty, changed)


def _bye(s: Session, text: str) -> None:
    s.send(UntaggedStatus("BYE", text))
    s.state = State.LOGOUT
    s.conn.close()
