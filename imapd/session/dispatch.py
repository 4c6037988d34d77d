"""Which handler serves each command, and in which states it is valid (RFC 3501 section 6)."""

from __future__ import annotations

from typing import Any

from imapd.protocol import commands as c
from imapd.session import cmd_auth, cmd_mailbox, cmd_selected, cmd_xstate
from imapd.session.session import State

_ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
_NOT_AUTHED = frozenset({State.NOT_AUTHENTICATED})
_AUTHED = frozenset({State.AUTHENTICATED, State.SELECTED})
_SELECTED = frozenset({State.SELECTED})

DISPATCH: dict[type, tuple[frozenset[State], Any]] = {
    c.Capability: (_ANY, cmd_auth.capability),
    c.Noop: (_ANY, cmd_auth.noop),
    c.Logout: (_ANY, cmd_auth.logout),
    c.Id: (_ANY, cmd_auth.id_),
    c.Enable: (frozenset({State.AUTHENTICATED}), cmd_auth.enable),  # RFC 5161: authenticated state only
    c.StartTLS: (_NOT_AUTHED, cmd_auth.starttls),
    c.Login: (_NOT_AUTHED, cmd_auth.login),
    c.Authenticate: (_NOT_AUTHED, cmd_auth.authenticate),
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
    c.XStateSave: (_AUTHED, cmd_xstate.save),
    c.XStateRestore: (_ANY, cmd_xstate.restore),
    c.XStateRevoke: (_ANY, cmd_xstate.revoke),
}
