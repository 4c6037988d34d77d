"""Listeners that honour the PROXY protocol (``server.proxy_protocol_from``): the header is read before the greeting.

A trusted balancer (HAProxy with ``send-proxy-v2``, ``imapd proxy``) writes a PROXY header before anything
else and waits for nothing: the greeting must not go out before the header is read, or the client would be
counted, throttled and logged under the balancer's address. So such a listener accepts by itself
(:class:`GatedListener`), reads the header straight off the accepted socket, byte-exactly (``MSG_PEEK``,
then ``recv`` of the header's own length), and only then gives the socket to the event loop
(``connect_accepted_socket``) with a protocol made for the address the header names, which greets as
usual. Nothing after the header is consumed: on a TLS listener the ClientHello is still in the kernel when
the handshake begins, on a plain one the first command reaches the parser as usual. (A transport cannot be
asked to hold off reading from its first moment: uvloop starts reading right after ``connection_made``.)

A peer outside the trusted networks is never asked for a header: its socket goes to the loop at once, so a
header it sends is just input (a bad command, or a failed TLS handshake).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from functools import lru_cache

from imapd.protocol.proxyproto import V2_MAX, ProxyHeader, ProxyHeaderError, parse

log = logging.getLogger("imapd.proxy_protocol")

__all__ = ["GatedListener", "TrustedPeers"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(specs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


class TrustedPeers:
    """The networks (``server.proxy_protocol_from``) whose connections must begin with a PROXY header."""

    __slots__ = ("networks",)

    def __init__(self, specs: Iterable[str]) -> None:
        self.networks = _networks(tuple(specs))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)  # a v4 peer on a dual-stack socket
        if mapped is not None:
            address = mapped
        return any(address in net for net in self.networks)


Attach = Callable[[ProxyHeader | None], asyncio.Protocol]
"""Makes the connection's protocol once the header is known (None: no header; the socket's peer is the client)."""


class GatedListener:
    """One listening socket accepted on by this process, PROXY header first for trusted peers.

    Quacks like the ``asyncio.Server`` of the other listeners (``sockets``, ``close``, ``wait_closed``).
    """

    def __init__(self, sock: socket.socket, trusted: TrustedPeers, attach: Attach, *,
                 tls: ssl.SSLContext | None = None, timeout: float = 5.0) -> None:
        self.sock = sock
        self.trusted = trusted
        self.attach = attach
        self.tls = tls
        self.timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._pending: set[HeaderReader] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    @property
    def sockets(self) -> list[socket.socket]:
        return [] if self._closed.is_set() else [self.sock]

    def close(self) -> None:
        """Stop accepting (headers being read go on until they are complete or time out)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _accept(self) -> None:
        for _ in range(64):  # then let the loop serve others; the reader fires again for the rest
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # (another worker took it: they all accept on the one socket)
            except OSError as exc:  # EMFILE and friends: logged, the loop goes on
                log.warning("accept on %s failed: %s", _name(self.sock), exc)
                return
            conn.setblocking(False)
            host = str(peer[0]) if peer else ""
            if host in self.trusted:
                reader = HeaderReader(self, conn, f"{host}:{peer[1]}")
                self._pending.add(reader)
            else:
                self.hand_on(conn, None, host)

    def hand_on(self, conn: socket.socket, header: ProxyHeader | None, peer: str) -> None:
        """Give ``conn`` to the loop, served by the protocol made for ``header`` (TLS handshake first if asked)."""
        task = self._loop.create_task(self._connect(conn, header, peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket, header: ProxyHeader | None, peer: str) -> None:
        try:
            await self._loop.connect_accepted_socket(lambda: self.attach(header), sock=conn, ssl=self.tls)
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.debug("connection from %s ended before it started: %s", peer, exc)
            conn.close()

    def done(self, reader: HeaderReader) -> None:
        self._pending.discard(reader)


class HeaderReader:
    """Reads one trusted peer's PROXY header off its socket; then hands the socket on, or closes it."""

    __slots__ = ("_buffer", "_listener", "_sock", "_timer", "peer")

    def __init__(self, listener: GatedListener, sock: socket.socket, peer: str) -> None:
        self._listener = listener
        self._sock: socket.socket | None = sock
        self.peer = peer
        self._buffer = b""
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), self._readable)
        self._timer: asyncio.TimerHandle | None = loop.call_later(listener.timeout, self._too_slow)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            peeked = sock.recv(V2_MAX - len(self._buffer), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            peeked = b""  # (a reset says what an EOF says here)
        except OSError as exc:
            self._refuse(f"reading its PROXY header failed: {exc}")
            return
        if not peeked:
            what = f"after {len(self._buffer)} bytes of its PROXY header" if self._buffer else \
                "without sending a PROXY header"
            self._refuse(f"closed the connection {what}")
            return
        try:
            header = parse(self._buffer + peeked)
        except ProxyHeaderError as exc:
            self._refuse(str(exc))
            return
        try:
            if header is None:
                # Everything so far belongs to the header (none is complete yet): take it off the socket, so
                # the reader is not woken again for the same bytes.
                self._buffer += sock.recv(len(peeked))
                if len(self._buffer) >= V2_MAX:
                    self._refuse(f"PROXY header longer than {V2_MAX} bytes")
                return
            rest = header.length - len(self._buffer)
            got = sock.recv(rest) if rest > 0 else b""
        except OSError as exc:
            self._refuse(f"reading its PROXY header failed: {exc}")
            return
        if len(got) != rest:
            self._refuse("PROXY header cut short")
            return
        self._stop()
        self._listener.hand_on(sock, header, self.peer)

    def _too_slow(self) -> None:
        self._timer = None
        state = f"{len(self._buffer)} bytes of" if self._buffer else "no"
        self._refuse(f"sent {state} PROXY header within {self._listener.timeout:g} s")

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock = None
        self._listener.done(self)

    def _refuse(self, reason: str) -> None:
        """A trusted peer that broke the rule: closed before the greeting, with a line naming it and why."""
        sock = self._sock
        self._stop()
        log.warning("closing connection from %s (server.proxy_protocol_from): %s", self.peer, reason)
        if sock is not None:
            sock.close()


def _name(sock: socket.socket) -> str:
    try:
        host, port = sock.getsockname()[:2]
    except OSError:
        return "a closed socket"
    return f"{host}:{port}"
