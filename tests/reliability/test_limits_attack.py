"""Hostile clients against a real server: huge literals, slowloris, a reader that never reads, thousands of
idle connections, password and X-STATE guessing. Each gets the documented answer, memory stays bounded and
other clients keep being served quickly. ``IMAPD_SOAK=1`` opens 15,000 idle connections instead of 2,000.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.rawimap import RawIMAP

SOAK = os.environ.get("IMAPD_SOAK") == "1"
IDLE_CONNECTIONS = 15_000 if SOAK else 2_000


def rss_kib(srv: RunningServer) -> int:
    for line in Path(f"/proc/{srv.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def served_quickly(srv: RunningServer, user: str = "eve", limit: float = 1.0) -> float:
    """Seconds for greeting + LOGIN + SELECT + NOOP + LOGOUT on a fresh connection; asserts under ``limit``."""
    t = time.monotonic()
    imap = RawIMAP(srv.host, srv.port, timeout=limit + 5)
    imap.ok(f"LOGIN {user} {srv.users[user]}")
    imap.ok("SELECT INBOX")
    imap.ok("NOOP")
    imap.command("LOGOUT")
    imap.close()
    took = time.monotonic() - t
    assert took < limit, f"a normal client took {took:.2f}s"
    return took


def _greet(srv: RunningServer) -> socket.socket:
    s = socket.create_connection((srv.host, srv.port), timeout=10)
    assert s.recv(4096).startswith(b"* OK")
    return s


def _read_all(s: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything until EOF or ``timeout``; (data, closed)."""
    s.settimeout(0.2)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return out, True
        if not chunk:
            return out, True
        out += chunk
    return out, False


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it
    data = tmp_path_factory.mktemp("attack") / "data"
    data.mkdir()
    for name in ("eve", "big"):
        imapd_cli("user", "add", name, "--password-stdin", "--data-dir", str(data), stdin=f"pw-{name}")
    s = start_server(data, "-o", "limits.preauth_timeout=3", "-o", "limits.max_connections_per_address=20000",
                     "-o", "limits.max_connections_per_user=20000", "-o", "auth.max_failures=3",
                     "-o", "auth.failure_delay=0.05", "-o", "auth.penalty_delay=0.6", "-o", "auth.failure_window=4")
    s.users.update(eve="pw-eve", big="pw-big")
    served_quickly(s, limit=10)  # warm: the first LOGIN pays the password hash
    served_quickly(s, "big", limit=10)
    yield s
    stop_server(s)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("authed", [False, True])
def test_4gb_synchronizing_literal(srv: RunningServer, authed: bool) -> None:
    imap = RawIMAP(srv.host, srv.port)
    if authed:
        imap.ok("LOGIN eve pw-eve")
    before = rss_kib(srv)
    imap.sock.sendall(b"a1 APPEND INBOX {4294967296}\r\n")
    line = imap.readline()
    assert line.startswith(b"a1 ") and b"TOOBIG" in line, line  # no "+" continuation
    imap.ok("NOOP")  # the connection is still in step
    assert rss_kib(srv) - before < 4096
    served_quickly(srv)
    imap.close()


@pytest.mark.parametrize("authed", [False, True])
def test_4gb_nonsynchronizing_literal(srv: RunningServer, authed: bool) -> None:
    imap = RawIMAP(srv.host, srv.port)
    if authed:
        imap.ok("LOGIN eve pw-eve")
    before = rss_kib(srv)
    imap.sock.sendall(b"a1 APPEND INBOX {4294967296+}\r\n" + b"x" * 1_000_000)
    data, closed = _read_all(imap.sock, 5)
    assert b"TOOBIG" in data and closed, data  # documented: far too large is fatal (BYE), not drained
    assert rss_kib(srv) - before < 8192
    served_quickly(srv)
    imap.close()


def test_slowloris(srv: RunningServer) -> None:
    slow = _greet(srv)
    started = time.monotonic()
    latencies = []
    closed = False
    for byte in b"a1 LOGIN eve pw-eve and more and more and more":
        try:
            slow.sendall(bytes([byte]))
        except OSError:
            closed = True
            break
        latencies.append(served_quickly(srv, limit=0.5))
        time.sleep(max(0.0, 1.0 - latencies[-1]))
        if time.monotonic() - started > 12:
            break
    if not closed:
        _, closed = _read_all(slow, 2)
    took = time.monotonic() - started
    assert closed, f"a client dribbling one byte a second was still connected after {took:.1f}s (preauth_timeout=3)"
    assert took < 8, took
    slow.close()


