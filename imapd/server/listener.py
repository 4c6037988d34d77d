"""Listeners, the registry of live connections, and the per-address/per-user admission limits."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from imapd.server.connection import IMAPConnection
from imapd.server.proxy_gate import GatedListener, TrustedPeers

if TYPE_CHECKING:
    from imapd.protocol.proxyproto import ProxyHeader
    from imapd.session.context import ServerContext

log = logging.getLogger(__name__)

__all__ = ["ConnectionRegistry", "bind_tcp", "parse_hostport", "start_listeners"]


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address {text!r}: expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def bind_tcp(address: str, *, backlog: int = 4096, what: str = "") -> socket.socket:
    """A listening, inheritable TCP socket on ``HOST:PORT`` (bound once by a supervisor, accepted on by its
    workers); the error names the address and what it was for."""
    host, port = parse_hostport(address)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen{' for ' + what if what else ''} on {address}: "
                                 f"{exc.strerror}") from exc
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class ConnectionRegistry:
    """Every live connection, so shutdown can say BYE and the sweeper can autologout idle clients.

    ``limits.max_connections_per_address`` holds for the whole server, not per worker: a worker tells
    the others its count for an address each time that count crosses a multiple of :attr:`step` (up or
    down), and admits a new connection against its own count plus what the others last said. An address
    with a few connections costs no packet; the others' figures lag by less than ``step`` each.
    """

    REPORT_TTL = 10.0
    """A peer's count not refreshed for this long is forgotten (a worker killed mid-count)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.connections: set[IMAPConnection] = set()
        self.per_address: Counter[str] = Counter()
        # Other workers' last reports: address -> {slot: (count, when)}.
        self.remote: dict[str, dict[int, tuple[int, float]]] = {}
        # Set by a worker process: ``share(address, count)`` tells the other workers.
        self.share: Callable[[str, int], None] | None = None
        self.step = 1
        self._uncounted: set[IMAPConnection] = set()

    def set_peers(self, workers: int, share: Callable[[str, int], None]) -> None:
        limit = self.ctx.settings.limits.max_connections_per_address
        self.step = max(1, limit // (8 * max(1, workers)))  # others' error: under 1/8 of the limit
        self.share = share

    def _remote_count(self, address: str) -> int:
        reports = self.remote.get(address)
        if not reports:
            return 0
        now = time.monotonic()
        for slot, (_, when) in list(reports.items()):
            if now - when > self.REPORT_TTL:
                del reports[slot]
        if not reports:
            del self.remote[address]
        return sum(count for count, _ in reports.values())

    def peer_count(self, address: str, slot: int, count: int) -> None:
        """A peer worker's report (:class:`imapd.rendezvous.ConnectionCount`)."""
        if count <= 0:
            reports = self.remote.get(address)
            if reports is not None:
                reports.pop(slot, None)
                if not reports:
                    del self.remote[address]
            return
        self.remote.setdefault(address, {})[slot] = (count, time.monotonic())

    def _report(self, address: str) -> None:
        count = self.per_address[address]
        if self.share is not None and count % self.step == 0:
            self.share(address, count)

    def admit(self, conn: IMAPConnection, *, enforce: bool = True, count: bool = True) -> bool:
        """Count ``conn``; False (not counted) if its address is at the limit. A connection handed over
        by another worker is not refused (it was admitted where it arrived); a TLS stream relayed by
        another worker is not counted here (the relaying worker counts the client's connection)."""
        limit = self.ctx.settings.limits.max_connections_per_address
        address = conn.peer_host
        if enforce and self.per_address[address] + self._remote_count(address) >= limit:
            return False
        self.connections.add(conn)
        self.ctx.metrics.set("imapd_connections", len(self.connections))
        if not count:
            self._uncounted.add(conn)
            return True
        self.per_address[address] += 1
        self._report(address)
        return True

    def discard(self, conn: IMAPConnection) -> None:
        if conn in self._uncounted:
            self._uncounted.discard(conn)
            self.connections.discard(conn)
            self.ctx.metrics.set("imapd_connections", len(self.connections))
        elif conn in self.connections:
            self.connections.discard(conn)
            address = conn.peer_host
            self.per_address[address] -= 1
            self._report(address)
            if self.per_address[address] <= 0:
                del self.per_address[address]
            self.ctx.metrics.set("imapd_connections", len(self.connections))

    def report_all(self) -> None:
        """Refresh the others' view of our addresses with many connections (so theirs do not expire):
        called every second."""
        if self.share is None:
            return
        for address, count in self.per_address.items():
            if count >= self.step:
                self.share(address, count - count % self.step)

    def sweep(self) -> None:
        """Autologout: RFC 3501 5.4 asks for at least 30 minutes of inactivity; pre-auth gets less."""
        now = time.monotonic()
        limits = self.ctx.settings.limits
        for conn in list(self.connections):
            if conn.relay is not None:
                continue  # a TLS stream relayed for a session served elsewhere: that process times it out
            session = conn.session
            authed = session is not None and session.authenticated
            limit = limits.idle_timeout if authed else limits.preauth_timeout
            if now - conn.last_activity > limit:
                conn.write_bytes(b"* BYE Autologout; idle for too long\r\n")
                conn.close()

    def say_bye(self, text: str) -> None:
        for conn in list(self.connections):
            if conn.relay is not None:
                continue  # the serving process says BYE through the relay; it closes when that ends
            conn.write_bytes(b"* BYE " + text.encode() + b"\r\n")
            conn.close()

    def bye_user(self, user: str, text: str) -> int:
        """``* BYE`` to every session of ``user`` served here (a kick, a lease lost); how many."""
        told = 0
        for conn in list(self.connections):
            session = conn.session
            if conn.relay is not None or session is None or session.user_name != user:
                continue
            conn.write_bytes(b"* BYE " + text.encode() + b"\r\n")
            conn.close()
            told += 1
        if told:
            log.info("closed %d session(s) of %s: %s", told, user, text)
        return told

    def relaying(self) -> int:
        return sum(1 for conn in self.connections if conn.relay is not None)

    async def hand_off_sessions(self) -> int:
        """Move every session served here to the new generation (a reload); returns how many moved."""
        moved = await asyncio.gather(*(conn.hand_over() for conn in list(self.connections)
                                       if conn.relay is None))
        return sum(moved)


Listening = asyncio.Server | GatedListener
"""A listener of ours: asyncio's, or one that reads PROXY headers first (``server.proxy_protocol_from``)."""


async def start_listeners(
    ctx: ServerContext, registry: ConnectionRegistry, tls_context: ssl.SSLContext | None,
    sockets: list[tuple[socket.socket, bool]] | None = None,
) -> list[Listening]:
    """Bind the configured listeners, or serve ``sockets`` ((socket, implicit TLS)) bound by a supervisor."""
    loop = asyncio.get_running_loop()
    servers: list[Listening] = []
    trusted = TrustedPeers(ctx.settings.server.proxy_protocol_from)
    if trusted:
        if sockets is None:
            sockets = [(_bind_here(addr, "server.listen"), False) for addr in ctx.settings.server.listen]
            sockets += [(_bind_here(addr, "server.tls_listen"), True) for addr in ctx.settings.server.tls_listen]
        for sock, tls in sockets:
            if tls and tls_context is None:
                raise ValueError("an implicit-TLS listener needs tls.cert and tls.key")
            servers.append(_gated(ctx, registry, sock, trusted, tls_context if tls else None))
        return servers
    if sockets is not None:
        for sock, tls in sockets:
            if tls and tls_context is None:
                raise ValueError("an implicit-TLS listener needs tls.cert and tls.key")
            servers.append(await loop.create_server(
                functools.partial(IMAPConnection, ctx, registry, implicit_tls=tls), sock=sock,
                ssl=tls_context if tls else None, backlog=4096))
        return servers
    for addr in ctx.settings.server.listen:
        host, port = parse_hostport(addr)
        servers.append(
            await loop.create_server(
                lambda: IMAPConnection(ctx, registry, implicit_tls=False), host, port, reuse_address=True,
                backlog=4096,
            )
        )
    for addr in ctx.settings.server.tls_listen:
        if tls_context is None:
            raise ValueError(f"tls_listen {addr} needs tls.cert and tls.key")
        host, port = parse_hostport(addr)
        servers.append(
            await loop.create_server(
                lambda: IMAPConnection(ctx, registry, implicit_tls=True), host, port, ssl=tls_context,
                reuse_address=True, backlog=4096,
            )
        )
    return servers


def _bind_here(address: str, what: str) -> socket.socket:
    sock = bind_tcp(address, what=what)
    sock.set_inheritable(False)  # (bind_tcp's sockets are for workers; this one stays in this process)
    return sock


def _gated(ctx: ServerContext, registry: ConnectionRegistry, sock: socket.socket, trusted: TrustedPeers,
           tls_context: ssl.SSLContext | None) -> GatedListener:
    implicit_tls = tls_context is not None

    def attach(header: ProxyHeader | None) -> asyncio.Protocol:
        return IMAPConnection(ctx, registry, implicit_tls=implicit_tls, proxied=header)

    return GatedListener(sock, trusted, attach, tls=tls_context, timeout=ctx.settings.server.proxy_header_timeout)


def make_tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from exc
    return context
