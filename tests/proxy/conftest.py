"""A small cluster on loopback: backends (real ``imapd serve``, one process each) on one shared mail root,
a real ``imapd proxy`` in front, and a real ``redis-server`` where a test needs one.

Each backend has a data dir of its own (its ``run/`` directory is per process) whose ``mail``, ``passwd``
and ``xstate.keys`` are symlinks into the shared root, the layout of nodes on shared storage.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from statecodec import KeyRing
from tests.cluster.conftest import RedisServer, redis_server  # noqa: F401 - the fixture, for tests/proxy
from tests.conftest import ROOT, RunningServer, imapd_cli, start_server, stop_process, stop_server

SHARED = ("mail", "passwd", "passwd.generations", "passwd.lock", "xstate.keys")


@dataclass
class RunningProxy:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    control: Path
    args: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def backends(self, *args: str) -> str:
        out = imapd_cli("proxy", *self.args, "backends", *args)
        return out.stdout.decode()


@dataclass
class Cluster:
    root: Path
    backends: dict[str, RunningServer]
    tmp: Path
    started: list[RunningProxy] = field(default_factory=list)

    def add_user(self, name: str, password: str) -> None:
        imapd_cli("user", "add", name, "--password-stdin", "--data-dir", str(self.root), stdin=password)

    def backend_specs(self) -> list[str]:
        return [f"{node}=127.0.0.1:{srv.port}" for node, srv in self.backends.items()]

    def proxy(self, *extra: str, forward: str = "proxy-protocol") -> RunningProxy:
        proxy = start_proxy(self.root, self.backend_specs(), self.tmp, *extra, forward=forward)
        self.started.append(proxy)
        return proxy

    def kill(self, node: str) -> None:
        srv = self.backends[node]
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)


def backend_dir(root: Path, tmp: Path, node: str) -> Path:
    data = tmp / f"backend-{node}"
    data.mkdir()
    (root / "mail").mkdir(exist_ok=True)
    for name in SHARED:
        if not (root / name).exists():
            (root / name).touch()
        os.symlink(root / name, data / name)
    return data


def start_backend(root: Path, tmp: Path, node: str, *extra: str, proxy_protocol: bool = True) -> RunningServer:
    """A backend that takes PROXY headers from loopback (or, without ``proxy_protocol``, honours
    ``ID x-originating-ip`` from it)."""
    trust = ("server.proxy_protocol_from" if proxy_protocol else "auth.trusted_networks") + '=["127.0.0.1"]'
    return start_server(backend_dir(root, tmp, node), "-o", "server.workers=1", "-o", trust, *extra)


def start_proxy(root: Path, backends: list[str], tmp: Path, *extra: str, forward: str = "proxy-protocol") -> RunningProxy:
    n = len(list(tmp.glob("proxy-*.log")))
    log_path = tmp / f"proxy-{n}.log"
    control = tmp / f"proxy-{n}.sock"
    args = ["-o", f"server.data_dir={_toml(str(root))}", "-o", 'proxy.listen=["127.0.0.1:0"]',
            "-o", "proxy.backends=[" + ",".join(_toml(b) for b in backends) + "]",
            "-o", f"proxy.forward_address={_toml(forward)}", "-o", f"proxy.control={_toml(str(control))}",
            "-o", "proxy.health_interval=0.5", "-o", "auth.failure_delay=0.05", "-o", "auth.penalty_delay=0.2",
            *extra]
    log = open(log_path, "wb")  # noqa: SIM115 - the child's for its lifetime
    proc = subprocess.Popen([sys.executable, "-m", "imapd", "proxy", *args], stdout=log, stderr=subprocess.STDOUT,
                            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        m = re.search(r"ready on imap 127\.0\.0\.1:(\d+)", text)
        if m:
            return RunningProxy(int(m.group(1)), proc, log_path, control, args)
        if proc.poll() is not None:
            raise AssertionError(f"proxy exited early:\n{text}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"proxy did not become ready:\n{log_path.read_text(errors='replace')}")


def stop_proxy(proxy: RunningProxy) -> None:
    stop_process(proxy.proc)


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_cluster(tmp: Path, nodes: tuple[str, ...], *backend_extra: str, proxy_protocol: bool = True) -> Cluster:
    root = tmp / "shared"
    root.mkdir()
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(root), stdin="secret1")
    imapd_cli("user", "add", "bob", "--password-stdin", "--data-dir", str(root), stdin="secret2")
    KeyRing.generate().save(root / "xstate.keys")  # before the backends, which would each make their own
    backends = {node: start_backend(root, tmp, node, *backend_extra, proxy_protocol=proxy_protocol)
                for node in nodes}
    return Cluster(root, backends, tmp)


def teardown_cluster(cluster: Cluster) -> None:
    for proxy in cluster.started:
        stop_proxy(proxy)
    for srv in cluster.backends.values():
        stop_server(srv)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two backends (b1, b2) on one shared root with alice/secret1 and bob/secret2; start proxies with
    ``cluster.proxy(...)``."""
    c = make_cluster(tmp_path, ("b1", "b2"))
    try:
        yield c
    finally:
        teardown_cluster(c)


# -- Redis: the cluster tests' fixture (a private redis-server on a free loopback port) -----------------
RunningRedis = RedisServer


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
