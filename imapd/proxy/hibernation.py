"""Hibernated sessions: a client socket and a token, no backend connection, no asyncio objects.

A session quiet for ``proxy.hibernate_after`` seconds (:func:`imapd.proxy.moves.may_detach`) is detached
(:func:`imapd.proxy.moves.detach`). For a plain TCP client the proxy then keeps a :class:`Sleeper`: the
socket's file descriptor (a duplicate; the transport, protocol, parser and tracker are dropped), watched
with ``loop.add_reader``, the token, the user, the client's IDLE tag and the selected mailbox's name, and,
with Redis, a subscription to ``{prefix}changes:{user}``. A TLS client keeps its transport (the TLS state
lives there) and only loses its backend connection.

It wakes on the client's next bytes (any state) or, in IDLE, on a change to its mailbox (Redis): a new
session object adopts the socket, RESTOREs the token on the user's backend now (between commands with
``PENDING``: the catch-up stays in the backend session for the client's next commands), passes the
catch-up on in IDLE, enters IDLE again, and relays the bytes that woke it. ``kind: "kick"`` ends it with BYE. Without
Redis nothing would wake an IDLE session on new mail, so only sessions between commands hibernate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from imapd.proxy.backend_link import BackendClosed
from imapd.proxy.backends import NoBackend
from imapd.proxy.moves import DetachFailed, NotQuiet, detach, may_detach, reattach
from statecodec import TokenError
from statecodec import decode as decode_token

if TYPE_CHECKING:
    from imapd.proxy.server import ProxyServer
    from imapd.proxy.session import ProxySession

log = logging.getLogger(__name__)

__all__ = ["Hibernation", "Sleeper"]

WAKES_ON_CHANGE = 256
"""Change-woken sessions restoring at once, per proxy. A delivery to every user (or a failover) wakes
thousands together; all in flight at once, each advances in lockstep with the others and the first is
told no sooner than the last, while the backends thrash. Bounded, they are told in order, as fast in
total. A session whose client spoke does not wait for this."""


class Sleeper:
    """One hibernated plain-TCP session: what it takes to resume it, nothing more (~0.5 KB with its token)."""

    __slots__ = ("client", "fd", "idle_tag", "local", "mailbox", "secure", "token", "user")

    def __init__(self, fd: int, user: str, token: str, idle_tag: str | None, mailbox: str | None,
                 client: tuple[str, int], local: tuple[str, int], secure: bool) -> None:
        self.fd = fd
        self.user = user
        self.token = token
        self.idle_tag = idle_tag
        self.mailbox = mailbox
        self.client = client
        self.local = local
        self.secure = secure


class Hibernation:
    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.after = server.settings.proxy.hibernate_after
        self.sleepers: dict[int, Sleeper] = {}
        self.tls_sleepers: set[ProxySession] = set()
        self._by_user: dict[str, set[int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._busy: set[ProxySession] = set()
        self._change_wakes = asyncio.Semaphore(WAKES_ON_CHANGE)
        self.wakes = 0

    def __len__(self) -> int:
        return len(self.sleepers) + len(self.tls_sleepers)

    # -- the sweep ---------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.after > 0:
            self._task = self.server.loop.create_task(self._sweep())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _sweep(self) -> None:
        idle_ok = self.server.coordination.enabled
        interval = max(0.05, min(1.0, self.after / 4))
        while True:
            await asyncio.sleep(interval)
            now = self.server.loop.time()
            for session in list(self.server.sessions):
                if (session.phase_relay and now - session.last_activity >= self.after and session not in self._busy
                        and may_detach(session) and (idle_ok or not session.tracker.idling)):
                    self._busy.add(session)
                    self.server.loop.create_task(self._hibernate(session))

    async def _hibernate(self, session: ProxySession) -> None:
        try:
            session.enter_detach()
            idle_tag = session.tracker.client_idle_tag()
            try:
                token = await detach(session)
            except NotQuiet:  # updates pending: stay attached, try again after another quiet spell
                if not session.closed:
                    session.start_relay()
                return
            except DetachFailed as exc:
                log.info("cannot hibernate the session of %s: %s", session.user, exc)
                session.bye("Backend unavailable, please reconnect")
                return
            if session.closed:
                return
            if session.pending:
                await self.resume(session, token, idle_tag)  # the client spoke meanwhile
                return
            self._put(session, token, idle_tag)
        finally:
            self._busy.discard(session)

    def _put(self, session: ProxySession, token: str, idle_tag: str | None) -> None:
        user = session.user
        assert user is not None
        transport = session.transport
        mailbox = _mailbox_of(self.server, token)  # the token knows, whatever the tracker saw
        if transport is None or transport.get_extra_info("sslcontext") is not None:
            session.hibernated(token, idle_tag, mailbox)  # TLS: the transport stays, the backend goes
            self.tls_sleepers.add(session)
            self._subscribe(user, session.on_change)
            return
        sock = transport.get_extra_info("socket")
        fd = os.dup(sock.fileno())
        session.detach_transport()
        transport.abort()  # closes the transport's descriptor; ours keeps the connection
        sleeper = Sleeper(fd, user, token, idle_tag, mailbox, session.client, session.local, session.secure)
        log.debug("hibernated a session of %s (%s)", user, "in IDLE" if idle_tag else "between commands")
        self.sleepers[fd] = sleeper
        self._by_user.setdefault(user, set()).add(fd)
        self.server.loop.add_reader(fd, self._readable, fd)
        self._subscribe(user, self._on_change)

    def _subscribe(self, user: str, listener: Any) -> None:
        if self.server.coordination.enabled:
            self.server.loop.create_task(self.server.coordination.subscribe(user, listener))

    def _unsubscribe(self, user: str, listener: Any) -> None:
        if self.server.coordination.enabled:
            self.server.loop.create_task(self.server.coordination.unsubscribe(user, listener))

    # -- waking ------------------------------------------------------------------------------------------
    def _readable(self, fd: int) -> None:
        probe = socket.socket(fileno=fd)
        try:
            peek = probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            peek = b""
        finally:
            probe.detach()
        if not peek:  # the client went away while asleep: no backend for that
            sleeper = self._take(fd)
            if sleeper is not None:
                os.close(fd)
                self.server.release(sleeper.client[0])
            return
        self._wake_fd(fd)

    def _on_change(self, change: dict[str, Any]) -> None:
        user = str(change.get("user", ""))
        for fd in list(self._by_user.get(user, ())):
            sleeper = self.sleepers.get(fd)
            if sleeper is None:
                continue
            if change.get("kind") == "kick":
                self._kick(sleeper)
            elif sleeper.idle_tag is not None and change.get("mailbox") in (None, sleeper.mailbox):
                self._wake_fd(fd, on_change=True)

    def _take(self, fd: int) -> Sleeper | None:
        sleeper = self.sleepers.pop(fd, None)
        if sleeper is None:
            return None
        self.server.loop.remove_reader(fd)
        fds = self._by_user.get(sleeper.user)
        if fds is not None:
            fds.discard(fd)
            if not fds:
                del self._by_user[sleeper.user]
                self._unsubscribe(sleeper.user, self._on_change)
        return sleeper

    def _kick(self, sleeper: Sleeper) -> None:
        self._take(sleeper.fd)
        self.server.release(sleeper.client[0])
        with contextlib.suppress(OSError):
            os.write(sleeper.fd, b"* BYE [UNAVAILABLE] Session ended by the administrator\r\n")
        os.close(sleeper.fd)

    def _wake_fd(self, fd: int, *, on_change: bool = False) -> None:
        sleeper = self._take(fd)
        if sleeper is not None:
            self.wakes += 1
            self.server.loop.create_task(self._wake_after_change(sleeper) if on_change else self._wake(sleeper))

    async def _wake_after_change(self, sleeper: Sleeper) -> None:
        async with self._change_wakes:
            await self._wake(sleeper)

    async def _wake(self, sleeper: Sleeper) -> None:
        from imapd.proxy.session import ProxySession

        session = ProxySession.resumed(self.server, sleeper)
        sock = socket.socket(fileno=sleeper.fd)
        try:
            await self.server.loop.connect_accepted_socket(lambda: session, sock)
        except OSError as exc:
            log.info("hibernated session of %s is gone: %s", sleeper.user, exc)
            sock.close()
            self.server.release(sleeper.client[0])
            return
        await self.resume(session, sleeper.token, sleeper.idle_tag)

    def wake_soon(self, session: ProxySession) -> None:
        """A hibernated TLS session's client spoke (or a change came for it)."""
        if session in self.tls_sleepers:
            self.tls_sleepers.discard(session)
            assert session.user is not None
            self._unsubscribe(session.user, session.on_change)
            self.wakes += 1
            token, idle_tag = session.token, session.sleep_idle_tag
            assert token is not None
            session.enter_wake()
            self.server.loop.create_task(self.resume(session, token, idle_tag))

    async def resume(self, session: ProxySession, token: str, idle_tag: str | None) -> None:
        log.debug("waking a session of %s (%s)", session.user, "in IDLE" if idle_tag else "between commands")
        try:
            await reattach(session, token, idle_tag=idle_tag)
        except (NoBackend, BackendClosed, DetachFailed) as exc:
            log.warning("cannot wake the session of %s: %s", session.user, exc)
            session.bye("Backend unavailable, please reconnect")
            return
        session.start_relay()

    def forget(self, session: ProxySession) -> None:
        """A hibernated TLS client went away."""
        if session in self.tls_sleepers:
            self.tls_sleepers.discard(session)
            if session.user is not None:
                self._unsubscribe(session.user, session.on_change)

    def close_all(self) -> None:
        for fd in list(self.sleepers):
            sleeper = self._take(fd)
            if sleeper is not None:
                with contextlib.suppress(OSError):
                    os.write(fd, b"* BYE [UNAVAILABLE] Proxy shutting down\r\n")
                os.close(fd)
        for session in list(self.tls_sleepers):
            session.bye("Proxy shutting down")
        self.tls_sleepers.clear()


def _mailbox_of(server: ProxyServer, token: str) -> str | None:
    """The selected mailbox a token records (we signed it; read it to filter change notices)."""
    xs = server.settings.xstate
    try:
        state = decode_token(token, server.credentials.keys, max_age=xs.max_age, clock_skew=xs.clock_skew)
    except TokenError:
        return None
    return state.mailbox.name if state.mailbox is not None else None
