"""The proxy's side of a client before login: greeting, CAPABILITY, ID, NOOP, STARTTLS, LOGOUT, and the
credentials of LOGIN / AUTHENTICATE PLAIN / X-STATE RESTORE, on the sans-IO ServerConnection.

Nothing here opens a backend: :class:`PreauthDialog` turns client events into responses and, for a
login, into a :class:`LoginRequest` the session then carries out (verify, choose the backend, attach).
"""

from __future__ import annotations

from dataclasses import dataclass

from imapd import __version__
from imapd.config import Settings
from imapd.protocol import commands as c
from imapd.protocol.connection import ServerConnection
from imapd.protocol.events import CommandReceived, ContinuationRequest, IdleDone, ProtocolError, SaslResponse
from imapd.protocol.response_codes import CapabilityCode, Code
from imapd.protocol.responses import (
    CapabilityResponse,
    ContinuationResponse,
    IdResponse,
    Response,
    TaggedResponse,
    UntaggedStatus,
)
from imapd.session.auth import is_trusted_loopback, is_trusted_proxy
from imapd.session.capabilities import capabilities

__all__ = ["LoginRequest", "PreauthDialog", "StartTLSRequest"]


@dataclass(frozen=True, slots=True)
class LoginRequest:
    tag: str
    user: str
    password: str | None = None
    token: str | None = None
    mechanism: str = "LOGIN"


@dataclass(frozen=True, slots=True)
class StartTLSRequest:
    tag: str


_GREETINGS: dict[tuple[int, bool, bool, bool], tuple[Settings, bytes]] = {}
"""Rendered greetings by (settings, tls, starttls, plaintext auth allowed); the settings are kept so that
their id is not reused by another object while the entry lives."""


