"""A local HTTP endpoint serving the metrics in Prometheus' text format (``metrics.listen``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from imapd.metrics import Metrics
from imapd.server.listener import parse_hostport

__all__ = ["start_metrics_server"]


async def start_metrics_server(metrics: Metrics | Callable[[], str], listen: str) -> web.AppRunner:
    """Serve ``metrics`` (or the text a callable returns, read in a thread) on ``listen``."""

    async def handle(request: web.Request) -> web.Response:
        if isinstance(metrics, Metrics):
            text = metrics.render()
        else:
            text = await asyncio.to_thread(metrics)
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = parse_hostport(listen)
    await web.TCPSite(runner, host, port).start()
    return runner
