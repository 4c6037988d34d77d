"""``imapd proxy``: the process. Listeners, the backend pool and its health checks, Redis, the control
socket, hibernation; runs in the foreground until SIGTERM/SIGINT (SIGHUP re-reads the X-STATE keys)."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import ssl
from collections import Counter
from pathlib import Path

from imapd.config import Settings
from imapd.protocol.connection import InputBudget, InputLimits, PreauthLimits
from imapd.protocol.proxyproto import ProxyHeader
from imapd.proxy.backends import BackendPool
from imapd.proxy.control import ControlServer
from imapd.proxy.coordination import Coordination
from imapd.proxy.credentials import ProxyCredentials
from imapd.proxy.hibernation import Hibernation
from imapd.proxy.link_pool import LinkPool
from imapd.proxy.recovery import Recovery
from imapd.proxy.session import ProxySession
from imapd.server.listener import bind_tcp, make_tls_context, parse_hostport
from imapd.server.proxy_gate import GatedListener, TrustedPeers

log = logging.getLogger(__name__)

__all__ = ["ProxyServer", "control_path", "run_proxy"]


def control_path(settings: Settings) -> Path:
    if settings.proxy.control:
        return Path(settings.proxy.control)
    first = settings.proxy.listen[0] if settings.proxy.listen else settings.proxy.tls_listen[0]
    return Path(settings.server.data_dir) / "run" / f"proxy-{parse_hostport(first)[1]}.sock"


class ProxyServer:
    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.credentials = ProxyCredentials(settings)
        cluster = settings.cluster
        self.coordination = Coordination(cluster.redis_url, cluster.key_prefix)
        self.pool = BackendPool(settings.proxy.backends, self.coordination,
                                health_interval=settings.proxy.health_interval,
                                proxy_protocol=settings.proxy.forward_address == "proxy-protocol")
        self.links = LinkPool(self.pool, size=settings.proxy.pool_size, max_age=settings.proxy.pool_max_age)
        self.pool.on_unusable.append(self.links.drop)
        self.sessions: set[ProxySession] = set()
        self.per_address: Counter[str] = Counter()
        """Client connections per (real) address, hibernated ones included."""
        self.hibernation = Hibernation(self)
        self.recovery = Recovery(self)
        limits = settings.limits
        self.preauth_limits = PreauthLimits(
            InputLimits.preauth(min(limits.preauth_max_line, limits.max_line),
                                min(limits.preauth_max_literal, limits.max_literal)),
            limits.preauth_max_buffer, InputBudget(limits.preauth_max_total_buffer))
        self.tls_context: ssl.SSLContext | None = None
        if settings.tls.cert and settings.tls.key:
            self.tls_context = make_tls_context(settings.tls.cert, settings.tls.key)
        self.control = ControlServer(self, control_path(settings))
        self._servers: list[asyncio.Server | GatedListener] = []

    def admit(self, address: str) -> bool:
        if self.per_address[address] >= self.settings.limits.max_connections_per_address:
            return False
        self.per_address[address] += 1
        return True

    def release(self, address: str) -> None:
        self.per_address[address] -= 1
        if self.per_address[address] <= 0:
            del self.per_address[address]

    async def start(self) -> list[str]:
        await self.coordination.start()
        await self.pool.check_all()
        self.pool.start()
        self.links.start()
        self.hibernation.start()
        self.recovery.start()
        await self.control.start()
        bound: list[str] = []
        trusted = TrustedPeers(self.settings.proxy.proxy_protocol_from)
        for address, tls in [(a, False) for a in self.settings.proxy.listen] + \
                            [(a, True) for a in self.settings.proxy.tls_listen]:
            if tls and self.tls_context is None:
                raise ValueError("proxy.tls_listen needs tls.cert and tls.key")
            sock = bind_tcp(address, what="proxy")
            context = self.tls_context if tls else None
            server: asyncio.Server | GatedListener
            if trusted:  # a balancer's PROXY header is read first, before any TLS handshake
                server = GatedListener(sock, trusted, functools.partial(self._proxied_session, tls), tls=context,
                                       timeout=self.settings.server.proxy_header_timeout)
            else:
                server = await self.loop.create_server(lambda tls=tls: ProxySession(self, implicit_tls=tls),
                                                       sock=sock, ssl=context)
            self._servers.append(server)
            host, port = sock.getsockname()[:2]
            bound.append(f"{'imaps' if tls else 'imap'} {host}:{port}")
        return bound

    def _proxied_session(self, tls: bool, header: ProxyHeader | None) -> ProxySession:
        return ProxySession(self, implicit_tls=tls, proxied=header)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        await self.control.stop()
        await self.pool.stop()
        await self.links.stop()
        await self.hibernation.stop()
        await self.recovery.stop()
        for session in list(self.sessions):
            session.bye("Proxy shutting down")
        self.hibernation.close_all()
        await self.coordination.close()


def run_proxy(settings: Settings) -> int:
    if settings.server.use_uvloop:
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:
            loop = asyncio.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_main(settings, loop))
    finally:
        loop.close()


async def _main(settings: Settings, loop: asyncio.AbstractEventLoop) -> int:
    server = ProxyServer(settings, loop)
    bound = await server.start()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.credentials.reload_keys)
    log.info("imapd proxy ready on %s; backends %s; control %s", ", ".join(bound),
             ", ".join(f"{b.node}={b.address}{'' if b.healthy else ' (down)'}" for b in server.pool.backends.values()),
             server.control.path)
    await stop.wait()
    log.info("imapd proxy stopping")
    await server.stop()
    return 0
