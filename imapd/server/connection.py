"""One client connection: an asyncio Protocol that moves bytes between the socket and the sans-IO parser.

Idle connections cost as little as possible: no task and no StreamReader/StreamWriter pair per client.
A task exists only while commands are being executed; an IDLE session has none (pushes are written
straight from the change feed callback).

Commands that touch a user's mail run on that user's lane (``imapd/lanes.py``), a thread of its
own; the session then calls this object from that thread. The sink methods notice it and hand the bytes
to the network loop (batched per command, in order), so the transport is only ever used on its loop.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any, cast

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
from imapd.protocol import commands as c
from imapd.protocol.command_writer import write_command
from imapd.protocol.compress import DeflateError, DeflateStream
from imapd.protocol.responses import FetchResponse, Response, UidFetchResponse
from imapd.protocol.values import FileLiteral
from imapd.session import dispatch
from imapd.session.auth import is_trusted_loopback
from imapd.session.session import Session
from imapd.store.content import MessageFile

if TYPE_CHECKING:
    from imapd.protocol.proxyproto import ProxyHeader
    from imapd.server.handoff import Transfer
    from imapd.server.listener import ConnectionRegistry
    from imapd.session.context import ServerContext
    from imapd.session.handover import SessionSnapshot

log = logging.getLogger(__name__)

__all__ = ["IMAPConnection", "send_file"]


class IMAPConnection(asyncio.Protocol):
    __slots__ = (
        "_adopted",
        "_close_after_files",
        "_closing",
        "_direct",
        "_direct_bytes",
        "_direct_task",
        "_drain_waiter",
        "_in_lane_command",
        "_inline",
        "_lane_out",
        "_lane_out_size",
        "_lane_unconfirmed",
        "_loop",
        "_out",
        "_out_size",
        "_paused_reading",
        "_paused_writing",
        "_quickack_sock",
        "_registry",
        "_resume",
        "_task",
        "_thread",
        "_zpaused",
        "_zstream",
        "balancer_tls",
        "ctx",
        "is_tls",
        "last_activity",
        "peer_host",
        "peer_port",
        "proto",
        "relay",
        "session",
        "transport",
    )

    def __init__(self, ctx: ServerContext, registry: ConnectionRegistry, *, implicit_tls: bool,
                 adopted: Transfer | None = None, proxied: ProxyHeader | None = None) -> None:
        """``proxied``: the PROXY header a trusted balancer sent first (``imapd/server/proxy_gate.py``); its
        source is the client's address from the start (limits, throttle, logs, X-STATE binding)."""
        self.ctx = ctx
        self._adopted = adopted
        # Set once this connection only carries a TLS stream for a session served by another process.
        self.relay: RelayPeer | None = None
        self._resume: SessionSnapshot | None = None
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
        self.peer_port = 0
        if proxied is not None and proxied.source is not None:
            self.peer_host, self.peer_port = proxied.source
        # The balancer terminated TLS for this client (PROXY v2 SSL TLV): plaintext LOGIN is allowed and
        # STARTTLS is not offered, as on a TLS connection, only because a trusted peer says so.
        self.balancer_tls = proxied is not None and proxied.tls
        self.last_activity = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        # Output produced on the user's lane during a command, handed to the loop in one piece.
        self._lane_out: list[bytes | MessageFile] = []
        self._lane_out_size = 0
        self._lane_unconfirmed = 0  # bytes handed to the loop since the last drain round trip
        self._in_lane_command = False
        # A command of an authenticated user running here on the network loop (dispatch.in_memory): it
        # must finish without yielding, so that no job of the same user starts on a lane meanwhile.
        self._inline = False
        # The TCP socket, while TCP_QUICKACK works on it (see _ack_partial_input).
        self._quickack_sock: Any = None
        # COMPRESS=DEFLATE once active (RFC 4978); _zpaused: reading paused while a large expansion is
        # fed to the parser in steps.
        self._zstream: DeflateStream | None = None
        self._zpaused = False
        # While a message file is being sent (see _send_direct): everything written meanwhile, in order.
        self._direct: collections.deque[bytes | MessageFile] | None = None
        self._direct_bytes = 0
        self._direct_task: asyncio.Task[None] | None = None
        self._close_after_files = False

    # -- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same API.
        self.transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        adopted = self._adopted
        if adopted is not None:
            self.peer_host, self.peer_port = adopted.peer_host, adopted.peer_port
            self.balancer_tls = adopted.balancer_tls
        elif not self.peer_host:
            peer = self.transport.get_extra_info("peername")
            self.peer_host = str(peer[0]) if peer else "unknown"
            self.peer_port = int(peer[1]) if peer and len(peer) > 1 else 0
        self.transport.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
        if hasattr(socket, "TCP_QUICKACK"):
            self._quickack_sock = self.transport.get_extra_info("socket")
        if not self._registry.admit(self, enforce=adopted is None,
                                    count=adopted is None or not adopted.is_tls):
            self.write_bytes(b"* BYE [UNAVAILABLE] Too many connections from your address\r\n")
            self._closing = True
            self.transport.close()
            return
        self.session = Session(self.ctx, self)
        if adopted is not None:
            self.session.client_origin = adopted.origin
        if adopted is None:
            self.send(self.session.greeting())
            return
        # Handed over by another worker: no greeting (the client had it); go on where it stopped.
        self._adopted = None
        if adopted.session is not None:
            from imapd.session.handover import decode_snapshot

            self._resume = decode_snapshot(adopted.session)
            self.proto.authenticated()  # a logged-in session moving in: its input is not pre-auth input
        if adopted.compress is not None:
            self._zstream = DeflateStream.resume(adopted.compress)
        if adopted.unread:  # (an empty feed would mean end of input)
            self.proto.receive_data(adopted.unread)
        self._pump()

    def data_received(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.forward(data)
            return
        if self._closing:
            return
        session = self.session
        if session is not None and session.authenticated:
            # Before login only whole commands count as activity, so a client trickling bytes
            # (slowloris) is still logged out at preauth_timeout.
            self.last_activity = time.monotonic()
        if self._zstream is not None:
            self._receive_compressed(data)
        else:
            self.proto.receive_data(data)
            self._check_backlog()
            self._pump()
        if self._quickack_sock is not None and self.proto.holds_partial_command:
            self._ack_partial_input()  # (not for whole commands: a syscall per command otherwise)

    def _check_backlog(self) -> bool:
        """A command is executing and input keeps coming (a long pipeline): stop reading until the backlog
        is worked off. Never while idle: the backlog may be an unfinished literal that only more input
        can complete. True when reading is (now) paused for it."""
        if (self._task is not None and not self._paused_reading
                and self.proto.pending_bytes > self.ctx.settings.limits.max_line * 2):
            assert self.transport is not None
            self.transport.pause_reading()
            self._paused_reading = True
        return self._paused_reading

    def _receive_compressed(self, data: bytes) -> None:
        """Inflate and parse, at most 1 MiB per call: a small packet may expand a thousandfold, and the rest
        waits in the inflater (reading paused) until the parser's backlog allows, like plain input."""
        z = self._zstream
        assert z is not None
        expanded = 0
        try:
            while True:
                plain = z.decompress(data, 65536)
                data = b""
                expanded += len(plain)
                if plain:
                    self.proto.receive_data(plain)
                self._pump()
                if not z.pending or self._check_backlog():
                    return
                if expanded >= 1 << 20:  # let the loop serve others, then go on
                    if not self._zpaused and self.transport is not None:
                        self._zpaused = True
                        self.transport.pause_reading()
                    asyncio.get_running_loop().call_soon(self._inflate_more)
                    return
        except DeflateError as exc:
            user = self.session.user_name if self.session is not None else None
            log.info("closing connection from %s (user %s): corrupt COMPRESS stream: %s", self.peer_host, user, exc)
            self.write_bytes(b"* BYE [CLIENTBUG] Compressed stream is corrupt\r\n")
            self.close()

    def _inflate_more(self) -> None:
        if self._closing or self._zstream is None:
            return
        self._receive_compressed(b"")
        if self._zpaused and not self._zstream.pending and self.transport is not None:
            self._zpaused = False
            if not self._paused_reading:
                self.transport.resume_reading()

    def _resume_input(self) -> None:
        """The parser's backlog is worked off: expand what the inflater holds, then read again."""
        assert self.transport is not None
        self._paused_reading = False
        if self._zstream is not None and self._zstream.pending:
            self._receive_compressed(b"")
            if self._paused_reading or self._zpaused:
                return
        self.transport.resume_reading()

    @property
    def compressed(self) -> bool:
        return self._zstream is not None

    def start_compression(self) -> None:
        """COMPRESS=DEFLATE from the next byte on, both ways; the tagged OK before it goes out plain."""
        if not self._on_loop():
            self._post_lane_out()
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.start_compression)
            return
        self.flush()
        self._zstream = DeflateStream()
        try:
            leftover = self.proto.take_unread()
        except RuntimeError:  # part of a next command came before our OK (RFC 4978 forbids it)
            self.write_bytes(b"* BYE [CLIENTBUG] Data sent before the COMPRESS response\r\n")
            self.close()
            return
        if leftover:
            self._receive_compressed(leftover)

    def _ack_partial_input(self) -> None:
        """ACK now what we hold of an unfinished command (a literal without its CRLF).

        We have nothing to send until the command is complete, so Linux delays the ACK (40 ms); a
        client that writes the literal and its CRLF separately (imaplib, PHP) holds the CRLF under
        Nagle until that ACK comes, and every command with a literal took ~45 ms. Setting
        TCP_QUICKACK sends the pending ACK at once.
        """
        try:
            self._quickack_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except (OSError, AttributeError):  # not TCP (a UNIX socket pair of a relayed session)
            self._quickack_sock = None

    def eof_received(self) -> bool | None:
        if self.relay is not None:
            self.relay.client_eof()
            return None
        self.proto.receive_data(b"")
        self._pump()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._registry.discard(self)
        self.proto.discard()
        if self.relay is not None:
            self.relay.client_lost()
            return
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("connection lost"))
        if self._direct_task is not None:
            self._direct_task.cancel()
        if self._task is not None:
            self._task.cancel()
        session = self.session
        if session is None:
            return
        user = session.user_name
        if user is not None:
            self.ctx.lanes.submit(user, "disconnect", session.connection_lost)
        else:
            session.connection_lost()

    def pause_writing(self) -> None:
        self._paused_writing = True
        if self.relay is not None:
            self.relay.pause_reading()

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self.relay is not None:
            self.relay.resume_reading()
        self._wake_drain()

    # -- the ResponseSink used by the session -----------------------------------------------------
    @property
    def is_loopback(self) -> bool:
        return is_trusted_loopback(self.peer_host, self.ctx.settings.tls.trust_loopback)

    @property
    def closing(self) -> bool:
        return self._closing

    def send(self, response: Response) -> None:
        self.write_bytes(self.proto.send(response))

    @property
    def can_send_files(self) -> bool:
        """A plaintext, uncompressed TCP connection of our own: message files may go out with sendfile. Not under TLS
        (the kernel would send them unencrypted) nor for a session relayed from another worker (its
        socket is a UNIX socket pair whose far end encrypts)."""
        transport = self.transport
        if self.is_tls or transport is None or self.relay is not None or self._zstream is not None:
            return False  # (COMPRESS: the file's octets must go through the deflater)
        if transport.get_extra_info("sslcontext") is not None:
            return False
        sock = transport.get_extra_info("socket")
        return sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)

    def send_parts(self, response: FetchResponse | UidFetchResponse) -> None:
        """Send a FETCH response whose values hold :class:`FileLiteral` (of :class:`MessageFile`): its
        bytes and, in their place, the files' octets, in order with everything else written. The
        files are closed once sent (or when the connection ends)."""
        for part in self.proto.send_parts(response):
            if type(part) is bytes:
                if part:
                    self.write_bytes(part)
            else:
                assert isinstance(part, FileLiteral) and isinstance(part.source, MessageFile)
                self._write_file(part.source)

    def _write_file(self, file: MessageFile) -> None:
        if not self._on_loop():
            if self._in_lane_command:
                self._lane_out.append(file)
                self._lane_out_size += file.size
                if self._lane_out_size >= _LANE_BATCH:
                    self._post_lane_out()
            else:
                file.close()
            return
        self.flush()
        transport = self.transport
        if transport is None or transport.is_closing():
            file.close()
            return
        if self._direct is None:
            self._direct = collections.deque()
            self._direct_bytes = 0
            self._direct_task = asyncio.get_running_loop().create_task(self._send_direct())
        self._direct.append(file)
        self._direct_bytes += file.size

    def _on_loop(self) -> bool:
        return threading.get_ident() == self._thread

    def expect_idle_done(self) -> None:
        self.proto.expect_idle_done()

    def expect_sasl_response(self) -> None:
        self.proto.expect_sasl_response()

    def set_utf8(self, enabled: bool) -> None:
        self.proto.utf8 = enabled

    def raise_input_limits(self) -> None:
        """Authenticated: the normal line and literal limits apply from now on (on the network loop, which
        owns the parser; queued before the command's answer, so before its next command is parsed)."""
        if not self._on_loop():
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.proto.authenticated)
            return
        self.proto.authenticated()

    def lower_input_limits(self) -> None:
        """Not authenticated again (UNAUTHENTICATE): the pre-auth limits apply to the next command, queued
        like :meth:`raise_input_limits`."""
        if not self._on_loop():
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.proto.unauthenticated)
            return
        self.proto.unauthenticated()

    def write_bytes(self, data: bytes) -> None:
        if not self._on_loop():
            self._write_from_lane(data)
            return
        if self._task is not None:  # inside a command: batch
            if self._out is None and len(data) >= 65536:  # (a lane's batch: no copy into another)
                self._write_now(data)
                return
            if self._out is None:
                self._out = [data]
            else:
                self._out.append(data)
            self._out_size += len(data)
            if self._out_size >= 65536:
                self.flush()
            return
        self._write_now(data)

    def _write_from_lane(self, data: bytes) -> None:
        if self._in_lane_command:
            self._lane_out.append(data)
            self._lane_out_size += len(data)
            if self._lane_out_size >= _LANE_BATCH:
                self._post_lane_out()
            return
        loop = self._loop
        if loop is not None and not self._closing:  # an IDLE push from the lane: out at once, in order
            loop.call_soon_threadsafe(self.write_bytes, data)

    def _post_lane_out(self) -> None:
        out = self._lane_out
        if not out:
            return
        self._lane_unconfirmed += self._lane_out_size
        self._lane_out = []
        self._lane_out_size = 0
        loop = self._loop
        if loop is None:
            return
        if all(type(piece) is bytes for piece in out):
            data = cast(list[bytes], out)
            loop.call_soon_threadsafe(self.write_bytes, data[0] if len(data) == 1 else b"".join(data))
        else:
            loop.call_soon_threadsafe(self._write_pieces, out)

    def _write_pieces(self, pieces: list[bytes | MessageFile]) -> None:
        """On the loop: the lane's output of a command, bytes and message files, in order."""
        run: list[bytes] = []
        for piece in pieces:
            if type(piece) is bytes:
                run.append(piece)
                continue
            if run:
                self.write_bytes(b"".join(run))
                run = []
            assert isinstance(piece, MessageFile)
            self._write_file(piece)
        if run:
            self.write_bytes(b"".join(run))

    @property
    def output_paused(self) -> bool:
        """The client is not reading: the transport's buffer is over its high-water mark (a flag the
        network loop sets; read from a lane without a lock, as drain() does)."""
        return self._paused_writing

    def flush(self) -> None:
        """Write what the current command produced so far."""
        if not self._on_loop():
            self._post_lane_out()
            return
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
        if self._direct is not None:  # behind a file being sent (never while compressed: can_send_files)
            self._direct.append(data)
            self._direct_bytes += len(data)
            return
        if self._zstream is not None:
            data = self._zstream.compress(data)
        transport.write(data)
        if self._task is None and transport.get_write_buffer_size() > self.ctx.settings.limits.max_output_buffer:
            # Unsolicited output (IDLE pushes) to a client that stopped reading: drop it rather than grow
            # without bound. Command output is bounded by drain() instead.
            log.info("closing connection from %s: output buffer over limit", self.peer_host)
            self.abort()

    # -- message files ---------------------------------------------------------------------------
    async def _send_direct(self) -> None:
        """Send the queue of :attr:`_direct` (message files and the bytes written behind them) straight
        to the socket: once the transport's buffer is empty, nobody else writes to the socket until the
        queue is empty, so the order is the order of writes. Waits for the socket to take more on a
        duplicate of its descriptor (the loop refuses a transport's own)."""
        transport = self.transport
        queue = self._direct
        assert transport is not None and queue is not None
        loop = asyncio.get_running_loop()
        fd = os.dup(transport.get_extra_info("socket").fileno())
        try:
            while transport.get_write_buffer_size():
                await _writable(loop, fd)
                await asyncio.sleep(0)  # let the transport write what it holds first
            while queue:
                piece = queue.popleft()
                if type(piece) is bytes:
                    await _send_all(loop, fd, piece)
                    self._direct_bytes -= len(piece)
                else:
                    assert isinstance(piece, MessageFile)
                    try:
                        complete = await send_file(loop, fd, piece)
                    finally:
                        piece.close()
                    if not complete:
                        log.warning("message file of UID %d shrank while it was sent to %s; closing the "
                                    "connection", piece.uid, self.peer_host)
                        raise ConnectionResetError("message file shrank")
                    self._direct_bytes -= piece.size
                self._wake_drain()
        except OSError as exc:
            log.info("closing connection from %s: sending a message file failed: %s", self.peer_host, exc)
            self._closing = True
            transport.abort()
        finally:
            os.close(fd)
            for piece in queue:
                if not isinstance(piece, bytes):
                    piece.close()
            self._direct = None
            self._direct_bytes = 0
            self._direct_task = None
            self._wake_drain()
            if self._close_after_files and not transport.is_closing():
                transport.close()

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if (waiter is not None and not waiter.done() and not self._paused_writing
                and self._direct_bytes <= _DIRECT_LOW):
            waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until the client has read enough of what we wrote (back-pressure for long outputs)."""
        if not self._on_loop():
            # On the user's lane. A round trip to the network loop costs two thread switches, so it is
            # made only when the client may be behind: its transport said so, or 256 KiB went out since
            # the last one. That bounds what a slow reader makes us hold, as on the loop.
            if self._closing:
                raise ConnectionResetError("connection closing")
            if self._lane_out_size >= 16384:
                self._post_lane_out()
            if not self._paused_writing and self._lane_unconfirmed < 262144:
                return
            self._post_lane_out()
            self._lane_unconfirmed = 0
            assert self._loop is not None
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.drain(), self._loop))
            return
        if self._out_size >= 16384:
            self.flush()
        if self._inline:  # bounded output (dispatch.in_memory): never wait here, the buffer takes it
            if self._closing:
                raise ConnectionResetError("connection closing")
            return
        behind = self._paused_writing or self._direct_bytes > _DIRECT_HIGH
        if not behind or self._closing:
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
        if not self._on_loop():
            self._post_lane_out()
            self._closing = True
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.close)
            return
        self.flush()
        self._closing = True
        if self._direct is not None:
            self._close_after_files = True  # once the files and what follows them are out
            return
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if not self._on_loop():
            self._closing = True
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.abort)
            return
        self._closing = True
        if self._direct_task is not None:
            self._direct_task.cancel()
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
    def _lane_user(self, command: c.Command) -> str | None:
        """The user whose lane runs ``command``, or None to run it here (it touches no mail)."""
        session = self.session
        assert session is not None
        if session.user_name is not None:
            return session.user_name
        if isinstance(command, c.Login):
            return command.username
        if isinstance(command, c.Authenticate) and command.initial_response is not None:
            return _plain_authcid(command.initial_response)
        if isinstance(command, c.XStateRestore):
            return self.ctx.token_user(command.token)
        return None

    async def _wait_written(self) -> None:
        """Everything we wrote must have left before another process writes to the same socket."""
        transport = self.transport
        for _ in range(500):
            if transport is None or transport.is_closing() or (
                    not transport.get_write_buffer_size() and self._direct is None):
                return
            await asyncio.sleep(0.01)

    def _must_move(self, user: str) -> bool:
        ownership = self.ctx.ownership
        session = self.session
        # A deflate stream can only move where the client's input ended with a sync flush (a LOGIN after
        # UNAUTHENTICATE on a compressed connection); elsewhere the session is served here instead.
        zstream = self._zstream
        return (ownership is not None and session is not None and session.user_name is None
                and not ownership.owns(user) and (zstream is None or zstream.at_boundary))

    async def _hand_off(self, user: str, first: bytes, snapshot: bytes | None = None) -> bool:
        """Move this connection to the worker that owns ``user``, with ``first`` (the command that named
        the user, re-serialized) and the unread input. False if the owner cannot take it (then it is
        served here: slower for that user, never wrong, since the store works from any process)."""
        ownership = self.ctx.ownership
        transport = self.transport
        assert ownership is not None and transport is not None
        from imapd.server.handoff import Transfer

        transport.pause_reading()
        self.flush()
        window = None
        if self._zstream is not None:  # (only at a block boundary: see hand_over)
            last, window = self._zstream.export()
            transport.write(last)
        await self._wait_written()
        unread = first + self.proto.take_unread()
        origin = self.session.client_origin if self.session is not None else None
        transfer = Transfer(peer_host=self.peer_host, peer_port=self.peer_port, is_tls=self.is_tls,
                            unread=unread, session=snapshot, origin=origin, compress=window,
                            balancer_tls=self.balancer_tls)
        path = ownership.owner_path(user)
        tls_here = transport.get_extra_info("sslcontext") is not None
        try:
            if tls_here:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    await ownership.channel.send(path, transfer, theirs.fileno())
                finally:
                    theirs.close()
                await self._become_relay(ours)
            else:
                sock = transport.get_extra_info("socket")
                await ownership.channel.send(path, transfer, sock.fileno())
                self._closing = True
                transport.close()  # our copy only: the connection lives on in the owner
            self.ctx.metrics.inc("imapd_handoffs_total")
        except OSError as exc:
            log.warning("serving %s here: cannot hand the connection from %s to %s: %s", user, self.peer_host,
                        path.name, exc)
            if len(unread) > len(first):
                self.proto.receive_data(unread[len(first):])
            if not self._closing:
                transport.resume_reading()
            return False
        return True

    async def hand_over(self) -> bool:
        """A reload: once no command of ours is running, move the session to the new generation."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(5.0, self.ctx.settings.server.shutdown_grace)
        while not self._closing and (self._task is not None or self._resume is not None
                                     or (self.session is not None and self.session.pending_sasl is not None)
                                     or (self._zstream is not None and not self._zstream.at_boundary)):
            if loop.time() > deadline:
                log.warning("reload: a command from %s is still running; closing it", self.peer_host)
                self.write_bytes(b"* BYE [UNAVAILABLE] Server restarting\r\n")
                self.close()
                return False
            await asyncio.sleep(0.01)
        session, transport = self.session, self.transport
        if self._closing or session is None or transport is None:
            return False
        transport.pause_reading()
        user = session.user_name
        if user is None:  # before login: any worker of the new generation may have it
            ownership = self.ctx.ownership
            assert ownership is not None
            key = f"{self.peer_host}:{self.peer_port}"
            return await self._hand_off(key, b"")
        from imapd.session.handover import detach, encode_snapshot

        snap: list[bytes] = []

        async def take() -> None:
            snap.append(encode_snapshot(detach(session)))

        await self.ctx.lanes.run(user, "HANDOVER", take())
        return await self._hand_off(user, b"", snap[0])

    async def _become_relay(self, sock: socket.socket) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.flush()
        _, peer = await loop.connect_accepted_socket(lambda: RelayPeer(self), sock=sock)
        self.relay = peer
        self.session = None  # the session lives in the owner now
        self.transport.resume_reading()

    async def _resume_session(self, snapshot: SessionSnapshot) -> None:
        from imapd.session.handover import resume

        session = self.session
        assert session is not None
        await self._on_lane(snapshot.user, "RESUME", resume(session, snapshot))

    async def _on_lane(self, user: str, what: str, coro: Any) -> None:
        async def job() -> None:
            self._in_lane_command = True
            try:
                await coro
            finally:
                self._in_lane_command = False
                self._post_lane_out()

        self.ctx.metrics.inc("imapd_lane_jobs_total")
        await self.ctx.lanes.run(user, what, job())

    async def _on_session_lane(self, what: str, fn: Any) -> None:
        """Run a session method where the session's state lives: its user's lane once authenticated."""
        session = self.session
        assert session is not None
        user = session.user_name
        if user is None:
            fn()
            return

        async def call() -> None:
            fn()

        await self._on_lane(user, what, call())

    def _pump(self) -> None:
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            if self._resume is not None:
                snapshot, self._resume = self._resume, None
                await self._resume_session(snapshot)
            while not self._closing:
                event = self.proto.next_event()
                if event is NEED_DATA or not await self._handle(event):
                    break
                if self._paused_reading and self.proto.pending_bytes <= self.ctx.settings.limits.max_line:
                    self._resume_input()
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
                self._resume_input()

    async def _handle(self, event: object) -> bool:
        """Act on one parser event; False when this connection stops here (closed, or moved away)."""
        session = self.session
        assert session is not None
        if isinstance(event, CommandReceived):
            return await self._command(session, event.command)
        if isinstance(event, ContinuationRequest):
            self.write_bytes(b"+ " + event.text.encode("utf-8", "replace") + b"\r\n")
        elif isinstance(event, IdleDone):
            await self._on_session_lane("DONE", session.idle_done)
        elif isinstance(event, SaslResponse):
            return await self._sasl(session, event)
        elif isinstance(event, ProtocolError):
            await self._on_session_lane("BAD", functools.partial(session.protocol_error, event))
        elif isinstance(event, ConnectionClosed):
            self.close()
            return False
        return True

    async def _command(self, session: Session, command: c.Command) -> bool:
        self.last_activity = time.monotonic()
        user = self._lane_user(command)
        if (user is not None and self._must_move(user)
                and await self._hand_off(user, write_command(command, utf8=self.proto.utf8))):
            return False
        if user is None or (session.user_name is not None and self.ctx.lanes.lane_of(user) is None
                            and dispatch.in_memory(session, command)):
            # Nothing of the user's runs on a lane now, and these commands touch only memory: answer here.
            self._inline = user is not None
            if self._inline:
                self.ctx.metrics.inc("imapd_inline_commands_total")
            try:
                await dispatch.execute(session, command)
            finally:
                self._inline = False
        else:
            await self._on_lane(user, type(command).__name__.upper(), dispatch.execute(session, command))
        self.flush()
        return True

    async def _sasl(self, session: Session, event: SaslResponse) -> bool:
        user = session.user_name or _plain_authcid(event.data)
        if user is not None and session.pending_sasl is not None and self._must_move(user):
            # Move with the exchange re-written in its SASL-IR form: the owner answers it.
            again = c.Authenticate(session.pending_sasl, "PLAIN", initial_response=event.data)
            if await self._hand_off(user, write_command(again)):
                return False
        if user is None:
            await dispatch.continue_sasl(session, event)
        else:
            await self._on_lane(user, "AUTHENTICATE", dispatch.continue_sasl(session, event))
        return True


