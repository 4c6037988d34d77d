"""X-STATE SAVE and X-STATE RESTORE (docs/x-state.md): hand the client its session as a signed string,
and put a later connection back into exactly that state, telling it only what changed meanwhile.

RESTORE is all-or-nothing up to the point where the session is known to be valid: the token is checked
(signature, age, user, credential generation) before anything about the session changes, so a rejected
token leaves the session as it was. Then the session is authenticated (if it was not), extensions are
enabled, and the mailbox is reopened; only a mailbox that cannot be put back exactly makes the answer
``OK [X-STATE-STALE]`` with the session AUTHENTICATED.

The catch-up costs what changed, not the mailbox size: expunges come from the store's expunge history
(or, for exact UID ranges, need none), flag changes from the per-message MODSEQ, new mail from the end of
the UID array. Output waits for the socket to drain, so an old token against a busy mailbox cannot make
the server buffer its whole answer.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import zlib
from array import array

from imapd.protocol import commands as c
from imapd.protocol.response_codes import CapabilityCode, Code, NumberCode, PermanentFlagsCode
from imapd.protocol.responses import (
    CapabilityResponse,
    ExistsResponse,
    ExpungeResponse,
    FetchResponse,
    FlagsResponse,
    UntaggedStatus,
    VanishedResponse,
    XStateResponse,
)
from imapd.protocol.sequence import SequenceSet
from imapd.protocol.values import Atom
from imapd.session.cmd_auth import ENABLEABLE, enter_authenticated
from imapd.session.cmd_mailbox import attach_view, mailbox_flags
from imapd.session.errors import CommandBad, CommandNo
from imapd.session.session import Done, Session, State
from imapd.session.view import SelectedView
from imapd.store.errors import NoSuchMailbox
from imapd.store.mailbox import Mailbox
from statecodec import (
    MailboxView,
    SessionState,
    TokenError,
    TokenExpired,
    UidFingerprint,
    UidRanges,
    UidSet,
    compact_uids,
)
from statecodec import decode as decode_token
from statecodec import encode as encode_token

log = logging.getLogger(__name__)

__all__ = ["restore", "save"]

_DRAIN_EVERY = 128


class StaleMailbox(Exception):
    """The saved mailbox cannot be put back exactly; the reason goes into the STALE text."""


def mailbox_id_bytes(mailbox: Mailbox) -> bytes:
    guid = mailbox.mailboxid
    try:
        return bytes.fromhex(guid)
    except ValueError:
        return guid.encode()


def keywords_digest(mailbox: Mailbox) -> int:
    return zlib.crc32("\0".join(mailbox.keywords()).encode()) or 1


# -- SAVE ---------------------------------------------------------------------------------------------------
async def save(s: Session, cmd: c.XStateSave) -> Done:
    ctx = s.ctx
    user = s.user_name
    assert user is not None
    record = ctx.users.get(user)  # a stat() while the passwd file is unchanged
    if record is None:
        raise CommandNo("User no longer exists", "EXPIRED")
    view_state: MailboxView | None = None
    view = s.selected
    if view is not None:
        # The token describes what the client has seen: tell it everything first, then describe that.
        s.flush_updates()
        mailbox = view.mailbox
        known = view.uids[: view.exists]
        saved = s.search_result
        view_state = MailboxView(
            name=mailbox.name,
            mailbox_id=mailbox_id_bytes(mailbox),
            uidvalidity=mailbox.uidvalidity,
            read_only=view.readonly,
            uidnext=mailbox.uidnext,
            message_count=view.exists,
            highest_modseq=mailbox.highestmodseq,
            known_uids=compact_uids(known, uidnext=mailbox.uidnext, check=False),
            search_result=UidRanges.from_set(UidSet.from_uids(saved)) if saved is not None else None,
            keywords_digest=keywords_digest(mailbox),
        )
    state = SessionState.create(user, record.generation, enabled=sorted(s.enabled), mailbox=view_state)
    s.send(XStateResponse(encode_token(state, ctx.xstate_keys)))
    return Done("X-STATE saved")


# -- RESTORE ------------------------------------------------------------------------------------------------
async def restore(s: Session, cmd: c.XStateRestore) -> Done | None:
    ctx = s.ctx
    settings = ctx.settings.xstate
    authenticating = s.state is State.NOT_AUTHENTICATED
    if authenticating:
        if not settings.authenticates:
            raise CommandBad("X-STATE RESTORE needs LOGIN first on this server")
        if not s.plaintext_auth_allowed:
            raise CommandNo("Authentication is disabled on an unencrypted connection; use STARTTLS",
                            "PRIVACYREQUIRED")
    try:
        state = decode_token(cmd.token, ctx.xstate_keys, max_age=settings.max_age,
                             clock_skew=settings.clock_skew)
    except TokenExpired:
        await _failed(s, authenticating)
        raise CommandNo("State token has expired; log in again", "X-STATE-EXPIRED") from None
    except TokenError:
        await _failed(s, authenticating)
        raise CommandNo("Not a state token of this server", "X-STATE-INVALID") from None
    if not authenticating and state.user != s.user_name:
        raise CommandNo("State token belongs to another user", "X-STATE-INVALID")
    record = ctx.users.get(state.user)
    if record is None or record.generation != state.credential_generation:
        await _failed(s, authenticating)
        raise CommandNo("State token was revoked (password changed or user removed)", "X-STATE-EXPIRED")

    # From here on the token is good: change the session.
    if authenticating:
        ctx.throttle.record_success(s.conn.peer_host)
        enter_authenticated(s, state.user)
    if s.selected is not None:
        s.close_selected()
        s.send(UntaggedStatus("OK", "Previous mailbox closed", Code("CLOSED")))
    for name in state.enabled:
        if name in ENABLEABLE:
            s.enabled = s.enabled | {name}
    if "UTF8=ACCEPT" in s.enabled and not s.utf8:
        s.utf8 = True
        s.conn.set_utf8(True)
    caps = tuple(s.capability_list())
    saved_view = state.mailbox
    if saved_view is None:
        return Done("X-STATE restored", CapabilityCode(caps) if authenticating else None)
    try:
        view = _reopen(s, saved_view)
    except StaleMailbox as exc:
        if authenticating:
            s.send(CapabilityResponse(caps))
        return Done(f"X-STATE restored without the mailbox: {exc}; select it again", Code("X-STATE-STALE"))
    if authenticating:
        s.send(CapabilityResponse(caps))
    await _catch_up(s, view, saved_view)
    return Done("X-STATE restored", Code("READ-ONLY" if view.readonly else "READ-WRITE"))


async def _failed(s: Session, authenticating: bool) -> None:
    """Invalid and expired tokens count like failed logins, before authentication."""
    if authenticating:
        delay = s.ctx.throttle.record_failure(s.conn.peer_host)
        log.info("X-STATE RESTORE refused from %s", s.conn.peer_host)
        await asyncio.sleep(delay)


def _reopen(s: Session, saved: MailboxView) -> SelectedView:
    """Open the saved mailbox and give the session a view with the client's old sequence map."""
    user = s.user
    assert user is not None
    try:
        mailbox = s.ctx.open_mailbox(s, saved.name)
    except NoSuchMailbox:
        raise StaleMailbox("the mailbox no longer exists") from None
    try:
        mailbox.sync()
        if mailbox_id_bytes(mailbox) != saved.mailbox_id:
            raise StaleMailbox("the mailbox was deleted or renamed")
        if mailbox.uidvalidity != saved.uidvalidity:
            raise StaleMailbox("UIDVALIDITY changed")
        known, vanished = _client_map(mailbox, saved)
    except BaseException:
        s.ctx.release_mailbox(mailbox)
        raise
    view = attach_view(s, mailbox, readonly=saved.read_only)
    if known is not None:
        view.uids = known
        view.exists = len(known)
    else:
        view.exists = saved.message_count
    view.recent_from = mailbox.uidnext
    view.pending_expunged = set(vanished) if vanished else None
    if saved.search_result is not None:
        s.search_result = list(saved.search_result.to_set())
    return view