class PreauthDialog:
    """What the proxy answers before login; the transport and the backends are the caller's."""

    def __init__(self, settings: Settings, conn: ServerConnection, *, tls: bool, starttls: bool,
                 client: tuple[str, int], peer: str) -> None:
        self.settings = settings
        self.conn = conn
        self.tls = tls
        self.starttls = starttls
        self.client = client
        self.peer = peer
        self._sasl_tag: str | None = None
        self.closing = False

    @property
    def plaintext_auth_allowed(self) -> bool:
        t = self.settings.tls
        return self.tls or t.allow_plaintext_auth or is_trusted_loopback(self.client[0], t.trust_loopback)

    def capabilities(self) -> tuple[str, ...]:
        return tuple(capabilities(authenticated=False, tls_active=self.tls, starttls_available=self.starttls,
                                  plaintext_auth_allowed=self.plaintext_auth_allowed,
                                  append_limit=self.settings.limits.max_literal,
                                  xstate=self.settings.xstate.enabled))

    def greeting(self) -> bytes:
        """The greeting with its CAPABILITY code; rendered once per kind of connection (it depends on the
        settings and on three flags only), since rendering ~50 atoms cost more than the rest of a greeting."""
        key = (id(self.settings), self.tls, self.starttls, self.plaintext_auth_allowed)
        cached = _GREETINGS.get(key)
        if cached is None or cached[0] is not self.settings:
            text = self.conn.send(UntaggedStatus("OK", self.settings.server.greeting,
                                                 CapabilityCode(self.capabilities())))
            if len(_GREETINGS) > 64:
                _GREETINGS.clear()
            cached = _GREETINGS[key] = (self.settings, text)
        return cached[1]

    def handle(self, event: object) -> tuple[list[Response], LoginRequest | StartTLSRequest | None]:
        """Responses to send for one event, and a login or STARTTLS for the caller to carry out."""
        if isinstance(event, ContinuationRequest):
            return [ContinuationResponse("Ready for literal data")], None
        if isinstance(event, ProtocolError):
            if event.fatal:
                self.closing = True
                return [UntaggedStatus("BYE", event.text, Code(event.code) if event.code else None)], None
            return [TaggedResponse(event.tag or "*", "BAD", event.text, Code(event.code) if event.code else None)], None
        if isinstance(event, SaslResponse):
            return self._sasl(event)
        if isinstance(event, IdleDone):
            return [], None
        if not isinstance(event, CommandReceived):
            return [], None
        return self._command(event.command)

    def _command(self, cmd: object) -> tuple[list[Response], LoginRequest | StartTLSRequest | None]:
        tag = getattr(cmd, "tag", "*")
        ok = TaggedResponse(tag, "OK", "Completed")
        if isinstance(cmd, c.Capability):
            return [CapabilityResponse(self.capabilities()), ok], None
        if isinstance(cmd, c.Noop):
            return [ok], None
        if isinstance(cmd, c.Logout):
            self.closing = True
            return [UntaggedStatus("BYE", "Logging out"), TaggedResponse(tag, "OK", "Logout completed")], None
        if isinstance(cmd, c.Id):
            self._note_origin(cmd.params)
            return [IdResponse((("name", "imapd-proxy"), ("version", __version__))), ok], None
        if isinstance(cmd, c.StartTLS):
            if not self.starttls or self.tls:
                return [TaggedResponse(tag, "BAD", "STARTTLS not available")], None
            return [], StartTLSRequest(tag)
        if isinstance(cmd, (c.Login, c.Authenticate, c.XStateRestore)) and not self.plaintext_auth_allowed:
            return [TaggedResponse(tag, "NO", "Authentication is disabled on an unencrypted connection; "
                                   "use STARTTLS", Code("PRIVACYREQUIRED"))], None
        if isinstance(cmd, c.Login):
            return [], LoginRequest(tag, cmd.username, password=cmd.password)
        if isinstance(cmd, c.XStateRestore):
            if not self.settings.xstate.enabled or not self.settings.xstate.authenticates:
                return [TaggedResponse(tag, "BAD", "X-STATE RESTORE needs LOGIN first on this server")], None
            return [], LoginRequest(tag, "", token=cmd.token, mechanism="X-STATE")
        if isinstance(cmd, c.Authenticate):
            if cmd.mechanism != "PLAIN":
                return [TaggedResponse(tag, "NO", "Unsupported authentication mechanism", Code("CANNOT"))], None
            if cmd.initial_response is None:
                self._sasl_tag = tag
                self.conn.expect_sasl_response()
                return [ContinuationResponse("")], None
            return self._plain(tag, cmd.initial_response)
        return [TaggedResponse(tag, "BAD", "Command not valid before login")], None

    def _sasl(self, event: SaslResponse) -> tuple[list[Response], LoginRequest | StartTLSRequest | None]:
        tag, self._sasl_tag = self._sasl_tag or "*", None
        if event.cancelled:
            return [TaggedResponse(tag, "BAD", "Authentication cancelled")], None
        return self._plain(tag, event.data)

    def _plain(self, tag: str, data: bytes) -> tuple[list[Response], LoginRequest | StartTLSRequest | None]:
        parts = data.split(b"\0")
        if len(parts) != 3:
            return [TaggedResponse(tag, "BAD", "Malformed PLAIN response")], None
        authz, authc, password = (p.decode("utf-8", "replace") for p in parts)
        if authz and authz != authc:
            return [TaggedResponse(tag, "NO", "Proxy authorization not allowed", Code("AUTHORIZATIONFAILED"))], None
        return [], LoginRequest(tag, authc, password=password, mechanism="PLAIN")

    def _note_origin(self, params: tuple[tuple[str, str | None], ...] | None) -> None:
        """A trusted webmail (``auth.trusted_networks``) names its real client, as the backends allow."""
        if not params or not is_trusted_proxy(self.peer, self.settings.auth.trusted_networks):
            return
        fields = {k.lower(): v for k, v in params if v is not None}
        ip = fields.get("x-originating-ip")
        if ip:
            port = fields.get("x-originating-port", "0")
            self.client = (ip, int(port) if port.isdigit() else 0)
