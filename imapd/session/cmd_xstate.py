"""X-STATE SAVE, RESTORE and REVOKE (docs/x-state.md): hand the client its session as a signed string, put a
later connection back into exactly that state telling it only what changed, and end a login's tokens.

RESTORE computes, then commits, then sends:

1. **verify** the token (signature, age, user, credential generation, address binding, revocation) and
   **compute**: open and sync the saved mailbox and work out the whole catch-up
   (:func:`imapd.session.resync.plan_restore`). Everything that can fail happens here, so a ``NO``
   leaves the session exactly as it was, still unauthenticated if it was.
2. **commit**, without an ``await``: log in, close the old mailbox, enable the extensions, select the
   mailbox in its *current* state (the state the catch-up ends in).
3. **send** the catch-up with back-pressure. A change by another session meanwhile is recorded by the
   view like any other and reported after it, before the tagged OK.

Tokens of one login share a random *lineage* id, kept by every later SAVE of a session restored from
them; ``X-STATE REVOKE`` puts the lineage in the user's index, where every process and node sees it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imapd.protocol import commands as c
from imapd.protocol.response_codes import CapabilityCode, Code
from imapd.protocol.responses import CapabilityResponse, Response, UntaggedStatus, XStateResponse
from imapd.session import contexts
from imapd.session.auth import audit, client_address
from imapd.session.cmd_auth import ENABLEABLE, claim_user, enter_authenticated, utf8_names
from imapd.session.cmd_mailbox import mailbox_flags, select_view
from imapd.session.errors import CommandBad, CommandNo
from imapd.session.notify import restore_notify
from imapd.session.resync import (
    CatchUp,
    NotRestorable,
    leave_pending,
    plan_restore,
    plan_restore_by_uid,
    send_catch_up,
)
from imapd.session.session import Done, Session, State
from imapd.session.view import SelectedView
from imapd.store.errors import NoSuchMailbox
from imapd.store.mailbox import Mailbox
from imapd.store.revocations import is_revoked
from imapd.store.revocations import revoke as revoke_lineage
from imapd.store.userstore import UserStore
from statecodec import (
    MailboxView,
    SessionState,
    TokenError,
    TokenExpired,
    UidRanges,
    UidSet,
    bounded_search_result,
    compact_uids,
    new_lineage,
)
from statecodec import decode as decode_token
from statecodec import encode as encode_token

if TYPE_CHECKING:
    from imapd.session.context import ServerContext

log = logging.getLogger(__name__)

__all__ = ["address_bytes", "check_token", "restore", "revoke", "save"]

_INVALID = "X-STATE-INVALID"
_EXPIRED = "X-STATE-EXPIRED"
NOSEARCHRES = "X-STATE-NOSEARCHRES"
PENDING = "X-STATE-PENDING"
"""Tagged OK code of a SAVE whose SEARCHRES ``$`` was too large to keep (docs/x-state.md)."""
_MAX_RECENT_BYTES = 64
_NO_MAP = UidRanges(b"")
"""``known_uids`` of a UIDONLY session's token: not recorded (the restore goes by HIGHESTMODSEQ)."""
"""\\Recent is advisory: a session whose \\Recent UIDs are too scattered to fit saves none."""


def mailbox_id_bytes(mailbox: Mailbox) -> bytes:
    guid = mailbox.mailboxid
    try:
        return bytes.fromhex(guid)
    except ValueError:
        return guid.encode()


def keywords_digest(mailbox: Mailbox) -> int:
    return zlib.crc32("\0".join(mailbox.keywords()).encode()) or 1


def bound_address(s: Session) -> bytes:
    """The client address as a token binds it: 4 or 16 bytes for an IP, else the host text."""
    return address_bytes(client_address(s))


def address_bytes(host: str) -> bytes:
    try:
        return ipaddress.ip_address(host).packed
    except ValueError:
        return host.encode()[:64]


def _revoked_until(s: Session, now: float) -> float:
    """When every token issued up to ``now`` has expired on its own."""
    settings = s.ctx.settings.xstate
    return now + settings.max_age + settings.clock_skew


