"""Which handler serves each command, in which states it is valid (RFC 3501 section 6), and the one place
where a command is executed against a session: state check, handler, errors turned into ``NO``/``BAD``,
pending updates, the tagged reply. Like h11's state table, every transition is in this one file; the
session itself imports no handler.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from imapd.protocol import commands as c
from imapd.protocol.events import SaslResponse
from imapd.protocol.response_codes import Code
from imapd.session import (
    cmd_auth,
    cmd_mailbox,
    cmd_metadata,
    cmd_quota,
    cmd_replace,
    cmd_selected,
    cmd_xstate,
    notify,
)
from imapd.session.errors import CommandError
from imapd.session.session import NO_EXPUNGE, Done, Session, State
from imapd.session.uidonly import UIDREQUIRED, sequence_number_use
from imapd.store.errors import StoreError

__all__ = ["DISPATCH", "MEMORY_ONLY", "continue_sasl", "execute", "in_memory"]

Handler = Callable[[Session, Any], Awaitable[Done | None]]
"""A handler takes the session and its own command type (checked where the table is built)."""

_ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
_NOT_AUTHED = frozenset({State.NOT_AUTHENTICATED})
_AUTHED = frozenset({State.AUTHENTICATED, State.SELECTED})
_SELECTED = frozenset({State.SELECTED})

DISPATCH: dict[type[c.Command], tuple[frozenset[State], Handler]] = {
    c.Capability: (_ANY, cmd_auth.capability),
    c.Noop: (_ANY, cmd_auth.noop),
    c.Logout: (_ANY, cmd_auth.logout),
    c.Id: (_ANY, cmd_auth.id_),
    c.Enable: (frozenset({State.AUTHENTICATED}), cmd_auth.enable),  # RFC 5161: authenticated state only
    c.StartTLS: (_NOT_AUTHED, cmd_auth.starttls),
    c.Compress: (_AUTHED, cmd_auth.compress),  # RFC 4978 section 3: authenticated or selected state
    c.Login: (_NOT_AUTHED, cmd_auth.login),
    c.Authenticate: (_NOT_AUTHED, cmd_auth.authenticate),
    c.Unauthenticate: (_AUTHED, cmd_auth.unauthenticate),
    c.Select: (_AUTHED, cmd_mailbox.select),
    c.Examine: (_AUTHED, cmd_mailbox.select),
    c.Create: (_AUTHED, cmd_mailbox.create),
    c.Delete: (_AUTHED, cmd_mailbox.delete),
    c.Rename: (_AUTHED, cmd_mailbox.rename),
    c.Subscribe: (_AUTHED, cmd_mailbox.subscribe),
    c.Unsubscribe: (_AUTHED, cmd_mailbox.unsubscribe),
    c.List: (_AUTHED, cmd_mailbox.list_),
    c.Lsub: (_AUTHED, cmd_mailbox.lsub),
    c.Namespace: (_AUTHED, cmd_mailbox.namespace),
    c.Status: (_AUTHED, cmd_mailbox.status),
    c.Append: (_AUTHED, cmd_mailbox.append),
    c.Replace: (_SELECTED, cmd_replace.replace),
    c.Idle: (_AUTHED, cmd_selected.idle),
    c.Check: (_SELECTED, cmd_auth.noop),
    c.Close: (_SELECTED, cmd_selected.close),
    c.Unselect: (_SELECTED, cmd_selected.unselect),
    c.Expunge: (_SELECTED, cmd_selected.expunge),
    c.Search: (_SELECTED, cmd_selected.search),
    c.Fetch: (_SELECTED, cmd_selected.fetch),
    c.Store: (_SELECTED, cmd_selected.store),
    c.Copy: (_SELECTED, cmd_selected.copy),
    c.Move: (_SELECTED, cmd_selected.copy),
    c.Sort: (_SELECTED, cmd_selected.sort),
    c.Thread: (_SELECTED, cmd_selected.thread),
    c.CancelUpdate: (_SELECTED, cmd_selected.cancel_update),
    c.XStateSave: (_AUTHED, cmd_xstate.save),
    c.XStateRestore: (_ANY, cmd_xstate.restore),
    c.XStateRevoke: (_ANY, cmd_xstate.revoke),
    c.GetQuota: (_AUTHED, cmd_quota.getquota),
    c.GetQuotaRoot: (_AUTHED, cmd_quota.getquotaroot),
    c.SetQuota: (_AUTHED, cmd_quota.setquota),
    c.GetMetadata: (_AUTHED, cmd_metadata.getmetadata),
    c.SetMetadata: (_AUTHED, cmd_metadata.setmetadata),
    c.Notify: (_AUTHED, notify.notify),
}

MEMORY_ONLY: frozenset[type[c.Command]] = frozenset({c.Capability, c.Id, c.Namespace, c.Enable, c.Logout})
"""Commands whose handlers touch no disk and never wait before they are done with the session's state:
the connection runs them where the bytes arrive, without the round trip to the user's lane (two thread
wake-ups, ~70 us of CPU on our 2-core machine), whenever none of the user's work is in flight. LOGOUT's
release of the mailbox is memory only (the warm cache keeps it; evictions are queued to the lane)."""

_MEMORY_CHECKS: dict[type[c.Command], Callable[[Session, Any], bool]] = {c.Fetch: cmd_selected.fetch_in_memory}


def in_memory(s: Session, command: c.Command) -> bool:
    """Whether ``command`` touches only memory in this session's present state (see MEMORY_ONLY). At worst,
    when the value cache drops an entry between this check and the command, one indexed SQLite read runs
    where the bytes arrived."""
    if s.notify is not None and s.notify.new_plan is not None:
        return False  # the end of any command may FETCH new mail for NOTIFY's MessageNew (disk)
    if type(command) in MEMORY_ONLY:
        return True
    check = _MEMORY_CHECKS.get(type(command))
    return check is not None and s.state is State.SELECTED and check(s, command)


# The reconnect path of a webmail request, timed for the metrics.
_TIMED_NAMES: dict[type[c.Command], str] = {
    c.Login: "LOGIN", c.Authenticate: "AUTHENTICATE", c.Select: "SELECT", c.Examine: "EXAMINE",
    c.XStateRestore: "X-STATE RESTORE"}
_NEEDS_SELECTED = (*NO_EXPUNGE, c.Check, c.Close, c.Unselect, c.Expunge, c.Copy, c.Move, c.Replace,
                   c.CancelUpdate)


async def execute(s: Session, command: c.Command) -> None:
    """Execute ``command`` in session ``s`` and answer it."""
    entry = DISPATCH.get(type(command))
    tag = command.tag
    if entry is None or (isinstance(command, (c.XStateSave, c.XStateRestore, c.XStateRevoke))
                         and not s.ctx.settings.xstate.enabled):
        s.tagged(tag, "BAD", "Command not implemented")
        return
    states, handler = entry
    if s.state not in states:
        _bad_state(s, tag, command)
        return
    if "UIDONLY" in s.enabled and (why := sequence_number_use(command)) is not None:
        s.tagged(tag, "BAD", why, Code(UIDREQUIRED))  # RFC 9586 3
        s.count_bad()
        return
    timed = _TIMED_NAMES.get(type(command))
    if timed is None:
        await _run(s, tag, command, handler)
        return
    start = time.perf_counter()
    try:
        await _run(s, tag, command, handler)
    finally:
        s.ctx.metrics.observe("imapd_command_seconds", timed, time.perf_counter() - start)


async def _run(s: Session, tag: str, command: c.Command, handler: Handler) -> None:
    s.in_command = True  # NOTIFY pushes wait; the end of the command sends what is pending
    try:
        cluster = s.ctx.cluster
        if cluster is not None and s.user_name is not None and not isinstance(command, c.Logout):
            cluster.check_writable(s.user_name)  # memory only while the lease is fresh
        done = await handler(s, command)
    except CommandError as exc:
        s.flush_updates_for(command)
        s.tagged(tag, exc.status, exc.text, Code(exc.code, exc.code_args) if exc.code else None)
        if exc.status == "BAD":
            s.count_bad()
        return
    except StoreError as exc:
        s.flush_updates_for(command)
        s.tagged(tag, "NO", str(exc), Code(exc.code) if exc.code else None)
        return
    finally:
        s.in_command = False
    if done is None:  # the handler answered (IDLE, LOGOUT, AUTHENTICATE in progress)
        return
    s.flush_updates_for(command)
    s.bad_count = 0
    s.tagged(tag, "OK", done.text, done.code)


def _bad_state(s: Session, tag: str, command: c.Command) -> None:
    name = type(command).__name__.upper()
    if s.state is State.NOT_AUTHENTICATED:
        text = f"{name} needs authentication first"
    elif s.state is State.AUTHENTICATED and isinstance(command, _NEEDS_SELECTED):
        text = f"{name} needs a selected mailbox"
    else:
        text = f"{name} is not allowed in this state"
    s.tagged(tag, "BAD", text)
    s.count_bad()


async def continue_sasl(s: Session, event: SaslResponse) -> None:
    """The client's answer to an AUTHENTICATE challenge."""
    await cmd_auth.continue_authenticate(s, event)