_LANE_BATCH = 256 * 1024
"""Output a lane command produced is handed to the loop in pieces of about this size: each hand-over
wakes the loop, which then contends with the lane for the GIL."""
_DIRECT_HIGH = 1 << 20
"""drain() waits while more than this many octets of files (and bytes behind them) are queued ..."""
_DIRECT_LOW = 256 * 1024
"""... until the queue is down to this."""


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Until the socket ``fd`` (a duplicate: the loop watches the original for its transport) can take more."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


async def send_file(loop: asyncio.AbstractEventLoop, fd: int, file: MessageFile) -> bool:
    """Send exactly ``file.size`` octets of ``file`` to the non-blocking socket ``fd``: what its literal
    announced. False when the file shrank since it was opened (rewritten in place: not a Maildir habit):
    the rest is then padded with spaces so the length promised holds, and the caller closes the
    connection, so the client never takes that FETCH for complete."""
    offset = 0
    while offset < file.size:
        try:
            sent = os.sendfile(fd, file.fd, offset, file.size - offset)
        except BlockingIOError:
            await _writable(loop, fd)
            continue
        if sent == 0:
            await _send_all(loop, fd, b" " * (file.size - offset))
            return False
        offset += sent
    return True


async def _send_all(loop: asyncio.AbstractEventLoop, fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await _writable(loop, fd)


def _plain_authcid(data: bytes) -> str | None:
    """The authentication identity of a SASL PLAIN response (RFC 4616), to find the user's lane."""
    parts = data.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        return None
    return parts[1].decode("utf-8", "replace")


class RelayPeer(asyncio.Protocol):
    """The far end of a TLS client's decrypted stream: bytes between it and the worker serving the session."""

    __slots__ = ("client", "transport")

    def __init__(self, client: IMAPConnection) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=256 * 1024, low=64 * 1024)

    def data_received(self, data: bytes) -> None:
        client = self.client.transport
        if client is not None and not client.is_closing():
            client.write(data)

    def eof_received(self) -> bool | None:
        client = self.client.transport
        if client is not None:
            client.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        client = self.client.transport
        if client is not None and not client.is_closing():
            client.close()

    def pause_writing(self) -> None:
        if self.client.transport is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client.transport is not None and not self.client.transport.is_closing():
            self.client.transport.resume_reading()

    # -- called by the client side ----------------------------------------------------------------------
    def forward(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def client_eof(self) -> None:
        if self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()

    def client_lost(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
