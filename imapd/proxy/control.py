"""The proxy's admin socket (``proxy.control``): ``imapd proxy backends [list|drain ID|undrain ID]``.

One JSON request line, one JSON answer line, over a UNIX socket only the proxy's user can open (mode
0600). With Redis the drained set is shared (``{prefix}drained``), so draining on one proxy drains on all
of them within a health interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imapd.proxy.server import ProxyServer

log = logging.getLogger(__name__)

__all__ = ["ControlServer", "request"]


class ControlServer:
    def __init__(self, server: ProxyServer, path: Path) -> None:
        self.server = server
        self.path = path
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path))
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            try:
                answer = await self.handle(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                answer = {"ok": False, "error": str(exc)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        pool = self.server.pool
        action = req.get("action", "list")
        if action in ("drain", "undrain"):
            node = str(req["node"])
            if node not in pool.backends:
                return {"ok": False, "error": f"no backend {node!r} (known: {', '.join(pool.backends)})"}
            await pool.drain(node, action == "drain")
            log.info("backend %s %sed by the control socket", node, action)
        elif action != "list":
            return {"ok": False, "error": f"unknown action {action!r}"}
        counts: dict[str, int] = {}
        for session in self.server.sessions:
            if session.backend is not None and session.link is not None:
                counts[session.backend.node] = counts.get(session.backend.node, 0) + 1
        backends = pool.listing()
        for row in backends:
            row["sessions"] = counts.get(str(row["node"]), 0)
            row["pooled"] = self.server.links.idle(str(row["node"]))
            row["pool_taken"] = self.server.links.taken.get(str(row["node"]), 0)
            row["pool_opened"] = self.server.links.opened.get(str(row["node"]), 0)
        return {"ok": True, "backends": backends, "hibernated": len(self.server.hibernation)}


def request(path: Path, req: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One request to a running proxy's control socket (the CLI side)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(req).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer
