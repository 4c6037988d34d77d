"""A local HTTP endpoint serving the metrics in Prometheus' text format (``metrics.listen``)."""

from __future__ import annotations

from aiohttp import web

from imapd.metrics import Metrics
from imapd.server.listener import parse_hostport

__all__ = ["start_metrics_server"]


async def start_metrics_server(metrics: Metrics, listen: str) -> web.AppRunner:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = parse_hostport(listen)
    await web.TCPSite(runner, host, port).start()
    return runner