def _client_map(mailbox: Mailbox, saved: MailboxView) -> tuple[array[int] | None, list[int]]:
    """(the client's UID map when it differs from the mailbox's prefix, the UIDs expunged since).

    None as the map means the mailbox's own UID array starts with exactly the client's UIDs, so the view
    can share it: the common case, and O(changes).
    """
    current = mailbox.uid_array
    below = bisect.bisect_left(current, saved.uidnext)  # messages the client could know about
    expunged, complete = mailbox.expunged_since(saved.highest_modseq)
    known_form = saved.known_uids
    if isinstance(known_form, UidRanges):
        known_set = known_form.to_set()
        vanished = [u for u in expunged if u in known_set] if complete else None
        if vanished is None or len(known_set) - len(vanished) != below:
            # History no longer reaches back (or disagrees): the exact ranges still tell what is gone.
            present = set(current[:below])
            vanished = [u for u in known_set if u not in present]
            if len(known_set) - len(vanished) != below:
                raise StaleMailbox("the mailbox holds messages the saved state never knew")
        if not vanished:
            return None, []
        return known_set.to_array(), vanished
    assert isinstance(known_form, UidFingerprint)
    if not complete:
        raise StaleMailbox("the change history no longer reaches back to the saved state")
    vanished = [u for u in expunged if u < saved.uidnext]
    if not vanished:
        candidate = current[:below]
    else:
        candidate = array("I", sorted(set(current[:below]) | set(vanished)))
    if not known_form.matches(candidate):
        raise StaleMailbox("the saved message list does not match the mailbox history")
    if not vanished:
        return None, []
    return candidate, vanished