# -- SAVE ---------------------------------------------------------------------------------------------------
async def save(s: Session, cmd: c.XStateSave) -> Done | None:
    if cmd.quiet and s.selected is not None and s.selected.has_pending:
        # QUIET (a proxy detaching a session between commands, 2.5): nothing may be sent now, not even
        # the pending updates a NO would flush, so answer here and leave them pending.
        s.tagged(cmd.tag, "NO", "Updates are pending for the selected mailbox", Code(PENDING))
        return None
    ctx = s.ctx
    user = s.user_name
    assert user is not None and s.user is not None
    record = ctx.users.get(user)  # a stat() while the passwd file is unchanged
    if record is None:
        raise CommandNo("User no longer exists", "EXPIRED")
    lineage = s.xstate_lineage or new_lineage()
    if is_revoked(s.user, lineage, now=time.time()):  # (a logged-in session's node owns the index it reads)
        raise CommandNo("This session's state tokens were revoked; log in again", _EXPIRED)
    view_state, dropped = _saved_view(s)
    bound = bound_address(s) if ctx.settings.xstate.bind_address else b""
    state = SessionState.create(user, record.generation, enabled=sorted(s.enabled), mailbox=view_state,
                                lineage=lineage, bound_address=bound,
                                notify=s.notify.text if s.notify is not None else "")
    try:
        token = encode_token(state, ctx.xstate_keys)
    except ValueError:  # e.g. names so long the token would exceed what RESTORE accepts
        raise CommandNo("This session does not fit in a state token", "LIMIT") from None
    s.xstate_lineage = lineage
    s.send(XStateResponse(token))
    if dropped:
        return Done("X-STATE saved without the search result $, too large to keep", Code(NOSEARCHRES))
    return Done("X-STATE saved")


def _saved_view(s: Session) -> tuple[MailboxView | None, bool]:
    """The selected mailbox as the client has seen it, and whether ``$`` had to be left out."""
    view = s.selected
    if view is None:
        return None, False
    # The token describes what the client has seen: tell it everything first, then describe that.
    s.flush_updates()
    mailbox = view.mailbox
    saved = s.search_result
    search = bounded_search_result(UidSet.from_uids(saved)) if saved is not None else None
    return MailboxView(
        name=mailbox.name,
        mailbox_id=mailbox_id_bytes(mailbox),
        uidvalidity=mailbox.uidvalidity,
        read_only=view.readonly,
        uidnext=mailbox.uidnext,
        message_count=view.exists,
        highest_modseq=mailbox.highestmodseq,
        # RFC 9586: a UIDONLY client has no sequence numbers to keep in step, so no map (see _plan).
        known_uids=(_NO_MAP if "UIDONLY" in s.enabled
                    else compact_uids(view.uids[: view.exists], uidnext=mailbox.uidnext, check=False)),
        search_result=search,
        keywords_digest=keywords_digest(mailbox),
        recent=_recent_ranges(view),
        live_searches=contexts.to_saved(view),
    ), saved is not None and search is None


def _recent_ranges(view: SelectedView) -> UidRanges | None:
    data = UidSet.from_ranges(view.recent.ranges()).to_bytes()
    return UidRanges(data) if data and len(data) <= _MAX_RECENT_BYTES else None


# -- RESTORE ------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Prepared:
    """What step 1 found: the view to select (not attached yet) and its catch-up, or why the mailbox
    cannot be put back."""

    view: SelectedView | None = None
    plan: CatchUp | None = None
    stale: str | None = None
    live: list[Response] = field(default_factory=list)
    """What the restored live searches tell the client after the catch-up (ADDTO/REMOVEFROM, NOUPDATE)."""


async def restore(s: Session, cmd: c.XStateRestore) -> Done | None:
    authenticating = s.state is State.NOT_AUTHENTICATED
    if authenticating:
        _check_may_authenticate(s)
    state, user = await _verify(s, cmd.token, authenticating)
    prepared = _prepare(s, state, user)
    try:
        closed = _commit(s, state, prepared, authenticating)
    except BaseException:
        if prepared.view is not None:
            s.ctx.release_mailbox(prepared.view.mailbox)
        raise
    pending = cmd.pending and prepared.plan is not None and state.mailbox is not None \
        and "UIDONLY" not in state.enabled
    if pending:
        # PENDING (2.5): the client's own view back, the catch-up left in it for the next commands, which
        # deliver it under the usual rules (no EXPUNGE during FETCH/STORE/SEARCH); answered here, so that
        # the end of this command does not flush it.
        assert prepared.view is not None and prepared.plan is not None and state.mailbox is not None
        leave_pending(prepared.view, prepared.plan, state.mailbox.uidnext)
        done = await _send(s, prepared, authenticating=authenticating, closed=closed, pending=True)
    else:
        done = await _send(s, prepared, authenticating=authenticating, closed=closed)
    # RFC 5465 NOTIFY as saved (none: off); the STATUS of each watched mailbox follows (notify.py).
    s.stop_notify()
    restore_notify(s, state.notify)
    if pending:
        s.tagged(cmd.tag, "OK", done.text, done.code)
        return None
    return done


