"""Moving a connection to the worker process that owns its user.

Every worker listens on a UNIX ``SOCK_SEQPACKET`` socket in ``<data_dir>/run/``. A transfer is one packet:
a msgpack :class:`Transfer` (who the client is, whether its stream is TLS terminated by the sender, the
bytes already read but not executed) with the connection's file descriptor attached (``SCM_RIGHTS``). A
plaintext client's own TCP socket moves; a TLS client stays terminated where it is and the decrypted
stream moves instead, as one end of a socket pair whose other end the sender relays (as Dovecot's
imap-login does). Packets from a process of another user id are refused (``SO_PEERCRED``).

Which worker owns a user is rendezvous hashing of the user name over the worker slots
(``imapd/rendezvous.py``). A packet without a descriptor is a change notice from another process.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

import msgspec

from imapd.rendezvous import AuthEvent, ConnectionCount, Notice, owner_slot, socket_path

log = logging.getLogger(__name__)

__all__ = ["HandoffChannel", "Transfer", "owner_slot", "socket_path"]  # (the last two re-exported)

MAX_PACKET = 200 * 1024
"""Largest transfer (what fits one packet of a default-sized UNIX socket buffer)."""


class Transfer(msgspec.Struct, frozen=True, kw_only=True):
    peer_host: str
    peer_port: int = 0
    is_tls: bool = False
    """The client's stream is TLS, terminated by the process that relays the attached socket."""
    unread: bytes = b""
    """Client bytes received but not executed: fed to the new owner's parser first."""
    session: bytes | None = None
    """A running session's state (``imapd.session.handover.SessionSnapshot``), None before login."""
    origin: tuple[str, int | None] | None = None
    """Before login: the real client a trusted proxy named with ID (``Session.client_origin``)."""
    compress: bytes | None = None
    """COMPRESS=DEFLATE is active: the client stream's window (``imapd.protocol.compress``), else None."""
    balancer_tls: bool = False
    """A trusted balancer's PROXY header said the client's hop to it is TLS (``IMAPConnection.balancer_tls``)."""


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Transfer)
_NOTICE: msgspec.msgpack.Decoder[Notice] = msgspec.msgpack.Decoder(Notice)


class HandoffChannel:
    """This worker's listening socket plus lazily opened, kept-open connections to its peers."""

    def __init__(self, path: Path, on_transfer: Callable[[Transfer, socket.socket], None],
                 on_changed: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.on_transfer = on_transfer
        self.on_changed = on_changed
        self.on_auth: Callable[[AuthEvent], None] | None = None
        self.on_count: Callable[[ConnectionCount], None] | None = None
        self._listener: socket.socket | None = None
        self._peers: dict[Path, socket.socket] = {}
        # One sender at a time per peer: a full socket buffer is waited for with one writer callback.
        self._sending: dict[Path, asyncio.Lock] = {}
        self._accepted: set[socket.socket] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        sock.listen(256)
        sock.setblocking(False)
        self._listener = sock
        self._loop.add_reader(sock.fileno(), self._accept)

    def close(self) -> None:
        loop = self._loop
        for sock in [*self._accepted, *self._peers.values()]:
            if loop is not None:
                loop.remove_reader(sock.fileno())
            sock.close()
        self._accepted.clear()
        self._peers.clear()
        if self._listener is not None:
            if loop is not None:
                loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    # -- receiving ------------------------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._listener is not None and self._loop is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            if uid != os.getuid():
                log.warning("refused a hand-off connection from uid %d", uid)
                conn.close()
                continue
            conn.setblocking(False)
            self._accepted.add(conn)
            self._loop.add_reader(conn.fileno(), self._receive, conn)

    def _receive(self, conn: socket.socket) -> None:
        assert self._loop is not None
        while True:
            try:
                data, fds, flags, _ = socket.recv_fds(conn, MAX_PACKET + 4096, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds, flags = b"", [], 0
            if not data:
                self._loop.remove_reader(conn.fileno())
                self._accepted.discard(conn)
                conn.close()
                for fd in fds:
                    os.close(fd)
                return
            if not fds and not flags & socket.MSG_TRUNC:
                self._notice(data)
                continue
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(fds) != 1:
                log.error("dropped a malformed hand-off packet (%d bytes, %d fds)", len(data), len(fds))
                for fd in fds:
                    os.close(fd)
                continue
            try:
                transfer = _DECODER.decode(data)
            except msgspec.DecodeError:
                log.error("dropped an undecodable hand-off packet")
                os.close(fds[0])
                continue
            client = socket.socket(fileno=fds[0])
            try:
                self.on_transfer(transfer, client)
            except Exception:
                log.exception("could not take over a connection from %s", transfer.peer_host)
                client.close()

    def _notice(self, data: bytes) -> None:
        try:
            notice = _NOTICE.decode(data)
        except msgspec.DecodeError:
            log.error("dropped an undecodable packet on %s", self.path.name)
            return
        if isinstance(notice, AuthEvent):
            if self.on_auth is not None:
                self.on_auth(notice)
        elif isinstance(notice, ConnectionCount):
            if self.on_count is not None:
                self.on_count(notice)
        elif self.on_changed is not None:
            self.on_changed(notice.user)

    def send_notice(self, path: Path, notice: Notice) -> bool:
        """Send a descriptor-less notice to the worker on ``path`` without waiting; False if it could not
        take it now (gone, or its socket buffer full: a notice is advisory, never worth a stall)."""
        data = _ENCODER.encode(notice)
        for _attempt in (1, 2):
            try:
                sock = self._peer(path)
            except OSError:
                return False
            try:
                sock.send(data)
                return True
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:  # the peer restarted since we connected: reconnect once
                self._peers.pop(path, None)
                sock.close()
        return False

    # -- sending --------------------------------------------------------------------------------------------
    def _peer(self, path: Path) -> socket.socket:
        sock = self._peers.get(path)
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sock.setblocking(False)  # a peer with a full backlog answers EAGAIN: served here, never waited for
            try:
                sock.connect(str(path))
            except OSError:
                sock.close()
                raise
            self._peers[path] = sock
        return sock

    async def send(self, path: Path, transfer: Transfer, fd: int) -> None:
        """Send ``transfer`` with ``fd`` to the worker listening on ``path``; OSError if it cannot take it."""
        data = _ENCODER.encode(transfer)
        if len(data) > MAX_PACKET:
            raise OSError(f"hand-off of {len(data)} bytes is over the {MAX_PACKET}-byte packet limit")
        lock = self._sending.setdefault(path, asyncio.Lock())
        async with lock:
            await self._send(path, data, fd)

    async def _send(self, path: Path, data: bytes, fd: int) -> None:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            try:
                sock = self._peer(path)
            except OSError:
                raise
            try:
                while True:
                    try:
                        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
                        return
                    except (BlockingIOError, InterruptedError):
                        ready = loop.create_future()
                        loop.add_writer(sock.fileno(), ready.set_result, None)
                        try:
                            await ready
                        finally:
                            loop.remove_writer(sock.fileno())
            except OSError:
                # The peer restarted since we connected: reconnect once.
                self._peers.pop(path, None)
                sock.close()
                if attempt == 2:
                    raise