async def _catch_up(s: Session, view: SelectedView, saved: MailboxView) -> None:
    """Expunges (or VANISHED), EXISTS, FLAGS if keywords changed, flag changes, HIGHESTMODSEQ."""
    mailbox = view.mailbox
    qresync = "QRESYNC" in s.enabled
    condstore = s.condstore
    gone = sorted(view.pending_expunged or ())
    view.pending_expunged = None
    if gone:
        if qresync:
            s.send(VanishedResponse(SequenceSet.of(gone)))
        else:
            for n, uid in enumerate(reversed(gone), 1):
                seq = view.seq_of(uid)
                if seq is not None:
                    s.send(ExpungeResponse(seq))
                if n % _DRAIN_EVERY == 0:
                    await s.conn.drain()
    current = mailbox.uid_array
    if view.uids is not current:
        view.uids = current
    view.exists = len(current) if gone or view.exists != len(current) else view.exists
    if view.exists != saved.message_count or gone:
        s.send(ExistsResponse(view.exists))
    if keywords_digest(mailbox) != saved.keywords_digest:
        flags = mailbox_flags(mailbox)
        s.send(FlagsResponse(flags))
        s.send(UntaggedStatus("OK", "Flags permitted",
                              PermanentFlagsCode(() if view.readonly else (*flags, "\\*"))))
    for n, (uid, flags, modseq) in enumerate(mailbox.changed_since(saved.highest_modseq), 1):
        seq = view.seq_of(uid)
        if seq is None:
            continue
        items: list[tuple[str, object]] = []
        if condstore or qresync:
            items.append(("UID", uid))
        items.append(("FLAGS", [Atom(f) for f in flags]))
        if condstore:
            items.append(("MODSEQ", [modseq]))
        s.send(FetchResponse(seq, items))  # type: ignore[arg-type]
        if n % _DRAIN_EVERY == 0:
            await s.conn.drain()
    view.reported_modseq = mailbox.highestmodseq
    s.send(UntaggedStatus("OK", "Highest", NumberCode("HIGHESTMODSEQ", mailbox.highestmodseq)))
