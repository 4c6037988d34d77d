"""Listeners, the registry of live connections, and the per-address/per-user admission limits."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
import time
from collections import Counter
from typing import TYPE_CHECKING

from imapd.server.connection import IMAPConnection

if TYPE_CHECKING:
    from imapd.session.context import ServerContext

log = logging.getLogger(__name__)

__all__ = ["ConnectionRegistry", "parse_hostport", "start_listeners"]


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address {text!r}: expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class ConnectionRegistry:
    """Every live connection, so shutdown can say BYE and the sweeper can autologout idle clients."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.connections: set[IMAPConnection] = set()
        self.per_address: Counter[str] = Counter()

    def admit(self, conn: IMAPConnection) -> bool:
        limit = self.ctx.settings.limits.max_connections_per_address
        if self.per_address[conn.peer_host] >= limit:
            return False
        self.per_address[conn.peer_host] += 1
        self.connections.add(conn)
        self.ctx.metrics.set("imapd_connections", len(self.connections))
        return True

    def discard(self, conn: IMAPConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.per_address[conn.peer_host] -= 1
            if self.per_address[conn.peer_host] <= 0:
                del self.per_address[conn.peer_host]
            self.ctx.metrics.set("imapd_connections", len(self.connections))

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

    def relaying(self) -> int:
        return sum(1 for conn in self.connections if conn.relay is not None)

    async def hand_off_sessions(self) -> int:
        """Move every session served here to the new generation (a reload); returns how many moved."""
        moved = await asyncio.gather(*(conn.hand_over() for conn in list(self.connections)
                                       if conn.relay is None))
        return sum(moved)


async def start_listeners(
    ctx: ServerContext, registry: ConnectionRegistry, tls_context: ssl.SSLContext | None,
    sockets: list[tuple[socket.socket, bool]] | None = None,
) -> list[asyncio.Server]:
    """Bind the configured listeners, or serve ``sockets`` ((socket, implicit TLS)) bound by a supervisor."""
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
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


def make_tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from exc
    return context