def test_reader_that_never_reads(srv: RunningServer) -> None:
    imap = RawIMAP(srv.host, srv.port, timeout=60)
    imap.ok("LOGIN big pw-big")
    body = (b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 1250)  # ~100 KB (see test_append_200k)
    for _ in range(300):  # ~30 MB
        imap.ok(f"APPEND INBOX {{{len(body)}+}}\r\n".encode() + body)
    imap.ok("SELECT INBOX")
    time.sleep(0.5)
    before = rss_kib(srv)
    hog = socket.create_connection((srv.host, srv.port))
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.sendall(b"h1 LOGIN big pw-big\r\nh2 SELECT INBOX\r\nh3 FETCH 1:* BODY[]\r\n")
    peak = before
    for _ in range(8):
        time.sleep(0.5)
        peak = max(peak, rss_kib(srv))
        served_quickly(srv, limit=1.0)
    grew = peak - before
    print(f"RSS before {before} KiB, peak {peak} KiB while a client does not read a 30 MB FETCH")
    assert grew < 20 * 1024, f"server RSS grew by {grew} KiB for a client that never reads a 30 MB FETCH"
    hog.close()
    imap.close()


def test_many_idle_connections(srv: RunningServer) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = min(IDLE_CONNECTIONS, hard - 200)
    base = rss_kib(srv)
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.create_connection((srv.host, srv.port), timeout=30)
            socks.append(s)
        for s in socks:
            assert s.recv(4096).startswith(b"* OK")
        # a tenth of them log in, select and IDLE
        for s in socks[: n // 10]:
            s.sendall(b"a LOGIN eve pw-eve\r\nb SELECT INBOX\r\nc IDLE\r\n")
        for s in socks[: n // 10]:
            buf = b""
            while b"+ " not in buf:
                chunk = s.recv(65536)
                assert chunk, buf
                buf += chunk
        took = served_quickly(srv, limit=1.0)
        per = (rss_kib(srv) - base) * 1024 / n
        print(f"{n} idle connections: {per:.0f} bytes RSS each; a new client served in {took * 1000:.0f} ms")
    finally:
        for s in socks:
            s.close()


def test_password_and_token_guessing(srv: RunningServer) -> None:
    imap = RawIMAP(srv.host, srv.port, timeout=30)
    delays = []
    for i in range(8):
        t = time.monotonic()
        cmd = "LOGIN eve wrong" if i % 2 == 0 else "X-STATE RESTORE AAAA.BBBB.CCCC"
        _, tagged = imap.command(cmd)
        delays.append(time.monotonic() - t)
        assert b" NO" in tagged[:12], tagged
        if i % 2:
            assert b"X-STATE-INVALID" in tagged, tagged
    print("failure delays:", [round(d, 2) for d in delays])
    assert all(d >= 0.04 for d in delays), delays
    # failures 4..7 within the window pay the penalty (the window is counted from the first failure, so the
    # 8th, past 4 s, may already be back to failure_delay: see docs/reliability.md)
    assert all(d >= 0.55 for d in delays[3:7]), f"no penalty after max_failures=3: {delays}"
    imap.close()
    time.sleep(4.5)  # failure_window=4 (a fresh connection: preauth_timeout=3 closed the old one)
    imap = RawIMAP(srv.host, srv.port, timeout=30)
    t = time.monotonic()
    imap.ok("LOGIN eve pw-eve")
    assert time.monotonic() - t < 0.5
    imap.close()


def test_append_200k(srv: RunningServer) -> None:
    imap = RawIMAP(srv.host, srv.port, timeout=10)
    imap.ok("LOGIN eve pw-eve")
    body = b"Subject: x\r\n\r\n" + b"y" * 200_000
    _, tagged = imap.command(f"APPEND INBOX {{{len(body)}+}}\r\n".encode() + body)
    assert b" OK" in tagged[:12], tagged
    imap.close()
