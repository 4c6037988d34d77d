"""Cluster fixtures: a real ``redis-server`` on a free loopback port, and real ``imapd serve`` nodes that
share one mail root (and passwd file and X-STATE keys) but have data dirs, ports and node ids of their own.

Reusable by the proxy and deployment tests: ``redis_server`` (a :class:`RedisServer`) and
:func:`start_node`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A private redis-server: no persistence, loopback only, its own directory."""

    directory: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the child's for its lifetime
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--protected-mode", "yes", "--daemonize", "no",
             "--enable-debug-command", "local"],  # DEBUG SLEEP: a Redis that answers late, on purpose
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except Exception:
                if self.proc.poll() is not None:
                    raise AssertionError(f"redis-server exited: {(self.directory / 'redis.log').read_text()}") from None
                time.sleep(0.02)
        raise AssertionError("redis-server did not answer PING")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def client(self) -> object:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, decode_responses=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed (scripts/install-sysdeps.sh installs Debian's redis-server)")
    server = RedisServer(tmp_path / "redis", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class ClusterRoot:
    """What the nodes share: the mail root, the passwd file, the X-STATE keys."""

    path: Path

    @property
    def mail(self) -> Path:
        return self.path / "mail"

    def add_user(self, name: str, password: str) -> None:
        imapd_cli("user", "add", name, "--password-stdin", "--data-dir", str(self.path), stdin=password)


@pytest.fixture
def cluster_root(tmp_path: Path) -> ClusterRoot:
    root = ClusterRoot(tmp_path / "shared")
    root.path.mkdir()
    root.add_user("alice", "secret1")
    root.add_user("bob", "secret2")
    return root


NODE_DEFAULTS = ("-o", "cluster.lease_ttl=1.5", "-o", "cluster.heartbeat_interval=0.3",
                 "-o", "cluster.reassert_grace=0.3", "-o", "cluster.login_wait=1.0",
                 "-o", "store.watch=false")
"""Fast leases; no inotify, so that only the cluster's change messages can tell a node of another's
writes (on NFS, inotify never sees another host's)."""


def start_node(root: ClusterRoot, name: str, redis: RedisServer, *extra: str) -> RunningServer:
    """One backend: its own data dir (run/, logs) whose mail/ and passwd are the shared ones."""
    data_dir = root.path.parent / f"node-{name}"
    data_dir.mkdir(exist_ok=True)
    for entry in ("mail", "passwd"):
        link = data_dir / entry
        if not link.exists():
            link.symlink_to(root.path / entry)
    node = start_server(data_dir, "-o", f"cluster.redis_url={redis.url}", "-o", f"cluster.node_id={name}",
                        "-o", f"xstate.key_file={root.path / 'xstate.keys'}", *NODE_DEFAULTS, *extra)
    node.users.update(alice="secret1", bob="secret2")
    return node


@pytest.fixture
def nodes(cluster_root: ClusterRoot, redis_server: RedisServer) -> Iterator[list[RunningServer]]:
    """Nodes started with :func:`start_node` and appended here are stopped (and resumed, if stopped) at
    the end."""
    started: list[RunningServer] = []
    try:
        yield started
    finally:
        for node in started:
            if node.proc.poll() is None:
                node.proc.send_signal(__import__("signal").SIGCONT)
            stop_server(node)
