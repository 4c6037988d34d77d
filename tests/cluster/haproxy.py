"""A real HAProxy (Debian's ``haproxy``) in TCP mode on loopback, for tests and benches of the cluster.

:func:`start_haproxy` writes a config like ``deploy/haproxy.cfg`` (PROXY v2 to the servers, an IMAP health
check that sends the PROXY header too, IDLE-friendly timeouts), runs ``haproxy -db`` in the foreground, and
waits until every server is UP; :meth:`HAProxy.states` reads the servers' check states from the stats socket.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["HAProxy", "free_port", "haproxy_binary", "haproxy_config", "start_haproxy"]


def haproxy_binary() -> str | None:
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now (HAProxy cannot be asked to pick one and tell it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def haproxy_config(listen: tuple[str, int], servers: Sequence[tuple[str, str, int]], stats: Path, *,
                   check_interval_ms: int = 300, proxy_v2: bool = True, check_send_proxy: bool = True,
                   maxconn: int = 4000) -> str:
    """TCP mode, roundrobin, PROXY v2 to each server, and a health check that is an IMAP exchange:
    ``check-send-proxy`` sends the header first (our backends close a trusted peer that sends none),
    then the greeting must be ``* OK``; the check logs out politely."""
    send = (" send-proxy-v2" if proxy_v2 else "") + (" check-send-proxy" if proxy_v2 and check_send_proxy else "")
    # (HAProxy sends the header on checks anyway when the server has send-proxy-v2 and the check has no
    # "port" of its own; check-send-proxy says so explicitly. To test a check without it, give it a port.)
    lines = [
        "global",
        "    log stdout format raw local0 info",
        f"    stats socket {stats} mode 600 level admin",
        f"    maxconn {maxconn}",  # two descriptors each: keep 2 * maxconn under the file limit (20,000 here)
        "defaults",
        "    mode tcp",
        "    log global",
        "    option tcplog",
        "    timeout connect 2s",
        "    timeout client 30m",   # IDLE: a client may stay silent for 29 minutes (RFC 9051 5.4)
        "    timeout server 30m",
        "    timeout tunnel 1h",
        "    timeout check 2s",
        "frontend imap",
        f"    bind {listen[0]}:{listen[1]}",
        "    default_backend imapd",
        "backend imapd",
        "    balance roundrobin",
        "    option tcp-check",
        '    tcp-check expect string "* OK"',
        '    tcp-check send "a1 LOGOUT\\r\\n"',
        '    tcp-check expect string "a1 OK"',
        f"    default-server inter {check_interval_ms}ms fastinter {check_interval_ms}ms"
        f" downinter {check_interval_ms}ms fall 2 rise 1",
    ]
    for name, host, port in servers:
        no_header = "" if check_send_proxy else f" port {port}"
        lines.append(f"    server {name} {host}:{port}{send} check{no_header}")
    return "\n".join(lines) + "\n"


@dataclass
class HAProxy:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    stats: Path
    config: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def command(self, text: str) -> str:
        """One command on the stats socket (``show stat``, ``disable server imapd/b1``, ...)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats))
            sock.sendall(text.encode() + b"\n")
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
        return out.decode(errors="replace")

    def states(self) -> dict[str, str]:
        """Server name -> status (``UP``, ``DOWN``, ``UP 1/2``, ``MAINT``, ...) of the ``imapd`` backend."""
        rows = self.command("show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        pxname, svname, status = header.index("pxname"), header.index("svname"), header.index("status")
        out = {}
        for row in rows[1:]:
            cols = row.split(",")
            if len(cols) > status and cols[pxname] == "imapd" and cols[svname] not in ("FRONTEND", "BACKEND"):
                out[cols[svname]] = cols[status]
        return out

    def wait_states(self, want: dict[str, str], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = self.states()
            if all(states.get(name) == status for name, status in want.items()):
                return
            time.sleep(0.1)
        raise AssertionError(f"haproxy servers are {states}, expected {want}\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # soft stop: stop listening, let connections end
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_haproxy(directory: Path, servers: Sequence[tuple[str, str, int]], *, host: str = "127.0.0.1",
                  port: int = 0, check_interval_ms: int = 300, check_send_proxy: bool = True,
                  wait_up: bool = True) -> HAProxy:
    """Start HAProxy in front of ``servers`` ((name, host, port)); skips the test if haproxy is missing."""
    binary = haproxy_binary()
    if binary is None:
        pytest.skip("haproxy is not installed (scripts/install-sysdeps.sh installs Debian's package)")
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    stats = directory / "haproxy.sock"
    config = directory / "haproxy.cfg"
    config.write_text(haproxy_config((host, port), servers, stats, check_interval_ms=check_interval_ms,
                                     check_send_proxy=check_send_proxy))
    check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise AssertionError(f"haproxy refuses {config}:\n{check.stdout}{check.stderr}")
    log_path = directory / "haproxy.log"
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child for its lifetime
    proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    ha = HAProxy(proc, host, port, stats, config, log_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"haproxy exited ({proc.returncode}):\n{ha.log()}")
        if stats.exists():
            try:
                ha.command("show info")
                break
            except OSError:
                pass
        time.sleep(0.05)
    else:
        ha.stop()
        raise AssertionError(f"haproxy did not start:\n{ha.log()}")
    if wait_up:
        ha.wait_states({name: "UP" for name, _, _ in servers})
    return ha
