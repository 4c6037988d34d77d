"""Backend loss and drain: sessions move to another backend from their last state.

- **Loss** (the backend connection closes under a relaying session): a session that is quiet (in IDLE, or
  between commands) and whose token is fresh (taken at IDLE entry, at login or at
  the last re-attach, with no command since) is restored on another backend and, in IDLE, put back into
  IDLE: the client notices nothing. Any other session (a command in flight, or a state the token no longer
  describes) gets one ``* BYE [UNAVAILABLE]`` and is closed: nothing worse, never a wrong answer.
- **Drain** (``imapd proxy backends drain ID``, or a health check that fails): quiet sessions on that
  backend are moved at once (SAVE there, RESTORE elsewhere; :func:`imapd.proxy.moves.move`), the others as
  soon as they are quiet. Hibernated sessions need nothing: they wake on whatever backend is right then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from imapd.proxy.backend_link import BackendClosed
from imapd.proxy.backends import NoBackend
from imapd.proxy.moves import DetachFailed, may_detach, move, reattach

if TYPE_CHECKING:
    from imapd.proxy.server import ProxyServer
    from imapd.proxy.session import ProxySession

log = logging.getLogger(__name__)

__all__ = ["Recovery"]


class Recovery:
    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self._task: asyncio.Task[None] | None = None
        self._moving: set[ProxySession] = set()
        self.restored = 0
        self.byes = 0

    def start(self) -> None:
        self._task = self.server.loop.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- loss ----------------------------------------------------------------------------------------------
    def backend_lost(self, session: ProxySession) -> None:
        t = session.tracker
        dead = session.backend.node if session.backend is not None else None
        if session.token and session.token_fresh and t.quiet and not session.opaque and not session.saving:
            session.enter_wake()
            self.server.loop.create_task(self._restore(session, session.token, t.client_idle_tag(), dead))
            return
        self.byes += 1
        log.info("backend %s lost under a session of %s with %s; BYE", dead, session.user,
                 "a command in flight" if t.in_flight and not t.idling else "no current token")
        session.bye("Backend lost, please reconnect")

    async def _restore(self, session: ProxySession, token: str, idle_tag: str | None, dead: str | None) -> None:
        try:
            await reattach(session, token, idle_tag=idle_tag, exclude=dead)
        except (NoBackend, BackendClosed, DetachFailed) as exc:
            self.byes += 1
            log.warning("cannot restore the session of %s after losing %s: %s", session.user, dead, exc)
            session.bye("Backend lost, please reconnect")
            return
        self.restored += 1
        log.info("session of %s restored on %s after losing %s", session.user,
                 session.backend.node if session.backend else "?", dead)
        session.start_relay()

    # -- drain ---------------------------------------------------------------------------------------------
    async def _watch(self) -> None:
        pool = self.server.pool
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.changed.wait(), timeout=max(0.2, pool.health_interval))
            pool.changed.clear()
            for session in list(self.server.sessions):
                backend = session.backend
                if (backend is None or session.link is None or backend.usable or session in self._moving
                        or not session.phase_relay):
                    continue
                if may_detach(session):
                    self._moving.add(session)
                    self.server.loop.create_task(self._move(session, backend.node))

    async def _move(self, session: ProxySession, node: str) -> None:
        try:
            session.enter_detach()
            if await move(session, exclude=node):
                if session.backend is not None and session.backend.node != node:
                    log.info("session of %s moved off backend %s to %s", session.user, node, session.backend.node)
                session.start_relay()
        finally:
            self._moving.discard(session)