def _check_may_authenticate(s: Session) -> None:
    if not s.ctx.settings.xstate.authenticates:
        raise CommandBad("X-STATE RESTORE needs LOGIN first on this server")
    if not s.plaintext_auth_allowed:
        raise CommandNo("Authentication is disabled on an unencrypted connection; use STARTTLS",
                        "PRIVACYREQUIRED")


async def _verify(s: Session, token: str, authenticating: bool) -> tuple[SessionState, UserStore]:
    """The token's state and its user's store, or NO (counted like a failed login before LOGIN)."""
    try:
        state = _checked_state(s, token, authenticating)
        if await _revoked_in_cluster(s.ctx, state):
            raise CommandNo("State token was revoked (X-STATE REVOKE)", _EXPIRED)
        if s.user is None:
            await claim_user(s, state.user, "X-STATE")  # the lease before the index is opened
        user = s.user if s.user is not None else s.ctx.store.user(state.user)
        if is_revoked(user, state.lineage, now=time.time()):
            raise CommandNo("State token was revoked (X-STATE REVOKE)", _EXPIRED)
    except CommandNo as exc:
        if authenticating and exc.code in (_INVALID, _EXPIRED):
            delay = s.ctx.throttle.record_failure(client_address(s))
            log.info("X-STATE refused from %s: %s", client_address(s), exc.text)
            await asyncio.sleep(delay)
        raise
    return state, user


async def _revoked_in_cluster(ctx: ServerContext, state: SessionState) -> bool:
    """A lineage revoked on any node (``{prefix}revoked:``), asked of Redis only when this node does not
    hold the user's lease now: the owner's own index is authoritative (only it writes it, and REVOKE
    runs on the owner), while another node's read of it over NFS may be stale. So the webmail's
    RESTORE per request, on the user's owner, costs no Redis call."""
    cluster = ctx.cluster
    if cluster is None or cluster.owns_fresh(state.user):
        return False
    return await cluster.is_revoked(state.lineage)


def _checked_state(s: Session, token: str, authenticating: bool) -> SessionState:
    state = check_token(s.ctx, token, bound_address(s))
    if not authenticating and state.user != s.user_name:
        raise CommandNo("State token belongs to another user", _INVALID)
    return state


def check_token(ctx: ServerContext, token: str, address: bytes) -> SessionState:
    """The token's state if this server signed it, it has not expired, its user's credentials are the
    ones it was saved under and (``xstate.bind_address``) it comes from the address that saved it.

    Shared with ManageSieve's ``X-STATE`` SASL mechanism, which authenticates with a token and nothing else.
    The lineage's revocation is checked by the caller (it needs the user's store)."""
    settings = ctx.settings.xstate
    try:
        state = decode_token(token, ctx.xstate_keys, max_age=settings.max_age, clock_skew=settings.clock_skew)
    except TokenExpired:
        raise CommandNo("State token has expired; log in again", _EXPIRED) from None
    except TokenError:
        raise CommandNo("Not a state token of this server", _INVALID) from None
    record = ctx.users.get(state.user)
    if record is None or record.generation != state.credential_generation:
        raise CommandNo("State token was revoked (password changed or user removed)", _EXPIRED)
    if settings.bind_address and state.bound_address != address:
        raise CommandNo("State token was saved from another client address", _INVALID)
    return state


def _prepare(s: Session, state: SessionState, user: UserStore) -> _Prepared:
    """Open and sync the saved mailbox and compute its catch-up; store errors propagate (NO)."""
    saved = state.mailbox
    if saved is None:
        return _Prepared()
    try:
        mailbox = user.open(saved.name)
    except NoSuchMailbox:
        return _Prepared(stale="the mailbox no longer exists")
    s.ctx.cache.note_open(mailbox)
    try:
        mailbox.sync()
        plan = _plan(mailbox, saved, uidonly="UIDONLY" in state.enabled)
        rev2 = s.rev2 or "IMAP4REV2" in state.enabled  # no \Recent in IMAP4rev2 (RFC 9051 2.3.2)
        view = SelectedView(mailbox, readonly=saved.read_only, claims=None if rev2 else s.ctx.recent, user=user)
        # The session keeps its own \Recent and claims the mail it is now told of, as a SELECT would.
        view.restore_recent(saved.recent.to_set().ranges() if saved.recent else (), saved.uidnext)
        return _Prepared(view, plan)
    except (NoSuchMailbox, NotRestorable) as exc:
        s.ctx.release_mailbox(mailbox)
        return _Prepared(stale=str(exc) if isinstance(exc, NotRestorable) else "the mailbox no longer exists")
    except BaseException:
        s.ctx.release_mailbox(mailbox)
        raise


