"""One client connection: an asyncio Protocol that moves bytes between the socket and the sans-IO parser.

Idle connections cost as little as possible: no task and no StreamReader/StreamWriter pair per client.
A task exists only while commands are being executed; an IDLE session has none (pushes are written
straight from the change feed callback).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING, cast

from imapd.protocol import (
    NEED_DATA,
    CommandReceived,
    ConnectionClosed,
    ContinuationRequest,
    IdleDone,
    ProtocolError,
    SaslResponse,
    ServerConnection,
)
from imapd.protocol.responses import Response

if TYPE_CHECKING:
    from imapd.server.listener import ConnectionRegistry
    from imapd.session.context import ServerContext
    from imapd.session.session import Session

log = logging.getLogger(__name__)

__all__ = ["IMAPConnection"]


class OutputOverflow(Exception):
    """The client stopped reading and its output buffer passed the limit."""


class IMAPConnection(asyncio.Protocol):
    __slots__ = (
        "_closing",
        "_drain_waiter",
        "_out",
        "_out_size",
        "_paused_reading",
        "_paused_writing",
        "_registry",
        "_task",
        "ctx",
        "is_tls",
        "last_activity",
        "peer_host",
        "proto",
        "session",
        "transport",
    )

    def __init__(self, ctx: ServerContext, registry: ConnectionRegistry, *, implicit_tls: bool) -> None:
        self.ctx = ctx
        self._registry = registry
        self.is_tls = implicit_tls
        self.transport: asyncio.Transport | None = None
        limits = ctx.settings.limits
        self.proto = ServerConnection(
            max_line=limits.max_line, max_literal=limits.max_literal, max_nesting=limits.max_nesting,
            preauth=ctx.preauth_limits,
        )
        self.session: Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._paused_reading = False
        self._paused_writing = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closing = False
        # Output of the command being executed, written in one go at its end (or every 64 KiB): a FETCH
        # of 50 messages is one send() instead of 50.
        self._out: list[bytes] | None = None
        self._out_size = 0
        self.peer_host = ""
        self.last_activity = time.monotonic()

    # -- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        from imapd.session.session import Session

        # uvloop's transports are not asyncio.Transport subclasses, but have the same API.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.peer_host = str(peer[0]) if peer else "unknown"
        self.transport.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
        if not self._registry.admit(self):
            self.write_bytes(b"* BYE [UNAVAILABLE] Too many connections from your address\r\n")
            self._closing = True
            self.transport.close()
            return
        self.session = Session(self.ctx, self)
        self.send(self.session.greeting())

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        session = self.session
        if session is not None and session.authenticated:
            # Before login only whole commands count as activity, so a client trickling bytes
            # (slowloris) is still logged out at preauth_timeout.
            self.last_activity = time.monotonic()
        self.proto.receive_data(data)
        if (self._task is not None and not self._paused_reading
                and self.proto.pending_bytes > self.ctx.settings.limits.max_line * 2):
            # A command is executing and input keeps coming (a long pipeline): stop reading until the
            # backlog is worked off. Never while idle: the backlog may be an unfinished literal that
            # only more input can complete.
            assert self.transport is not None
            self.transport.pause_reading()
            self._paused_reading = True
        self._pump()

    def eof_received(self) -> bool | None:
        self.proto.receive_data(b"")
        self._pump()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._registry.discard(self)
        self.proto.discard()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("connection lost"))
        if self._task is not None:
            self._task.cancel()
        if self.session is not None:
            self.session.connection_lost()

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- the ResponseSink used by the session -----------------------------------------------------
    @property
    def is_loopback(self) -> bool:
        if not self.ctx.settings.tls.trust_loopback:
            return False
        return self.peer_host in ("127.0.0.1", "::1") or self.peer_host.startswith("127.")

    @property
    def closing(self) -> bool:
        return self._closing

    def send(self, response: Response) -> None:
        self.write_bytes(self.proto.send(response))

    def expect_idle_done(self) -> None:
        self.proto.expect_idle_done()

    def expect_sasl_response(self) -> None:
        self.proto.expect_sasl_response()

    def set_utf8(self, enabled: bool) -> None:
        self.proto.utf8 = enabled

    def raise_input_limits(self) -> None:
        """Authenticated: the normal line and literal limits apply from now on."""
        self.proto.authenticated()

    def write_bytes(self, data: bytes) -> None:
        if self._task is not None:  # inside a command: batch
            if self._out is None:
                self._out = [data]
            else:
                self._out.append(data)
            self._out_size += len(data)
            if self._out_size >= 65536:
                self.flush()
            return
        self._write_now(data)

    def flush(self) -> None:
        """Write what the current command produced so far."""
        out = self._out
        if out is None:
            return
        self._out = None
        self._out_size = 0
        self._write_now(out[0] if len(out) == 1 else b"".join(out))

    def _write_now(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if self._task is None and transport.get_write_buffer_size() > self.ctx.settings.limits.max_output_buffer:
            # Unsolicited output (IDLE pushes) to a client that stopped reading: drop it rather than grow
            # without bound. Command output is bounded by drain() instead.
            log.info("closing connection from %s: output buffer over limit", self.peer_host)
            self.abort()

    async def drain(self) -> None:
        """Wait until the client has read enough of what we wrote (back-pressure for long outputs)."""
        if self._out_size >= 16384:
            self.flush()
        if not self._paused_writing or self._closing:
            if self._closing:
                raise ConnectionResetError("connection closing")
            return
        loop = asyncio.get_running_loop()
        self._drain_waiter = loop.create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None

    def close(self) -> None:
        """Close after flushing what is buffered (LOGOUT, BYE)."""
        self.flush()
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Upgrade in place (STARTTLS). Input buffered before the handshake is discarded (RFC 3501 6.2.1)."""
        assert self.transport is not None
        self.flush()  # the tagged OK goes out in the clear, before the handshake
        loop = asyncio.get_running_loop()
        self.proto.discard()
        limits = self.ctx.settings.limits
        self.proto = ServerConnection(
            max_line=limits.max_line, max_literal=limits.max_literal, max_nesting=limits.max_nesting,
            preauth=self.ctx.preauth_limits,
        )
        new_transport = await loop.start_tls(self.transport, self, context, server_side=True)
        if new_transport is None:
            raise ConnectionResetError("TLS handshake failed")
        self.transport = new_transport
        self.is_tls = True

    # -- command loop -------------------------------------------------------------------------------
    def _pump(self) -> None:
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while not self._closing:
                event = self.proto.next_event()
                if event is NEED_DATA:
                    break
                session = self.session
                assert session is not None
                if isinstance(event, CommandReceived):
                    self.last_activity = time.monotonic()
                    await session.execute(event.command)
                    self.flush()
                elif isinstance(event, ContinuationRequest):
                    self.write_bytes(b"+ " + event.text.encode("utf-8", "replace") + b"\r\n")
                elif isinstance(event, IdleDone):
                    session.idle_done()
                elif isinstance(event, SaslResponse):
                    await session.sasl_response(event)
                elif isinstance(event, ProtocolError):
                    session.protocol_error(event)
                elif isinstance(event, ConnectionClosed):
                    self.close()
                    break
                if self._paused_reading and self.proto.pending_bytes <= self.ctx.settings.limits.max_line:
                    assert self.transport is not None
                    self._paused_reading = False
                    self.transport.resume_reading()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("internal error on connection from %s", self.peer_host)
            self.write_bytes(b"* BYE [SERVERBUG] Internal server error\r\n")
            self.close()
        finally:
            self.flush()
            self._task = None
            if self._paused_reading and not self._closing and self.transport is not None:
                self._paused_reading = False
                self.transport.resume_reading()
