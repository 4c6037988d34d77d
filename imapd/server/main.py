"""Process entry point for ``imapd serve``: event loop, listeners, signals, clean shutdown."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import socket
import ssl
import sys
from typing import TYPE_CHECKING, Any

from imapd.config import Settings
from imapd.rendezvous import AuthEvent, ConnectionCount, Generation, run_dir, socket_path, write_generation
from imapd.server.handoff import HandoffChannel
from imapd.server.listener import ConnectionRegistry, Listening, make_tls_context, start_listeners

if TYPE_CHECKING:
    from imapd.server.handoff import Transfer
    from imapd.server.lmtp import LMTPService
    from imapd.server.worker import Ownership

log = logging.getLogger("imapd")

__all__ = ["ServerHandle", "run_server", "start_server"]


class ServerHandle:
    """A running server inside the current event loop (used by ``serve`` and by tests)."""

    def __init__(self, settings: Settings, *, ownership: Ownership | None = None) -> None:
        from imapd.session.context import ServerContext

        self.settings = settings
        self.ctx = ServerContext(settings)
        self.ctx.ownership = ownership
        self.registry = ConnectionRegistry(self.ctx)
        self.ctx.registry = self.registry
        self.servers: list[Listening] = []
        self._background: list[asyncio.Task[None]] = []
        self._metrics_runner: Any = None
        self._notices: HandoffChannel | None = None
        self.managesieve: Any = None  # a ManageSieveServer when managesieve.listen is set
        self.lmtp: LMTPService | None = None
        self._lmtp_file: Any = None  # run/lmtp, written by a single process (a supervisor writes its own)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for server in self.servers:
            for sock in server.sockets:
                name = sock.getsockname()
                out.append((str(name[0]), int(name[1])))
        return out

    async def start(self, sockets: list[tuple[socket.socket, bool]] | None = None,
                    managesieve_socket: socket.socket | None = None,
                    lmtp_socket: socket.socket | None = None) -> None:
        """Listen on ``settings.server.listen``/``tls_listen``, ``lmtp.listen`` and ``managesieve.listen``,
        or on ``sockets``, ``lmtp_socket`` and ``managesieve_socket`` (bound by a supervisor)."""
        tls_context: ssl.SSLContext | None = None
        tls = self.settings.tls
        if tls.cert and tls.key:
            tls_context = make_tls_context(tls.cert, tls.key)
        self.ctx.tls_context = tls_context
        if self.settings.lmtp.listen:
            import imapd.server.lmtp  # noqa: F401  - aiosmtpd and email: before the stall monitor runs
        await self.ctx.start()
        if self.settings.cluster.redis_url:
            await self._start_cluster()
        ownership = self.ctx.ownership
        if ownership is not None:  # before accepting: a peer may hand us a connection at once
            ownership.on_transfer = self._adopt
            ownership.channel.on_changed = self._changed
            ownership.channel.on_auth = lambda event: self.ctx.throttle.apply(event.address, event.user,
                                                                              event.failed)
            loop = asyncio.get_running_loop()

            def share(address: str, user: str | None, failed: bool) -> None:  # any thread
                loop.call_soon_threadsafe(self._share_auth, AuthEvent(address, user, failed))

            self.ctx.throttle.share = share
            ownership.channel.on_count = lambda n: self.registry.peer_count(n.address, n.slot, n.count)
            self.registry.set_peers(ownership.workers, lambda address, count: self._tell_peers(
                ConnectionCount(address, ownership.slot, count)))
            ownership.channel.open()
        else:
            self._notices = self._open_notices()
        self.servers = await start_listeners(self.ctx, self.registry, tls_context, sockets=sockets)
        cluster = self.ctx.cluster
        if cluster is not None and not self.settings.cluster.advertise and self.addresses:
            host, port = self.addresses[0]
            cluster.advertise = f"{host}:{port}"  # the bound port (listen may say 0)
        if managesieve_socket is not None or (sockets is None and self.settings.managesieve.listen):
            from imapd.server.managesieve import ManageSieveServer

            self.managesieve = ManageSieveServer(self.ctx)
            await self.managesieve.start(managesieve_socket)
        await self._start_lmtp(lmtp_socket if ownership is not None else None)
        self._background.append(asyncio.create_task(self._sweeper()))
        if ownership is not None:
            self._background.append(asyncio.create_task(self._publisher()))
        if self.settings.metrics.listen and ownership is None:  # workers: the supervisor serves them
            from imapd.server.metrics_http import start_metrics_server

            self._metrics_runner = await start_metrics_server(self.ctx.metrics, self.settings.metrics.listen)

    async def _start_cluster(self) -> None:
        """Join the cluster (``[cluster]``): leases guard every index write, commits are published, and
        other nodes' changes, kicks and lost leases reach this process's sessions."""
        from imapd.cluster.node import ClusterNode

        node = ClusterNode(self.settings, self.ctx.metrics)
        ctx = self.ctx
        # A warm mailbox (no session) keeps its user here for cluster.release_after, but not while the node
        # is drained: the proxies are moving the sessions away and the other node must get the lease now
        # (a later claim here re-reads the index anyway: on_claimed).
        node.busy_users = lambda: set(ctx.user_sessions) | (
            set() if node.draining else {m.user for m in ctx.store.open_mailboxes()})
        if ctx.ownership is not None:
            node.releases = ctx.ownership.owns
        node.on_change = lambda message: self._changed(message.user, rescan_new=message.kind == "delivery")
        # What another node wrote meanwhile (the index), and files other nodes left alone in new/ while the
        # user was not ours (or while Redis was down, unannounced: also called after a reconnect): a claim
        # is rare, so list new/ too.
        node.on_claimed = lambda user: self._changed(user, rescan_new=True)
        node.on_kick = lambda user: self.registry.bye_user(user, "Session closed by the administrator")
        node.on_lost = lambda user: self.registry.bye_user(
            user, "[UNAVAILABLE] This mailbox is now served by another server; please reconnect")
        ctx.store.write_guard = node.check_writable
        ctx.store.feed.on_commit = node.publish
        ctx.throttle.cluster = node.count_login
        ctx.cluster = node
        await node.start()

    async def _start_lmtp(self, sock: socket.socket | None) -> None:
        """The LMTP listener: the supervisor's socket in a worker, else ``lmtp.listen`` bound here."""
        if not self.settings.lmtp.listen:
            return
        from imapd.delivery.command import LMTP_ADDRESS_FILE
        from imapd.server.lmtp import LMTPService, bind_lmtp, lmtp_address_text

        if sock is None:
            if self.ctx.ownership is not None:
                return
            sock = bind_lmtp(self.settings.lmtp.listen)
            directory = run_dir(self.settings.data_path)
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lmtp_file = directory / LMTP_ADDRESS_FILE
            self._lmtp_file.write_text(lmtp_address_text(sock) + "\n")
        self.lmtp = LMTPService(self.ctx)
        await self.lmtp.start(sock)

    async def _stop_lmtp(self, grace: float) -> None:
        lmtp = self.lmtp
        if lmtp is None:
            return
        lmtp.close()
        await lmtp.drain(grace)
        await asyncio.to_thread(lmtp.stop)  # closes the delivery-only store's indexes
        self.lmtp = None
        if self._lmtp_file is not None:
            import contextlib
            import os

            with contextlib.suppress(OSError):
                self._lmtp_file.unlink()
            if "/" in self.settings.lmtp.listen:
                with contextlib.suppress(OSError):
                    os.unlink(self.settings.lmtp.listen)

    async def _sweeper(self) -> None:
        while True:
            limits = self.settings.limits
            await asyncio.sleep(max(0.2, min(30.0, limits.preauth_timeout / 2, limits.idle_timeout / 2,
                                             self.settings.cache.ttl / 4 or 30.0)))
            self.registry.sweep()
            self.ctx.sweep()
            if self.lmtp is not None:
                self.lmtp.sweep()

    async def _publisher(self) -> None:
        ownership = self.ctx.ownership
        assert ownership is not None
        while not ownership.retiring:
            await asyncio.sleep(1.0)
            self.registry.report_all()
            if not ownership.retiring:
                await asyncio.to_thread(self._write_worker_state)

    def _write_worker_state(self) -> None:
        """For ``imapd stats --users``: who this worker serves. (Its metrics reach the supervisor through
        prometheus_client's files, ``imapd/metrics.py``.)"""
        import json
        import os

        ownership = self.ctx.ownership
        assert ownership is not None
        self.ctx.metrics.set("imapd_users", len(self.ctx.user_sessions))
        path = ownership.run_dir / f"users-g{ownership.started_generation}-w{ownership.slot}.users"
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(dict(self.ctx.user_sessions), sort_keys=True))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc)

    def reload(self) -> None:
        """SIGHUP: re-read the X-STATE keys and the TLS certificate; connections keep what they have."""
        self.ctx.reload_keys()
        tls = self.settings.tls
        context = self.ctx.tls_context
        if context is None or not (tls.cert and tls.key):
            return
        try:
            make_tls_context(tls.cert, tls.key)  # check the new pair before touching the live context
            # Listeners and STARTTLS share this context: new handshakes get the new certificate, and
            # established connections keep theirs.
            context.load_cert_chain(tls.cert, tls.key)
        except (ValueError, OSError, ssl.SSLError) as exc:
            log.error("keeping the old TLS certificate: %s", exc)
            return
        log.info("reloaded the TLS certificate from %s", tls.cert)

    def _open_notices(self) -> HandoffChannel | None:
        """A single process is generation 0, slot 0: ``imapd deliver`` and the admin commands find it
        there (``imapd/rendezvous.py``). Nothing is handed to it, so a transfer is refused."""
        directory = run_dir(self.settings.data_path)
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            channel = HandoffChannel(socket_path(directory, 0, 0), lambda _t, sock: sock.close(), self._changed)
            channel.open()
            write_generation(directory, Generation(0, 1))
        except OSError as exc:
            log.warning("no change notices from other processes (%s): the watcher finds their writes", exc)
            return None
        return channel

    def _share_auth(self, event: AuthEvent) -> None:
        """Tell the other workers of a login outcome: an address's failures count against all users."""
        self._tell_peers(event)

    def _tell_peers(self, event: AuthEvent | ConnectionCount) -> None:
        ownership = self.ctx.ownership
        assert ownership is not None
        for slot in range(ownership.workers):
            if slot != ownership.slot or ownership.retiring:
                path = socket_path(ownership.run_dir, ownership.generation, slot)
                if not ownership.channel.send_notice(path, event):
                    log.debug("could not tell worker %d of %s", slot, event)

    def _changed(self, user: str, *, rescan_new: bool = False) -> None:
        """Another process changed ``user``'s mail: re-read the user's open mailboxes, on its lane, then tell
        whoever watches the user's other mailboxes (NOTIFY) to look again.

        The senders (another worker's LMTP, ``imapd deliver``, another node that served the user) write
        through the index, so reading the index's changes is enough; a Maildir reconcile here (a write
        transaction, and a listing of cur/ to verify the mtime the writer left) cost the owner ~1 ms a
        delivery, more with the folder's size. ``rescan_new``: another host put a file alone into new/ (a
        cluster delivery for a user owned here; its inotify events never reach us), so new/ is listed
        whatever its mtime."""
        for mailbox in self.ctx.store.open_mailboxes():
            if mailbox.user == user and not mailbox.deleted:
                if rescan_new:
                    job = functools.partial(mailbox.sync_names, set(), True)
                    self.ctx.lanes.submit(user, "sync after a delivery notice", job)
                else:
                    self.ctx.lanes.submit(user, "catch up after a change notice", mailbox.catch_up)
        feed = self.ctx.store.feed
        self.ctx.lanes.submit(user, "notify after a change notice", lambda: feed.publish_user_touched(user))

    def _adopt(self, transfer: Transfer, client: socket.socket) -> None:
        """A connection handed over by another worker: serve it from where it stands."""
        from imapd.server.connection import IMAPConnection

        async def adopt() -> None:
            loop = asyncio.get_running_loop()
            try:
                await loop.connect_accepted_socket(
                    lambda: IMAPConnection(self.ctx, self.registry, implicit_tls=transfer.is_tls,
                                           adopted=transfer), sock=client)
            except OSError as exc:
                log.warning("could not take over the connection from %s: %s", transfer.peer_host, exc)
                client.close()

        asyncio.get_running_loop().create_task(adopt())

    async def hand_off_all(self) -> None:
        """SIGUSR2 (a reload): stop accepting, hand every session to the new generation, then wait until
        the TLS streams this process still relays are closed."""
        for server in self.servers:
            server.close()
        if self.managesieve is not None:  # its sessions hold nothing to hand over: BYE, the client reconnects
            await self.managesieve.stop()
        if self.lmtp is not None:
            self.lmtp.close()  # deliveries in progress finish in finish(); the new generation accepts
        loop = asyncio.get_running_loop()
        started = loop.time()
        moved = await self.registry.hand_off_sessions()
        log.info("handed %d session(s) to the new generation in %.2f s; %d relayed TLS stream(s) remain",
                 moved, loop.time() - started, self.registry.relaying())
        while self.registry.connections:
            await asyncio.sleep(0.2)

    async def finish(self) -> None:
        """Exit after a hand-over: nothing is left to say BYE to."""
        for task in self._background:
            task.cancel()
        if self.ctx.cluster is not None:  # the new generation goes on with this node's leases
            await self.ctx.cluster.stop(release=False)
        ownership = self.ctx.ownership
        if ownership is not None:
            ownership.channel.close()
        await self._stop_lmtp(self.settings.server.shutdown_grace)
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        await self.ctx.stop()

    async def stop(self) -> None:
        ownership = self.ctx.ownership
        if ownership is not None:
            ownership.channel.close()
        if self._notices is not None:
            self._notices.close()
            self._notices = None
        for server in self.servers:
            server.close()
        if self.managesieve is not None:
            await self.managesieve.stop()
        if self.lmtp is not None:
            self.lmtp.close()
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
        await self._stop_lmtp(max(0.5, deadline - asyncio.get_running_loop().time()))
        if self.ctx.cluster is not None:
            await self.ctx.cluster.stop(release=True)
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
    loop.add_signal_handler(signal.SIGHUP, handle.reload)
    if handle.managesieve is not None and handle.managesieve.address is not None:
        log.info("managesieve listening on %s:%d", *handle.managesieve.address)
    addrs = ", ".join(f"{h}:{p}" for h, p in handle.addresses)
    log.info("imapd ready on %s (data dir %s)", addrs, settings.server.data_dir)
    await stop.wait()
    log.info("imapd stopping")
    await handle.stop()
    return 0


def run_server(settings: Settings, reload_settings: Any = None) -> int:
    """``imapd serve``: one process for ``server.workers = 1``, else a supervisor and its workers."""
    # lanes share the GIL with the network loop: let it back in quickly
    sys.setswitchinterval(settings.server.gil_switch_interval)
    if settings.server.workers != 1:
        from imapd.server.supervisor import run_supervisor

        return run_supervisor(settings, reload_settings)
    if settings.server.use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(_serve(settings))
    return asyncio.run(_serve(settings))
