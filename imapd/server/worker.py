"""One worker process of a multi-worker server: its place among its peers, and its entry point.

The supervisor (``imapd/server/supervisor.py``) starts each worker as ``python -m imapd _worker`` with the
listening sockets inherited and a :class:`WorkerSpec` in the environment. Every worker accepts
connections and does what needs no user (greeting, CAPABILITY, ID, STARTTLS); the first command that
names a user (LOGIN, AUTHENTICATE, X-STATE RESTORE) moves the connection to the worker that owns that user
(:func:`imapd.server.handoff.owner_slot`), which then serves it: the user's mailboxes, warm cache,
change feed and credential cache live in one process.

Signals: SIGTERM stops (BYE to every client), SIGHUP reloads keys and TLS certificates, SIGUSR2 hands every
session to the next generation of workers and exits once nothing is left to relay.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import msgspec

from imapd.config import Settings
from imapd.rendezvous import Generation, owner_slot, read_generation, socket_path
from imapd.server.handoff import HandoffChannel, Transfer

log = logging.getLogger("imapd.worker")

__all__ = ["Ownership", "WorkerSpec", "run_worker"]

SPEC_ENV = "IMAPD_WORKER_SPEC"


class ListenerSpec(msgspec.Struct, frozen=True):
    fd: int
    tls: bool


class WorkerSpec(msgspec.Struct, frozen=True, kw_only=True):
    slot: int
    generation: int
    workers: int
    run_dir: str
    ready_fd: int
    listeners: list[ListenerSpec]
    settings: Settings
    managesieve_fd: int = -1  # the supervisor's managesieve.listen socket, or none
    lmtp_fd: int = -1
    """The LMTP listener the supervisor bound (``lmtp.listen``), or -1."""


class Ownership:
    """Where this worker stands: which users it owns and how to reach the owner of the others."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.slot = spec.slot
        self.generation = spec.generation
        self.started_generation = spec.generation  # (generation is the one handed to, after a reload)
        self.workers = spec.workers
        self.run_dir = Path(spec.run_dir)
        self.channel = HandoffChannel(socket_path(self.run_dir, self.generation, self.slot), self._receive)
        self.on_transfer: Callable[[Transfer, socket.socket], None] | None = None  # set by the server
        self.retiring = False

    def owner(self, user: str) -> int:
        return owner_slot(user, self.workers)

    def owns(self, user: str) -> bool:
        return self.retiring is False and self.owner(user) == self.slot

    def owner_path(self, user: str) -> Path:
        return socket_path(self.run_dir, self.generation, self.owner(user))

    def retarget(self, gen: Generation) -> None:
        """Hand off to ``gen`` from now on (a reload): this worker owns nobody any more."""
        self.generation = gen.generation
        self.workers = gen.workers
        self.retiring = True

    def _receive(self, transfer: Transfer, client: socket.socket) -> None:
        callback = self.on_transfer
        if callback is None:
            client.close()
            return
        callback(transfer, client)


def run_worker() -> int:
    """Entry point of ``python -m imapd _worker`` (started by the supervisor only)."""
    raw = os.environ.pop(SPEC_ENV, None)
    if raw is None:
        print("imapd _worker is started by `imapd serve`; it is not meant to be run by hand")
        return 64
    spec = msgspec.json.decode(raw, type=WorkerSpec)
    _die_with_parent()
    import sys

    sys.setswitchinterval(spec.settings.server.gil_switch_interval)  # see imapd.server.main.run_server
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s %(name)s[w{spec.slot}]: %(message)s")
    if spec.settings.server.use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(_serve_worker(spec))
    return asyncio.run(_serve_worker(spec))


def _die_with_parent() -> None:
    """A supervisor killed with SIGKILL must not leave its workers serving on (Linux prctl)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the supervisor was already gone before prctl took effect
        os._exit(0)


async def _serve_worker(spec: WorkerSpec) -> int:
    from imapd.server.main import ServerHandle

    sockets = [(socket.socket(fileno=ls.fd), ls.tls) for ls in spec.listeners]
    ownership = Ownership(spec)
    handle = ServerHandle(spec.settings, ownership=ownership)
    managesieve = socket.socket(fileno=spec.managesieve_fd) if spec.managesieve_fd >= 0 else None
    lmtp = socket.socket(fileno=spec.lmtp_fd) if spec.lmtp_fd >= 0 else None
    await handle.start(sockets=sockets, managesieve_socket=managesieve, lmtp_socket=lmtp)
    stop = asyncio.Event()
    handed_off = asyncio.Event()
    retiring: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # Ctrl-C reaches the supervisor, which stops us
    loop.add_signal_handler(signal.SIGHUP, handle.reload)

    def retire() -> None:
        gen = read_generation(ownership.run_dir)
        if gen is None or gen.generation <= spec.generation:
            log.error("SIGUSR2 without a newer generation in %s; ignored", ownership.run_dir)
            return
        ownership.retarget(gen)
        retiring.append(loop.create_task(_retire(handle, handed_off)))

    loop.add_signal_handler(signal.SIGUSR2, retire)
    os.write(spec.ready_fd, b"R")
    os.close(spec.ready_fd)
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(handed_off.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()
    if stop.is_set():
        await handle.stop()
    else:
        await handle.finish()
    return 0


async def _retire(handle: object, done: asyncio.Event) -> None:
    from imapd.server.main import ServerHandle

    assert isinstance(handle, ServerHandle)
    try:
        await handle.hand_off_all()
    finally:
        done.set()
