"""Listeners, the registry of live connections, and the per-address/per-user admission limits."""

from __future__ import annotations

import asyncio
import logging
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
            session = conn.session
            authed = session is not None and session.authenticated
            limit = limits.idle_timeout if authed else limits.preauth_timeout
            if now - conn.last_activity > limit:
                conn.write_bytes(b"* BYE Autologout; idle for too long\r\n")
                conn.close()

    def say_bye(self, text: str) -> None:
        for conn in list(self.connections):
            conn.write_bytes(b"* BYE " + text.encode() + b"\r\n")
            conn.close()


async def start_listeners(
    ctx: ServerContext, registry: ConnectionRegistry, tls_context: ssl.SSLContext | None
) -> list[asyncio.Server]:
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
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
