"""Backend loss and drain."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imapd.proxy.server import ProxyServer
    from imapd.proxy.session import ProxySession


class Recovery:
    def __init__(self, server: ProxyServer) -> None:
        self.server = server

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def backend_lost(self, session: ProxySession) -> None:
        session.bye("Backend connection lost")
