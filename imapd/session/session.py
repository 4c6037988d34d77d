"""The per-connection IMAP session: its state (NOT AUTHENTICATED -> AUTHENTICATED -> SELECTED -> LOGOUT),
what it has enabled and selected, and the rules for when untagged updates of the selected mailbox may be
sent (RFC 3501 section 7.4.1).

It imports no handler: ``session/dispatch.py`` holds the command table (which handler, in which states)
and executes commands against a session, and the ``cmd_*`` modules hold the handlers.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from imapd.protocol import commands as c
from imapd.protocol.events import ProtocolError
from imapd.protocol.response_codes import CapabilityCode, Code, NumberCode, ResponseCode
from imapd.protocol.responses import (
    FetchFlagsBatch,
    FetchResponse,
    FetchResponses,
    Response,
    TaggedResponse,
    UidFetchResponse,
    UntaggedStatus,
)
from imapd.session.capabilities import capabilities
from imapd.session.uidonly import as_uidfetch, uidfetch_batch
from imapd.session.updates import Recent, Update, as_update
from imapd.session.updates import render as render_updates

if TYPE_CHECKING:
    import ssl

    from imapd.session.context import ServerContext
    from imapd.session.notify import NotifyWatch
    from imapd.session.view import SelectedView
    from imapd.store.userstore import UserStore

log = logging.getLogger(__name__)

__all__ = ["Done", "ResponseSink", "Session", "State"]


class State(Enum):
    NOT_AUTHENTICATED = 1
    AUTHENTICATED = 2
    SELECTED = 3
    LOGOUT = 4


class ResponseSink(Protocol):
    """What the session needs from its connection (``imapd.server.connection.IMAPConnection``)."""

    peer_host: str
    is_tls: bool
    balancer_tls: bool  # a trusted balancer's PROXY header said the client reached it over TLS

    @property
    def is_loopback(self) -> bool: ...
    @property
    def closing(self) -> bool: ...
    def send(self, response: Response) -> None: ...
    def expect_idle_done(self) -> None: ...
    def expect_sasl_response(self) -> None: ...
    def set_utf8(self, enabled: bool) -> None: ...
    def raise_input_limits(self) -> None: ...
    def lower_input_limits(self) -> None: ...
    def write_bytes(self, data: bytes) -> None: ...
    @property
    def can_send_files(self) -> bool: ...
    def send_parts(self, response: FetchResponse | UidFetchResponse) -> None: ...
    def flush(self) -> None: ...
    @property
    def output_paused(self) -> bool: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    async def start_tls(self, context: ssl.SSLContext) -> None: ...
    @property
    def compressed(self) -> bool: ...
    def start_compression(self) -> None: ...


class Done:
    """A command's successful end: ``tag OK [code] text``."""

    __slots__ = ("code", "text")

    def __init__(self, text: str, code: ResponseCode | None = None) -> None:
        self.text = text
        self.code = code


# Commands during which EXPUNGE must not be sent (RFC 3501 7.4.1): they use message sequence numbers.
NO_EXPUNGE = (c.Fetch, c.Store, c.Search, c.Sort, c.Thread)
_NOTHING_ENABLED: frozenset[str] = frozenset()


