"""Input limits before authentication (issue 16, finding 2): small lines and literals, a bounded buffer
per connection and in total, the normal limits once logged in, and memory that stays (and goes back) down."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, start_server, stop_server
from tests.rawimap import RawIMAP, exchange, open_session, read_until_closed


def rss_kib(srv: RunningServer) -> int:
    for line in Path(f"/proc/{srv.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")



@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("preauth") / "data"
    data.mkdir()
    s = start_server(data, "-o", "limits.max_connections_per_address=100")
    s.add_user("pat", "pw-pat")
    yield s
    stop_server(s)


def test_huge_non_synchronizing_literal_before_login_is_refused_at_once(srv: RunningServer) -> None:
    s = open_session(srv.host, srv.port)
    s.sendall(b"a1 LOGIN {50000000+}\r\n")
    assert read_until_closed(s) == b"* BYE [TOOBIG] Literal far too large\r\n"
    s.close()


def test_preauth_literal_and_line_limits_then_normal_limits_after_login(srv: RunningServer) -> None:
    s = open_session(srv.host, srv.port)
    # 8 KiB literals before login: a larger synchronizing one is refused without a continuation.
    assert exchange(s, b"a1 LOGIN {9000}\r\n", b"\r\n") == b"a1 BAD [TOOBIG] Literal too large\r\n"
    assert exchange(s, b"a2 NOOP " + b"x" * 30_000 + b"\r\n", b"\r\n") == b"a2 BAD [TOOBIG] Line too long\r\n"
    # X-STATE RESTORE with a token as long as a token may be (16 KiB) still fits the pre-auth line limit.
    reply = exchange(s, b"a3 X-STATE RESTORE " + b"A" * 16_000 + b"\r\n", b"a3 ")
    assert reply == b"a3 NO [X-STATE-INVALID] Not a state token of this server\r\n"
    reply = exchange(s, b"a4 LOGIN {3}\r\n", b"\r\n")
    assert reply.startswith(b"+ ")
    reply = exchange(s, b"pat {6}\r\n", b"\r\n")
    assert reply.startswith(b"+ ")
    assert exchange(s, b"pw-pat\r\n", b"a4 ").startswith(b"a4 OK [CAPABILITY ")
    # Logged in: the normal limits (max_literal 64 MiB, max_line 64 KiB) apply.
    body = b"Subject: big\r\n\r\n" + b"y" * 20_000 + b"\r\n"
    assert exchange(s, b"a5 APPEND INBOX {%d}\r\n" % len(body), b"\r\n").startswith(b"+ ")
    assert b"a5 OK [APPENDUID " in exchange(s, body + b"\r\n", b"a5 ")
    assert exchange(s, b"a6 NOOP " + b"x" * 30_000 + b"\r\n", b"a6 ") == b"a6 BAD Unexpected extra arguments\r\n"
    s.close()


def test_three_preauth_floods_do_not_grow_memory(srv: RunningServer) -> None:
    before = rss_kib(srv)
    answers: list[bytes] = []
    peak = [before]

    def flood() -> None:
        s = open_session(srv.host, srv.port)
        try:
            s.sendall(b"a1 LOGIN {50000000+}\r\n")
            chunk = b"z" * 65536
            for _ in range(50_000_000 // 65536):  # the literal the client announced, for as long as it can
                s.sendall(chunk)
        except OSError:
            pass  # the server closed the connection
        answers.append(read_until_closed(s))
        s.close()

    threads = [threading.Thread(target=flood) for _ in range(3)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak[0] = max(peak[0], rss_kib(srv))
        time.sleep(0.01)
    for t in threads:
        t.join()
    after = rss_kib(srv)
    print(f"RSS before {before} KiB, peak {peak[0]} KiB, after {after} KiB")
    assert answers == [b"* BYE [TOOBIG] Literal far too large\r\n"] * 3
    assert peak[0] - before < 4096, (before, peak[0])
    assert after - before < 2048, (before, after)


def test_per_connection_buffer_before_login(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = start_server(data, "-o", "limits.preauth_max_buffer=65536")
    try:
        s = open_session(srv.host, srv.port)
        # The LOGIN keeps the connection busy (hash + failure delay) while 200 KB of commands pile up.
        s.sendall(b"a1 LOGIN nobody wrong\r\n" + b"n NOOP\r\n" * 25_000)
        out = read_until_closed(s)
        assert out.endswith(b"* BYE [TOOBIG] Too much input before authentication\r\n"), out[-200:]
        s.close()
        c = RawIMAP(srv.host, srv.port)  # others are served
        assert c.command("NOOP")[1] == b"t1 OK NOOP completed"
        c.close()
    finally:
        stop_server(srv)


def test_total_buffer_of_unauthenticated_connections(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = start_server(data, "-o", "server.workers=1", "-o", "limits.preauth_max_total_buffer=100000")  # per process
    socks = []
    try:
        for _ in range(6):  # 6 x 15 KB of an unfinished line: 90 KB held, under the 100 KB ceiling
            s = open_session(srv.host, srv.port)
            s.sendall(b"a1 LOGIN " + b"u" * 15_000)
            socks.append(s)
        time.sleep(0.3)
        s = open_session(srv.host, srv.port)
        s.sendall(b"a1 LOGIN " + b"u" * 15_000)
        assert read_until_closed(s) == b"* BYE [UNAVAILABLE] Server busy, try again later\r\n"
        s.close()
        for held in socks[:3]:
            held.close()
        time.sleep(0.3)  # closed connections give their share back
        s = open_session(srv.host, srv.port)
        s.sendall(b"a1 LOGIN " + b"u" * 15_000)
        socks.append(s)
        assert exchange(s, b" x\r\n", b"a1 ") == b"a1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
    finally:
        for s in socks:
            s.close()
        stop_server(srv)
