"""A local HTTP endpoint serving the metrics in Prometheus' text format (``metrics.listen``)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from aiohttp import web

from imapd.metrics import Metrics
from imapd.server.listener import parse_hostport

__all__ = ["merge_worker_metrics", "read_worker_metrics", "start_metrics_server"]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (.*)$")


def merge_worker_metrics(texts: Iterable[tuple[str, str]]) -> str:
    """One exposition from several workers' ``(worker, text)``: each sample gets a ``worker`` label, and
    each family's HELP/TYPE is said once."""
    families: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for worker, text in texts:
        family = ""
        for line in text.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                family = line.split()[2]
                head = families.setdefault(family, [])
                if line not in head:
                    head.append(line)
                continue
            m = _SAMPLE.match(line)
            if not m:
                continue
            name, labels, value = m.groups()
            inner = labels[1:-1] + "," if labels else ""
            samples.setdefault(family or name, []).append(f'{name}{{{inner}worker="{worker}"}} {value}')
    out: list[str] = []
    for family in sorted(set(families) | set(samples)):
        out.extend(families.get(family, ()))
        out.extend(samples.get(family, ()))
    return "\n".join(out) + "\n"


def read_worker_metrics(run_dir: Path, generation: int) -> str:
    """What the workers of ``generation`` last wrote to ``run_dir`` (see ServerHandle's sweeper)."""
    texts = []
    for path in sorted(run_dir.glob(f"metrics-g{generation}-w*.prom")):
        try:
            texts.append((path.stem.rsplit("-w", 1)[1], path.read_text()))
        except OSError:
            continue
    return merge_worker_metrics(texts)


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