class Session:
    __slots__ = (
        "_bad_count",
        "_idle_tag",
        "client_origin",
        "conn",
        "ctx",
        "enabled",
        "in_command",
        "notify",
        "pending_sasl",
        "search_result",
        "selected",
        "session_id",
        "state",
        "user",
        "user_name",
        "utf8",
        "xstate_lineage",
    )

    def __init__(self, ctx: ServerContext, conn: ResponseSink) -> None:
        self.ctx = ctx
        self.conn = conn
        self.state = State.NOT_AUTHENTICATED
        self.user: UserStore | None = None
        self.user_name: str | None = None
        self.selected: SelectedView | None = None
        self.enabled: frozenset[str] = _NOTHING_ENABLED  # shared while empty: idle sessions are many
        self.utf8 = False
        self._idle_tag: str | None = None
        self.pending_sasl: str | None = None
        self.search_result: list[int] | None = None
        self._bad_count = 0
        self.session_id = secrets.token_hex(6)  # names this session in log lines (imapd.audit)
        self.xstate_lineage = b""  # X-STATE lineage id of this login (cmd_xstate), b"" until first needed
        # (address, port) of the real client as a trusted proxy named it (imapd/session/auth.py client_address)
        self.client_origin: tuple[str, int | None] | None = None
        self.notify: NotifyWatch | None = None  # RFC 5465 NOTIFY SET (session/notify.py)
        self.in_command = False  # a command of this session is running (NOTIFY pushes wait for its end)

    # -- facts the handlers ask for ------------------------------------------------------------------
    @property
    def idle_tag(self) -> str | None:
        """The tag of the IDLE command in progress."""
        return self._idle_tag

    @property
    def bad_count(self) -> int:
        return self._bad_count

    @bad_count.setter
    def bad_count(self, value: int) -> None:
        self._bad_count = value

    @property
    def authenticated(self) -> bool:
        return self.state in (State.AUTHENTICATED, State.SELECTED)

    @property
    def plaintext_auth_allowed(self) -> bool:
        conn = self.conn
        return (conn.is_tls or conn.balancer_tls or conn.is_loopback
                or self.ctx.settings.tls.allow_plaintext_auth)

    def capability_list(self) -> list[str]:
        return capabilities(
            authenticated=self.authenticated,
            tls_active=self.conn.is_tls or self.conn.balancer_tls,
            starttls_available=self.ctx.tls_context is not None,
            plaintext_auth_allowed=self.plaintext_auth_allowed,
            append_limit=self.ctx.settings.limits.max_literal,
            xstate=self.ctx.settings.xstate.enabled,
        )

    def greeting(self) -> Response:
        code = CapabilityCode(tuple(self.capability_list()))
        return UntaggedStatus("OK", self.ctx.settings.server.greeting, code)

    def send(self, response: Response) -> None:
        if "UIDONLY" in self.enabled:  # RFC 9586: every FETCH response becomes UIDFETCH
            if type(response) is FetchResponse:
                response = as_uidfetch(self.selected, response)
            elif type(response) is FetchFlagsBatch:
                response = uidfetch_batch(response)
            elif type(response) is FetchResponses:
                view = self.selected
                response = FetchResponses([as_uidfetch(view, f) if type(f) is FetchResponse else f
                                           for f in response.responses])
        self.conn.send(response)

    def message_data(self, response: FetchResponse) -> FetchResponse | UidFetchResponse:
        """What ``send`` does to a FETCH response, for the path that bypasses it (whole messages sent from
        their files, ``conn.send_parts``)."""
        return as_uidfetch(self.selected, response) if "UIDONLY" in self.enabled else response

    # -- answers ------------------------------------------------------------------------------------
    def tagged(self, tag: str, status: str, text: str, code: ResponseCode | None = None) -> None:
        self.conn.send(TaggedResponse(tag, status, text, code))

    def count_bad(self) -> None:
        """One more BAD in a row; too many end the connection."""
        self._bad_count += 1
        if self._bad_count >= self.ctx.settings.limits.max_bad_commands:
            self.conn.send(UntaggedStatus("BYE", "Too many invalid commands"))
            self.logout()

    def protocol_error(self, event: ProtocolError) -> None:
        if self._idle_tag is not None:
            # Something other than DONE during IDLE: the parser has left IDLE mode, and the BAD it
            # reports (with the IDLE command's tag) ends the IDLE command here too.
            self._idle_tag = None
            if self.selected is not None:
                self.selected.set_notify(self._resting_notify())
        code = Code(event.code) if event.code else None
        if event.fatal:
            self.conn.send(UntaggedStatus("BYE", event.text, code))
            self.logout()
            return
        if event.tag is not None:
            self.tagged(event.tag, "BAD", event.text, code)
        else:
            self.conn.send(UntaggedStatus("BAD", event.text, code))
        self.count_bad()

    def logout(self) -> None:
        """LOGOUT runs on the user's lane: let go of the user here too, so the disconnect that follows has
        nothing left for the lane (one thread hop less per webmail request)."""
        self.state = State.LOGOUT
        self.stop_notify()
        self.close_selected()
        self.ctx.release_user(self)
        self.conn.close()

    def connection_lost(self) -> None:
        self.state = State.LOGOUT
        self.stop_notify()
        self.close_selected()
        self.ctx.release_user(self)

    @property
    def rev2(self) -> bool:
        """ENABLE IMAP4rev2 (RFC 9051): the handlers that build a response RFC 9051 changes ask this."""
        return "IMAP4REV2" in self.enabled

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled

    @property
    def vanished(self) -> bool:
        """Expunges are told as VANISHED: QRESYNC (RFC 7162 3.2.10) or UIDONLY (RFC 9586) is enabled."""
        return "QRESYNC" in self.enabled or "UIDONLY" in self.enabled

    def enable_condstore(self) -> None:
        """A CONDSTORE-enabling command (RFC 7162 3.1); the first one in SELECTED state announces the
        mailbox's HIGHESTMODSEQ so the client has a base for the MODSEQs it will now see."""
        if "CONDSTORE" in self.enabled:
            return
        self.enabled = self.enabled | {"CONDSTORE"}
        view = self.selected
        if view is not None:
            self.send(UntaggedStatus("OK", "Highest", NumberCode("HIGHESTMODSEQ", view.mailbox.highestmodseq)))

    def stop_notify(self) -> None:
        watch = self.notify
        if watch is not None:
            self.notify = None
            watch.stop()

    def _resting_notify(self) -> Any:
        """The selected view's change callback outside IDLE: NOTIFY's push, or None."""
        return self.notify.resting_push() if self.notify is not None else None

    # -- selected mailbox -----------------------------------------------------------------------------
    def close_selected(self) -> None:
        self.search_result = None
        view = self.selected
        if view is not None:
            self.selected = None
            view.close()
            self.ctx.release_mailbox(view.mailbox)
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    def flush_updates(self) -> None:
        """Send every pending update now (a point where EXPUNGE is allowed)."""
        self.flush_updates_for(None)

    def flush_updates_for(self, command: c.Command | None) -> None:
        """Send what the client must learn about its selected mailbox before the tagged reply."""
        view = self.selected
        if view is None or not view.has_pending:
            return
        allow_expunge = command is None or not (isinstance(command, NO_EXPUNGE) and not command.uid)
        self.send_selected_updates(view, allow_expunge=allow_expunge)

    def send_selected_updates(self, view: SelectedView, *, allow_expunge: bool) -> None:
        """Take and send the view's pending updates; new messages get NOTIFY's MessageNew FETCH."""
        top = view.max_uid
        self.send_updates(view.take_updates(allow_expunge=allow_expunge, vanished=self.vanished))
        if self.notify is not None and view.max_uid > top:
            self.notify.announce_new(view, top)

    def send_updates(self, updates: Sequence[Update | tuple[Any, ...]]) -> None:
        """Send updates of the selected view, rendered by the one builder (``imapd.session.updates``)."""
        view = self.selected
        if view is None:
            return
        if self.rev2:  # IMAP4rev2 has no RECENT response (RFC 9051 7.4, Appendix E)
            updates = [u for u in updates if not isinstance(as_update(u), Recent)]
        for response in render_updates(view, updates, condstore=self.condstore):
            self.send(response)

    # -- IDLE ---------------------------------------------------------------------------------------------
    def start_idle(self, tag: str) -> None:
        self._idle_tag = tag
        view = self.selected
        if view is not None:
            view.set_notify(self._idle_push)
            self._idle_push()

    def _idle_push(self) -> None:
        view = self.selected
        if view is not None and self._idle_tag is not None and view.has_pending:
            self.send_selected_updates(view, allow_expunge=True)

    def idle_done(self) -> None:
        tag = self._idle_tag
        if tag is None:
            return
        self._idle_tag = None
        if self.selected is not None:
            self.selected.set_notify(self._resting_notify())
        self.flush_updates_for(None)
        self.tagged(tag, "OK", "IDLE terminated")


