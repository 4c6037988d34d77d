"""One client of the proxy: pre-authentication, attaching to a backend, then the relay.

A trusted balancer's PROXY header is read by the listener before this object exists (``proxied``).
Phases: ``PREAUTH`` (:mod:`imapd.proxy.preauth`),
``ATTACH`` (a task logs in on the backend; client input waits), ``RELAY`` (bytes pass both ways, the
:class:`~imapd.proxy.tracker.SessionTracker` follows the state), ``DETACH``/``WAKE`` (the hibernation
steps of :mod:`imapd.proxy.hibernation`; client input waits). The relay path is two ``write`` calls and
a line scan per chunk.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, cast

from imapd.protocol.connection import NEED_DATA, ServerConnection
from imapd.protocol.proxyproto import ProxyHeader
from imapd.protocol.response_codes import Code
from imapd.protocol.responses import TaggedResponse, UntaggedStatus
from imapd.proxy.backend_link import BackendClosed, BackendLink, open_link
from imapd.proxy.backends import Backend, NoBackend
from imapd.proxy.credentials import TokenRefused
from imapd.proxy.preauth import LoginRequest, PreauthDialog, StartTLSRequest
from imapd.proxy.tracker import SessionTracker, TrackerError
from imapd.session.auth import HashesBusy, LoginRefused

if TYPE_CHECKING:
    from imapd.proxy.hibernation import Sleeper
    from imapd.proxy.server import ProxyServer

log = logging.getLogger(__name__)

__all__ = ["ProxySession"]

PREAUTH, ATTACH, RELAY, DETACH, HIBERNATED, WAKE, CLOSED = range(7)
_MAX_PENDING = 256 * 1024
"""Client bytes held while the backend side is being set up; beyond it the client is not read."""


class ProxySession(asyncio.Protocol):
    def __init__(self, server: ProxyServer, *, implicit_tls: bool, proxied: ProxyHeader | None = None) -> None:
        """``proxied``: the PROXY header a trusted balancer sent before anything else, already read by the
        listener (:class:`imapd.server.proxy_gate.GatedListener`, shared with the backends), so the TLS
        handshake of an implicit-TLS listener starts after it."""
        self.server = server
        self.proxied = proxied
        self.transport: asyncio.Transport | None = None
        self.tls = implicit_tls
        self.phase = PREAUTH
        self.peer: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.client: tuple[str, int] = ("", 0)
        self.conn: ServerConnection | None = None
        self.dialog: PreauthDialog | None = None
        self.user: str | None = None
        self.backend: Backend | None = None
        self.link: BackendLink | None = None
        self.tracker = SessionTracker()
        self.token: str | None = None
        """The session's last saved state (at login, at IDLE, at hibernation): what a new backend restores."""
        self.token_selected = False
        self.token_fresh = False
        """No command ran since :attr:`token` was taken: restoring it elsewhere gives the client nothing it
        has already seen (else a backend loss can only end the session with BYE)."""
        self._save_buf = b""
        self.sleep_idle_tag: str | None = None
        self.sleep_mailbox: str | None = None
        self.pending: list[bytes] = []
        self.last_activity = 0.0
        self.opaque = False
        self.secure = implicit_tls
        """The client's hop is secure by our rules (TLS, trusted loopback, allow_plaintext_auth): the
        backend is told so in the PROXY header (its SSL TLV), as it must accept the RESTORE we send."""
        """COMPRESS is on: the relay cannot follow the stream, so this session is only piped."""
        self._saving_tag: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.counted = False
        """Counted in the server's per-address connections (limits.max_connections_per_address)."""

    # -- asyncio.Protocol (client side) ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.peer = (str(peer[0]), int(peer[1]))
        self.last_activity = self.server.loop.time()
        self.server.sessions.add(self)
        if self.phase == WAKE:
            return  # a hibernated session re-attached to its socket (hibernation.py): addresses kept
        self.local = (str(local[0]), int(local[1]))
        self.client = self.peer
        header = self.proxied
        if header is not None:
            if header.source is not None:
                self.client = header.source
            if header.dest is not None:
                self.local = header.dest
            self.tls = self.tls or header.tls
        self._start_preauth()

    def _start_preauth(self) -> None:
        settings = self.server.settings
        if not self.server.admit(self.client[0]):
            log.info("refusing connection from %s: limits.max_connections_per_address", self.client[0])
            self._write(b"* BYE [UNAVAILABLE] Too many connections from your address\r\n")
            self.phase = CLOSED
            self._close()
            return
        self.counted = True
        limits = settings.limits
        self.conn = ServerConnection(max_line=limits.max_line, max_literal=limits.max_literal,
                                     max_nesting=limits.max_nesting, preauth=self.server.preauth_limits)
        self.dialog = PreauthDialog(settings, self.conn, tls=self.tls, starttls=self.server.tls_context is not None,
                                    client=self.client, peer=self.peer[0])
        self.phase = PREAUTH
        self._write(self.dialog.greeting())
        self.server.loop.call_later(settings.limits.preauth_timeout, self._preauth_timeout)

    def _preauth_timeout(self) -> None:
        if self.phase == PREAUTH:
            log.info("closing connection from %s: no login in %.0f s", self.client[0],
                     self.server.settings.limits.preauth_timeout)
            self.bye("Too slow to log in", "UNAVAILABLE")

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase == RELAY:
            self.last_activity = self.server.loop.time()
            link = self.link
            assert link is not None
            if not self.opaque:
                tracker = self.tracker
                try:
                    started = tracker.from_client(data)
                except TrackerError:
                    self.opaque = True
                    started = 0
                if started:
                    self.token_fresh = False
                    if tracker.logout and self._logout_here(data):
                        return
                    if "COMPRESS" in tracker.in_flight.values():
                        self.opaque = True
                    elif (started == 1 and tracker.idle_tag is not None and len(tracker.in_flight) == 1
                          and self._saving_tag is None and tracker.client.between):
                        # Entering IDLE: take a token first, so that a backend lost while the client idles
                        # is replaced from exactly what the client has seen.
                        self._saving_tag = link.next_tag()
                        link.write(self._saving_tag.encode() + b" X-STATE SAVE\r\n" + data)
                        return
            link.write(data)
            return
        if phase == PREAUTH:
            assert self.conn is not None
            self.conn.receive_data(data)
            self._run_preauth()
        elif phase in (ATTACH, DETACH, WAKE, HIBERNATED):
            self.pending.append(data)
            if self.transport is not None and sum(map(len, self.pending)) > _MAX_PENDING:
                self.transport.pause_reading()  # start_relay resumes it
            if phase == HIBERNATED:
                self.server.hibernation.wake_soon(self)

    def eof_received(self) -> bool | None:
        return None

    # Flow control: a client that reads slowly stops the backend being read, and the other way round.
    def pause_writing(self) -> None:
        link = self.link
        if link is not None and link.transport is not None:
            link.transport.pause_reading()

    def resume_writing(self) -> None:
        link = self.link
        if link is not None and link.transport is not None and not link.closed:
            link.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.phase == HIBERNATED and self.transport is None:
            return  # the socket lives on in the hibernation table
        if self.phase == HIBERNATED:
            self.server.hibernation.forget(self)
        self.phase = CLOSED
        self.server.sessions.discard(self)
        if self.counted:
            self.counted = False
            self.server.release(self.client[0])
        if self.conn is not None:
            self.conn.discard()
        if self.link is not None:
            self.link.on_lost = None
            self.link.close()
            self.link = None
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # -- hibernation (hibernation.py, moves.py) -----------------------------------------------------------
    @classmethod
    def resumed(cls, server: ProxyServer, sleeper: Sleeper) -> ProxySession:
        """A session object for a hibernated socket that wakes up."""
        session = cls(server, implicit_tls=False)
        session.phase = WAKE
        session.user, session.token = sleeper.user, sleeper.token
        session.client, session.local, session.secure = sleeper.client, sleeper.local, sleeper.secure
        session.counted = True  # the sleeper's count passes to it
        return session

    @property
    def backend_lost_cb(self):  # type: ignore[no-untyped-def]
        return self._backend_lost

    @property
    def saving(self) -> bool:
        """Our SAVE at IDLE entry is still unanswered."""
        return self._saving_tag is not None

    @property
    def phase_relay(self) -> bool:
        return self.phase == RELAY

    @property
    def closed(self) -> bool:
        return self.phase == CLOSED

    def enter_detach(self) -> None:
        self.phase = DETACH

    def enter_wake(self) -> None:
        self.phase = WAKE

    def detach_transport(self) -> None:
        """The socket moves to the hibernation table: forget the transport without closing the session."""
        self.phase = HIBERNATED
        self.transport = None
        self.server.sessions.discard(self)

    def hibernated(self, token: str, idle_tag: str | None, mailbox: str | None) -> None:
        """A TLS session sleeps with its transport (the TLS state lives in it)."""
        self.phase = HIBERNATED
        self.token, self.sleep_idle_tag, self.sleep_mailbox = token, idle_tag, mailbox
        self.tracker = SessionTracker()

    def on_change(self, change: dict[str, object]) -> None:
        if change.get("kind") == "kick":
            self.server.hibernation.tls_sleepers.discard(self)
            self.bye("Session ended by the administrator")
        elif self.sleep_idle_tag is not None and change.get("mailbox") in (None, self.sleep_mailbox):
            self.server.hibernation.wake_soon(self)

    # -- pre-authentication ----------------------------------------------------------------------------------
    def _run_preauth(self) -> None:
        conn, dialog = self.conn, self.dialog
        assert conn is not None and dialog is not None
        while self.phase == PREAUTH:
            event = conn.next_event()
            if event is NEED_DATA:
                return
            responses, request = dialog.handle(event)
            for response in responses:
                self._write(conn.send(response))
            if dialog.closing:
                self._close()
                return
            if isinstance(request, LoginRequest):
                self.phase = ATTACH
                self._task = self.server.loop.create_task(self._login(request))
            elif isinstance(request, StartTLSRequest):
                self.phase = ATTACH
                self._task = self.server.loop.create_task(self._starttls(request))

    async def _starttls(self, request: StartTLSRequest) -> None:
        conn, transport, context = self.conn, self.transport, self.server.tls_context
        assert conn is not None and transport is not None and context is not None
        leftover = conn.take_unread()
        if leftover:  # RFC 3501 6.2.1: nothing may follow STARTTLS before the handshake
            self._write(conn.send(TaggedResponse(request.tag, "BAD", "Data after STARTTLS")))
            self._close()
            return
        self._write(conn.send(TaggedResponse(request.tag, "OK", "Begin TLS negotiation now")))
        try:
            new = await self.server.loop.start_tls(transport, self, context, server_side=True,
                                                   ssl_handshake_timeout=30)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
            log.info("STARTTLS with %s failed: %s", self.client[0], exc)
            transport.abort()
            return
        if new is None:
            return
        self.transport = new
        self.tls = True
        conn.discard()
        self.pending.clear()
        self._start_preauth_after_tls()

    def _start_preauth_after_tls(self) -> None:
        settings = self.server.settings
        limits = settings.limits
        self.conn = ServerConnection(max_line=limits.max_line, max_literal=limits.max_literal,
                                     max_nesting=limits.max_nesting, preauth=self.server.preauth_limits)
        self.dialog = PreauthDialog(settings, self.conn, tls=True, starttls=True, client=self.client,
                                    peer=self.peer[0])
        self.phase = PREAUTH

    async def _login(self, request: LoginRequest) -> None:
        conn = self.conn
        assert conn is not None
        creds = self.server.credentials
        assert self.dialog is not None
        self.secure = self.dialog.plaintext_auth_allowed
        try:
            if request.token is not None:
                user = creds.token_user(request.token)
                token = request.token
            else:
                assert request.password is not None
                user = await creds.check_password(self.client[0], request.user, request.password)
                token = creds.mint(user)
        except LoginRefused as exc:
            log.info("login refused user=%r address=%s via proxy: %s", request.user, self.client[0], exc.reason)
            await asyncio.sleep(exc.delay)
            self._back_to_preauth(TaggedResponse(request.tag, "NO", "Authentication failed",
                                                 Code("AUTHENTICATIONFAILED")))
            return
        except TokenRefused as exc:
            delay = creds.throttle.record_failure(self.client[0])
            log.info("X-STATE refused from %s via proxy: %s", self.client[0], exc.text)
            await asyncio.sleep(delay)
            self._back_to_preauth(TaggedResponse(request.tag, "NO", exc.text, Code(exc.code)))
            return
        except HashesBusy:
            self._back_to_preauth(TaggedResponse(request.tag, "NO", "Server busy, try again later",
                                                 Code("UNAVAILABLE")))
            return
        self.user = user
        try:
            untagged, done = await self.attach(token)
        except (NoBackend, BackendClosed) as exc:
            log.warning("no backend for %s: %s", user, exc)
            self._back_to_preauth(TaggedResponse(request.tag, "NO", "No backend available, try again later",
                                                 Code("UNAVAILABLE")))
            return
        status = done.split(b" ", 2)[1] if b" " in done else b""
        if status != b"OK":
            if self.link is not None:
                self.link.close()
                self.link = None
            self._write(request.tag.encode() + b" " + done.split(b" ", 1)[1])
            self.user = None
            self.phase = PREAUTH
            self._run_preauth()
            return
        if request.token is None:
            code = _code_of(done)
            self._write(request.tag.encode() + b" OK " + (code + b" " if code else b"") + b"Logged in\r\n")
        else:
            self.token = request.token
            for response in untagged:
                self._write(response)
            self._write(request.tag.encode() + b" " + done.split(b" ", 1)[1])
        self.token_selected = b"[READ-" in done[:40]
        if request.token is None:
            self.token = token
        # A client's token restored with a catch-up cannot be restored again without repeating it.
        self.token_fresh = request.token is None
        log.info("login user=%r address=%s via proxy to %s mechanism=%s", user, self.client[0],
                 self.backend.node if self.backend else "?", request.mechanism)
        self.tracker = SessionTracker(selected=self.token_selected)
        conn.authenticated()
        unread = conn.take_unread()
        conn.discard()
        self.conn = None
        self.dialog = None
        self.start_relay(unread)

    def _back_to_preauth(self, response: TaggedResponse) -> None:
        assert self.conn is not None
        self._write(self.conn.send(response))
        if self.phase == CLOSED:
            return
        self.phase = PREAUTH
        self._run_preauth()

    # -- the backend -----------------------------------------------------------------------------------------
    async def attach(self, token: str, *, exclude: str | None = None,
                     restore_args: str = "") -> tuple[list[bytes], bytes]:
        """Open the user's backend and RESTORE ``token`` there; (untagged responses, tagged line).

        A backend that cannot be reached is marked down and the next one is tried; a RESTORE refused with
        ``NO [UNAVAILABLE]`` (the user's lease is still held by the old owner) is retried a few times."""
        assert self.user is not None
        server = self.server
        settings = server.settings.proxy
        attempts = 0
        use_pool = True
        while True:
            backend = await server.pool.for_user(self.user, exclude=exclude)
            pooled = server.links.take(backend) if use_pool else None
            try:
                link, untagged, done = await open_link(
                    backend, client=self.client, local=self.local, tls=self.secure,
                    forward=settings.forward_address, command=f"X-STATE RESTORE {token}{restore_args}",
                    pooled=pooled)
            except BackendClosed as exc:
                if pooled is not None:  # a pooled connection that died idle says little: try a new one
                    use_pool = False
                    continue
                server.pool.mark(backend, False, str(exc))
                attempts += 1
                if attempts > len(server.pool.backends):
                    raise
                continue
            if b"NO [UNAVAILABLE]" in done[:30] and attempts < settings.restore_retries:
                link.close()
                attempts += 1
                await asyncio.sleep(settings.restore_retry_delay)
                continue
            self.backend, self.link = backend, link
            link.on_lost = self._backend_lost
            link.peer = self
            return untagged, done

    def start_relay(self, unread: bytes = b"") -> None:
        link = self.link
        assert link is not None
        rest = link.relay(self.backend_data)
        self.phase = RELAY
        self.last_activity = self.server.loop.time()
        if rest:
            self.backend_data(rest)
        pending, self.pending = self.pending, []
        for data in ([unread] if unread else []) + pending:
            self.data_received(data)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def backend_data(self, data: bytes) -> None:
        if self.phase != RELAY:
            return
        self.last_activity = self.server.loop.time()
        tracker = self.tracker
        if not self.opaque:
            try:
                tracker.from_backend(tracker.backend.heads(data))
            except TrackerError:
                self.opaque = True
            if self._saving_tag is not None:
                data = self._take_saved(data)
            if tracker.tag_map:
                data = tracker.rewrite(data)
        if data:
            self._write(data)

    def _logout_here(self, data: bytes) -> bool:
        """A LOGOUT with nothing else in flight is answered here, without waiting for the backend: one
        relayed round trip less for every webmail request. The backend still gets the LOGOUT (a clean end
        in its log) on a connection the proxy lets go; what it answers is dropped. Not with a command still
        in flight (its answer must come first), a SAVE of ours pending, or a half-received line."""
        tracker, link = self.tracker, self.link
        if (len(tracker.in_flight) != 1 or self._saving_tag is not None or tracker.tag_map or link is None
                or not (tracker.client.between and tracker.backend.between)):
            return False
        tag, name = next(iter(tracker.in_flight.items()))
        # Only a whole, bare "<tag> LOGOUT" line in this very chunk: anything else (arguments, which make it
        # BAD; a command whose line ended in this chunk after an earlier LOGOUT) is the backend's to answer.
        if name.upper() != "LOGOUT" or data.rstrip(b"\r\n").upper() != tag.encode().upper() + b" LOGOUT":
            return False
        self.link = None
        link.peer = None
        link.relay(_discard)
        link.write(data)
        timer = self.server.loop.call_later(10.0, link.close)  # the backend closes first; this bounds it
        link.on_lost = lambda _: timer.cancel()
        self._write(b"* BYE Logging out\r\n" + tag.encode() + b" OK LOGOUT completed\r\n")
        self.phase = CLOSED
        if self.transport is not None:
            self.transport.close()
        return True

    def _take_saved(self, data: bytes) -> bytes:
        """Our SAVE at IDLE entry: keep its ``* X-STATE`` token and tagged OK from the client."""
        buf = self._save_buf + data
        out: list[bytes] = []
        tag = (self._saving_tag or "").encode() + b" "
        pos = 0
        while self._saving_tag is not None:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            line = buf[pos:end + 2]
            pos = end + 2
            if line.startswith(b"* X-STATE "):
                self.token = line[10:].strip().decode("ascii")
            elif line.startswith(tag):
                self._saving_tag = None
                self.token_fresh = line[len(tag):len(tag) + 2] == b"OK" and self.token is not None
            else:
                out.append(line)
        if self._saving_tag is None:
            out.append(buf[pos:])
            self._save_buf = b""
        else:
            self._save_buf = buf[pos:]
        return b"".join(out)

    def _backend_lost(self, link: BackendLink) -> None:
        if link is not self.link:
            return
        self.link = None
        if self.phase != RELAY:
            return  # the detach/wake task sees the closed link itself
        if self.tracker.logout or self.tracker.bye:
            self._close()
            return
        if self.backend is not None:  # one connection is no verdict on the backend: check it now
            self.server.pool.check_soon(self.backend)
        self.server.recovery.backend_lost(self)

    # -- output ----------------------------------------------------------------------------------------------
    def write_client(self, data: bytes) -> None:
        self._write(data)

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def bye(self, text: str, code: str = "UNAVAILABLE") -> None:
        self._write(b"* BYE [" + code.encode() + b"] " + text.encode() + b"\r\n")
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.link is not None:
            self.link.on_lost = None
            self.link.close()
            self.link = None

    def untagged_bye(self, text: str) -> bytes:
        return ServerConnection().send(UntaggedStatus("BYE", text, Code("UNAVAILABLE")))


def _discard(data: bytes) -> None:
    """The backend's answer to a LOGOUT the proxy has answered itself."""


def _code_of(line: bytes) -> bytes:
    """The ``[...]`` response code of a status line, or b""."""
    start = line.find(b"[")
    if start < 0 or start > 12:
        return b""
    end = line.find(b"]", start)
    return line[start:end + 1] if end > 0 else b""
