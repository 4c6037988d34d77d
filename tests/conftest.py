"""Shared fixtures: a real ``imapd serve`` process on a loopback port with its own data dir."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

ROOT = Path(__file__).resolve().parent.parent

# Property tests: in `make test` (profile "ci", the default) each draws the same examples on every run, with
# no deadline and no "explain" phase, so a loaded machine cannot fail them by timing and a run is repeatable;
# `HYPOTHESIS_PROFILE=explore` (see `make fuzz-properties`) draws new random examples, many more of them.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, max_examples=2000, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass
class RunningServer:
    host: str
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    users: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def add_user(self, name: str, password: str) -> None:
        imapd_cli("user", "add", name, "--password-stdin", "--data-dir", str(self.data_dir), stdin=password)
        self.users[name] = password


def imapd_cli(*args: str, stdin: str | bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run(
        [sys.executable, "-m", "imapd", *args], input=data, capture_output=True, cwd=ROOT, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"imapd {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return proc


def start_server(data_dir: Path, *extra: str, tls_listen: str | None = None) -> RunningServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    args = [sys.executable, "-m", "imapd", "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
            "-o", "auth.failure_delay=0.05", "-o", "auth.penalty_delay=0.2",
            "-o", f"server.workers={os.environ.get('IMAPD_TEST_WORKERS', '1')}", *extra]
    if tls_listen:
        args += ["--tls-listen", tls_listen]
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child for its lifetime
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 30
    port = None
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        m = re.search(r"ready on 127\.0\.0\.1:(\d+)", text)
        if m:
            port = int(m.group(1))
            break
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{text}")
        time.sleep(0.05)
    if port is None:
        proc.kill()
        raise AssertionError(f"server did not become ready:\n{log_path.read_text(errors='replace')}")
    return RunningServer("127.0.0.1", port, data_dir, proc, log_path)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s: a server or proxy a test started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_server(server: RunningServer) -> None:
    stop_process(server.proc)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server per test module, with users ``alice``/``secret1`` and ``bob``/``secret2``."""
    data_dir = tmp_path_factory.mktemp("imapd") / "data"
    data_dir.mkdir()
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data_dir), stdin="secret1")
    imapd_cli("user", "add", "bob", "--password-stdin", "--data-dir", str(data_dir), stdin="secret2")
    srv = start_server(data_dir)
    srv.users.update(alice="secret1", bob="secret2")
    try:
        yield srv
    finally:
        stop_server(srv)
        if srv.proc.returncode not in (0, -signal.SIGTERM):
            print(srv.log())
