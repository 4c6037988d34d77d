"""Hibernated sessions: the client socket and a token, no backend connection (filled in below)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imapd.proxy.server import ProxyServer
    from imapd.proxy.session import ProxySession


class Hibernation:
    def __init__(self, server: ProxyServer) -> None:
        self.server = server

    def __len__(self) -> int:
        return 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def close_all(self) -> None:
        pass

    def wake_soon(self, session: ProxySession) -> None:
        pass
