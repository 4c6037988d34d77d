"""Process entry point for ``imapd serve``: event loop, listeners, signals, clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from typing import Any

from imapd.config import Settings
from imapd.server.listener import ConnectionRegistry, make_tls_context, start_listeners

log = logging.getLogger("imapd")

__all__ = ["ServerHandle", "run_server", "start_server"]


class ServerHandle:
    """A running server inside the current event loop (used by ``serve`` and by tests)."""

    def __init__(self, settings: Settings) -> None:
        from imapd.session.context import ServerContext

        self.settings = settings
        self.ctx = ServerContext(settings)
        self.registry = ConnectionRegistry(self.ctx)
        self.ctx.registry = self.registry
        self.servers: list[asyncio.Server] = []
        self._background: list[asyncio.Task[None]] = []
        self._metrics_runner: Any = None

    @property
    def addresses(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for server in self.servers:
            for sock in server.sockets:
                name = sock.getsockname()
                out.append((str(name[0]), int(name[1])))
        return out

    async def start(self) -> None:
        tls_context: ssl.SSLContext | None = None
        tls = self.settings.tls
        if tls.cert and tls.key:
            tls_context = make_tls_context(tls.cert, tls.key)
        self.ctx.tls_context = tls_context
        await self.ctx.start()
        self.servers = await start_listeners(self.ctx, self.registry, tls_context)
        self._background.append(asyncio.create_task(self._sweeper()))
        if self.settings.metrics.listen:
            from imapd.server.metrics_http import start_metrics_server

            self._metrics_runner = await start_metrics_server(self.ctx.metrics, self.settings.metrics.listen)

    async def _sweeper(self) -> None:
        while True:
            limits = self.settings.limits
            await asyncio.sleep(max(0.2, min(30.0, limits.preauth_timeout / 2, limits.idle_timeout / 2,
                                             self.settings.cache.ttl / 4 or 30.0)))
            self.registry.sweep()
            self.ctx.sweep()

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        self.registry.say_bye("Server shutting down")
        for task in self._background:
            task.cancel()
        deadline = asyncio.get_running_loop().time() + self.settings.server.shutdown_grace
        while self.registry.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.registry.connections):
            conn.abort()
        for server in self.servers:
            await server.wait_closed()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        await self.ctx.stop()


async def start_server(settings: Settings) -> ServerHandle:
    handle = ServerHandle(settings)
    await handle.start()
    return handle


async def _serve(settings: Settings) -> int:
    handle = await start_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, handle.ctx.reload_keys)
    addrs = ", ".join(f"{h}:{p}" for h, p in handle.addresses)
    log.info("imapd ready on %s (data dir %s)", addrs, settings.server.data_dir)
    await stop.wait()
    log.info("imapd stopping")
    await handle.stop()
    return 0


def run_server(settings: Settings) -> int:
    if settings.server.use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(_serve(settings))
    return asyncio.run(_serve(settings))