def _plan(mailbox: Mailbox, saved: MailboxView, *, uidonly: bool) -> CatchUp:
    if mailbox_id_bytes(mailbox) != saved.mailbox_id:
        raise NotRestorable("the mailbox was deleted or renamed")
    if mailbox.uidvalidity != saved.uidvalidity:
        raise NotRestorable("UIDVALIDITY changed")
    flags = mailbox_flags(mailbox) if keywords_digest(mailbox) != saved.keywords_digest else None
    if uidonly:
        return plan_restore_by_uid(mailbox, saved, flags=flags)
    return plan_restore(mailbox, saved, flags=flags)


def _commit(s: Session, state: SessionState, prepared: _Prepared, authenticating: bool) -> bool:
    """Make the session the restored one (no await, no I/O, nothing fallible after the first step);
    True if a selected mailbox was closed."""
    if authenticating:
        enter_authenticated(s, state.user)  # NO [LIMIT] here leaves the session as it was
        s.ctx.throttle.record_success(client_address(s), state.user)
    audit(s, "login", state.user, "X-STATE")
    closed = s.selected is not None
    if closed:
        s.close_selected()
    s.xstate_lineage = state.lineage or new_lineage()
    for name in state.enabled & ENABLEABLE:
        s.enabled = s.enabled | {name}
    if utf8_names(s.enabled) and not s.utf8:
        s.utf8 = True
        s.conn.set_utf8(True)
    saved = state.mailbox
    if prepared.view is not None and saved is not None:
        select_view(s, prepared.view)
        if saved.search_result is not None:
            s.search_result = list(saved.search_result.to_set())
        prepared.live = contexts.restore_saved(prepared.view, saved.live_searches,
                                               limit=s.ctx.settings.limits.max_contexts)
    return closed


async def _send(s: Session, prepared: _Prepared, *, authenticating: bool, closed: bool,
                pending: bool = False) -> Done:
    if closed:
        s.send(UntaggedStatus("OK", "Previous mailbox closed", Code("CLOSED")))
    caps = tuple(s.capability_list())
    if pending:
        if authenticating:
            s.send(CapabilityResponse(caps))
        for response in prepared.live:
            s.send(response)
        readonly = s.selected is not None and s.selected.readonly
        return Done("X-STATE restored; updates pending", Code("READ-ONLY" if readonly else "READ-WRITE"))
    if prepared.plan is None and prepared.stale is None:
        return Done("X-STATE restored", CapabilityCode(caps) if authenticating else None)
    if authenticating:
        s.send(CapabilityResponse(caps))
    if prepared.plan is None:
        return Done(f"X-STATE restored without the mailbox: {prepared.stale}; select it again",
                    Code("X-STATE-STALE"))
    await send_catch_up(s, prepared.plan)
    for response in prepared.live:
        s.send(response)
    readonly = s.selected is not None and s.selected.readonly
    return Done("X-STATE restored", Code("READ-ONLY" if readonly else "READ-WRITE"))


# -- REVOKE -------------------------------------------------------------------------------------------------
async def revoke(s: Session, cmd: c.XStateRevoke) -> Done:
    """End a lineage: the presented token's, or this session's own (what a webmail's logout calls)."""
    now = time.time()
    if cmd.token is None:
        if s.user is None:
            raise CommandBad("X-STATE REVOKE without a token needs an authenticated session")
        if not s.xstate_lineage:  # nothing saved yet: end a lineage anyway, so no SAVE can follow
            s.xstate_lineage = new_lineage()
        user, lineage = s.user, s.xstate_lineage
    else:
        authenticating = s.state is State.NOT_AUTHENTICATED
        if authenticating and not s.plaintext_auth_allowed:  # a token is a credential: not in the clear
            raise CommandNo("State tokens are refused on an unencrypted connection; use STARTTLS",
                            "PRIVACYREQUIRED")
        state, user = await _verify(s, cmd.token, authenticating)
        lineage = state.lineage
        if not lineage:
            raise CommandNo("This token predates lineages and cannot be revoked alone; it expires on its own",
                            "CANNOT")
    revoke_lineage(user, lineage, until=_revoked_until(s, now), now=now)
    if s.ctx.cluster is not None:
        await s.ctx.cluster.revoke(lineage)
    log.info("X-STATE lineage revoked for %s from %s", user.user, client_address(s))
    return Done("X-STATE revoked")
