"""The supervisor of a multi-worker server: binds the listeners once, starts and watches the workers.

It does no IMAP itself. A worker that dies is restarted (after 0.1 s, doubling up to 5 s while it keeps
dying young); SIGTERM/SIGINT stop every worker gracefully; SIGHUP is passed on (keys, TLS certificates);
SIGUSR2 (``imapd reload``) starts a new generation of workers with the code and configuration now on disk,
then tells the old ones to hand their sessions over and go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from imapd.config import Settings
from imapd.metrics import MULTIPROC_ENV, prepare_multiprocess_dir, render_multiprocess, worker_exited
from imapd.rendezvous import Generation, write_generation
from imapd.server.listener import bind_tcp
from imapd.server.worker import SPEC_ENV, ListenerSpec, WorkerSpec

log = logging.getLogger("imapd")

__all__ = ["Supervisor", "pid_file", "run_supervisor"]

_MIN_BACKOFF = 0.1
_MAX_BACKOFF = 5.0
_READY_TIMEOUT = 60.0


def pid_file(data_dir: Path) -> Path:
    return data_dir / "run" / "imapd.pid"


class _Worker:
    def __init__(self, slot: int, generation: int, proc: asyncio.subprocess.Process) -> None:
        self.slot = slot
        self.generation = generation
        self.proc = proc
        self.started = time.monotonic()


class Supervisor:
    def __init__(self, settings: Settings, reload_settings: Callable[[], Settings] | None = None) -> None:
        self.settings = settings
        self.reload_settings = reload_settings
        self.run_dir = settings.data_path / "run"
        self.metrics_dir = self.run_dir / "metrics"  # the workers' values (imapd/metrics.py)
        self.workers = settings.server.workers or os.cpu_count() or 1
        self.generation = 0
        self.listeners: list[tuple[socket.socket, bool]] = []
        self.managesieve: socket.socket | None = None  # managesieve.listen, accepted on by every worker
        self.lmtp: socket.socket | None = None
        self.current: dict[int, _Worker] = {}
        self.retiring: set[_Worker] = set()
        self._backoff: dict[int, float] = {}
        self._stopping = False
        self._reloading: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- listeners -----------------------------------------------------------------------------------------
    def bind(self) -> None:
        for addr in self.settings.server.listen:
            self.listeners.append((bind_tcp(addr), False))
        for addr in self.settings.server.tls_listen:
            if not (self.settings.tls.cert and self.settings.tls.key):
                raise ValueError(f"tls_listen {addr} needs tls.cert and tls.key")
            self.listeners.append((bind_tcp(addr), True))
        if self.settings.managesieve.listen:
            self.managesieve = bind_tcp(self.settings.managesieve.listen, what="ManageSieve")
        if self.settings.lmtp.listen:
            from imapd.server.lmtp import bind_lmtp

            self.lmtp = bind_lmtp(self.settings.lmtp.listen)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s, _ in self.listeners]

    # -- workers -------------------------------------------------------------------------------------------
    async def _spawn(self, slot: int, generation: int, workers: int) -> _Worker:
        read_fd, write_fd = os.pipe()
        spec = WorkerSpec(slot=slot, generation=generation, workers=workers, run_dir=str(self.run_dir),
                          ready_fd=write_fd, settings=self.settings,
                          listeners=[ListenerSpec(s.fileno(), tls) for s, tls in self.listeners],
                          managesieve_fd=self.managesieve.fileno() if self.managesieve is not None else -1,
                          lmtp_fd=self.lmtp.fileno() if self.lmtp is not None else -1)
        env = {**os.environ, SPEC_ENV: msgspec.json.encode(spec).decode(), MULTIPROC_ENV: str(self.metrics_dir)}
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "imapd", "_worker", env=env,
                pass_fds=[write_fd, *(s.fileno() for s, _ in self.listeners),
                          *([self.managesieve.fileno()] if self.managesieve is not None else []),
                          *([self.lmtp.fileno()] if self.lmtp is not None else [])])
        finally:
            os.close(write_fd)
        worker = _Worker(slot, generation, proc)
        loop = asyncio.get_running_loop()
        try:
            ready = await asyncio.wait_for(loop.run_in_executor(None, os.read, read_fd, 1), _READY_TIMEOUT)
        finally:
            os.close(read_fd)
        if ready != b"R":
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise RuntimeError(f"worker {slot} (generation {generation}) exited before it was ready "
                               f"(status {proc.returncode})")
        self._task(self._watch(worker))
        return worker

    def _task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, worker: _Worker) -> None:
        status = await worker.proc.wait()
        worker_exited(self.metrics_dir, worker.proc.pid)
        if worker in self.retiring:
            self.retiring.discard(worker)
            log.info("worker %d of generation %d (pid %d) finished its hand-over", worker.slot,
                     worker.generation, worker.proc.pid)
            return
        if self._stopping or self.current.get(worker.slot) is not worker:
            return
        lived = time.monotonic() - worker.started
        delay = _MIN_BACKOFF if lived > 10 else min(_MAX_BACKOFF, self._backoff.get(worker.slot, 0) * 2
                                                     or _MIN_BACKOFF)
        self._backoff[worker.slot] = delay
        log.error("worker %d (pid %d) exited with status %s after %.1f s; restarting it in %.1f s",
                  worker.slot, worker.proc.pid, status, lived, delay)
        await asyncio.sleep(delay)
        if self._stopping or self.current.get(worker.slot) is not worker:
            return
        try:
            self.current[worker.slot] = await self._spawn(worker.slot, self.generation, self.workers)
        except (TimeoutError, OSError, RuntimeError) as exc:
            log.error("could not restart worker %d: %s", worker.slot, exc)
            self._task(self._watch(worker))  # try again, with more backoff
            return
        log.info("worker %d restarted (pid %d)", worker.slot, self.current[worker.slot].proc.pid)

    async def start(self) -> None:
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        prepare_multiprocess_dir(self.run_dir)
        for stale in self.run_dir.glob("g*-w*.sock"):
            with contextlib.suppress(OSError):
                stale.unlink()
        self.generation = 1
        pid_file(self.settings.data_path).write_text(f"{os.getpid()}\n")
        if self.lmtp is not None:  # where `imapd deliver` finds us
            from imapd.delivery.command import LMTP_ADDRESS_FILE
            from imapd.server.lmtp import lmtp_address_text

            (self.run_dir / LMTP_ADDRESS_FILE).write_text(lmtp_address_text(self.lmtp) + "\n")
        write_generation(self.run_dir, Generation(self.generation, self.workers))
        spawned = await asyncio.gather(*(self._spawn(i, 1, self.workers) for i in range(self.workers)))
        self.current = {w.slot: w for w in spawned}

    def signal_all(self, sig: int) -> None:
        for worker in [*self.current.values(), *self.retiring]:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(sig)

    async def reload(self) -> None:
        """Start generation n+1 with what is on disk now, then let generation n hand its sessions over."""
        if self.reload_settings is not None:
            try:
                new = self.reload_settings()
            except Exception as exc:
                log.error("reload refused, keeping the running workers: %s", exc)
                return
            if (new.server.listen, new.server.tls_listen) != (self.settings.server.listen,
                                                              self.settings.server.tls_listen):
                log.warning("reload: listener changes need a restart; keeping the current listeners")
                new.server.listen, new.server.tls_listen = self.settings.server.listen, \
                    self.settings.server.tls_listen
            if new.lmtp.listen != self.settings.lmtp.listen:
                log.warning("reload: a new lmtp.listen needs a restart; keeping %r", self.settings.lmtp.listen)
                new.lmtp.listen = self.settings.lmtp.listen
            self.settings = new
        started = time.monotonic()
        old = list(self.current.values())
        workers = self.settings.server.workers or os.cpu_count() or 1
        generation = self.generation + 1
        try:
            spawned = await asyncio.gather(*(self._spawn(i, generation, workers) for i in range(workers)))
        except (TimeoutError, OSError, RuntimeError) as exc:
            log.error("reload failed, keeping the running workers: %s", exc)
            return
        self.generation, self.workers = generation, workers
        self.current = {w.slot: w for w in spawned}
        self.retiring.update(old)
        write_generation(self.run_dir, Generation(generation, workers))
        for worker in old:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGUSR2)
        log.info("reload: generation %d (%d workers) serving after %.2f s; generation %d is handing over",
                 generation, workers, time.monotonic() - started, generation - 1)

    def request_reload(self) -> None:
        if self._reloading is not None and not self._reloading.done():
            log.warning("reload already in progress")
            return
        self._reloading = asyncio.get_running_loop().create_task(self.reload())

    async def stop(self) -> None:
        self._stopping = True
        self.signal_all(signal.SIGTERM)
        procs = [w.proc for w in [*self.current.values(), *self.retiring]]
        grace = self.settings.server.shutdown_grace + 10
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), grace)
        except TimeoutError:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
        for sock, _ in self.listeners:
            sock.close()
        if self.lmtp is not None:
            self.lmtp.close()
            with contextlib.suppress(OSError):
                (self.run_dir / "lmtp").unlink()
            if "/" in self.settings.lmtp.listen:
                with contextlib.suppress(OSError):
                    os.unlink(self.settings.lmtp.listen)
        with contextlib.suppress(OSError):
            pid_file(self.settings.data_path).unlink()


async def _supervise(settings: Settings, reload_settings: Callable[[], Settings] | None) -> int:
    sup = Supervisor(settings, reload_settings)
    try:
        sup.bind()
    except (OSError, ValueError) as exc:
        log.error("%s", exc)
        return 71
    try:
        await sup.start()
    except (TimeoutError, OSError, RuntimeError) as exc:
        log.error("cannot start the workers: %s", exc)
        await sup.stop()
        return 70
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: sup.signal_all(signal.SIGHUP))
    loop.add_signal_handler(signal.SIGUSR2, sup.request_reload)
    runner = None
    if settings.metrics.listen:
        from imapd.server.metrics_http import start_metrics_server

        try:
            runner = await start_metrics_server(lambda: render_multiprocess(sup.metrics_dir),
                                                settings.metrics.listen)
        except OSError as exc:
            log.error("metrics endpoint %s: %s", settings.metrics.listen, exc)
    if sup.managesieve is not None:
        host, port = sup.managesieve.getsockname()[:2]
        log.info("managesieve listening on %s:%d", host, port)
    addrs = ", ".join(f"{h}:{p}" for h, p in sup.addresses)
    log.info("imapd ready on %s (data dir %s, %d workers, supervisor pid %d)", addrs, settings.server.data_dir,
             sup.workers, os.getpid())
    await stop.wait()
    log.info("imapd stopping")
    await sup.stop()
    if runner is not None:
        await runner.cleanup()
    return 0


def run_supervisor(settings: Settings, reload_settings: Callable[[], Settings] | None = None) -> int:
    if settings.cluster.redis_url:  # every worker renews the node's liveness key as one holder
        import secrets

        from imapd.cluster.node import EPOCH_ENV

        os.environ.setdefault(EPOCH_ENV, secrets.token_hex(8))
    return asyncio.run(_supervise(settings, reload_settings))
