"""The PROXY protocol on ``imapd serve`` (server.proxy_protocol_from): real server processes, raw sockets.

A header from a trusted peer makes the address it names the client's (per-address limit, audit log, the hand-off
between workers); hostile headers from a trusted peer close the connection before the greeting; a header from
any other peer is only a bad command.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imapd.protocol.proxyproto import V2_SIGNATURE, encode_v2
from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.e2e.test_tls import client_context, make_cert

TRUSTED = "127.0.0.1"
UNTRUSTED = "127.0.0.2"  # (any 127/8 address reaches a loopback listener on Linux)


@dataclass
class ProxiedServer:
    srv: RunningServer
    plain_port: int
    tls_port: int

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.srv.log())
            if m:
                return m
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r}:\n{self.srv.log()[-4000:]}")


def start_proxied(base: Path, *extra: str) -> ProxiedServer:
    cert, key = make_cert(base)
    data_dir = base / "data"
    data_dir.mkdir()
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data_dir), stdin="secret1")
    srv = start_server(
        data_dir, "-o", f"tls.cert={cert}", "-o", f"tls.key={key}", "-o", "tls.trust_loopback=false",
        "-o", f'server.proxy_protocol_from=["{TRUSTED}/32"]', "-o", "server.proxy_header_timeout=0.5",
        "-o", "limits.max_connections_per_address=2", *extra, tls_listen="127.0.0.1:0")
    m = re.search(r"ready on 127\.0\.0\.1:(\d+), 127\.0\.0\.1:(\d+)", srv.log())
    assert m, srv.log()
    return ProxiedServer(srv, int(m.group(1)), int(m.group(2)))


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedServer]:
    ps = start_proxied(tmp_path_factory.mktemp("imapd-proxied"))
    try:
        yield ps
    finally:
        stop_server(ps.srv)


def connect(port: int, source: str = TRUSTED) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def read_line(sock: socket.socket | ssl.SSLSocket) -> bytes:
    """One line, or b"" if the server closed first."""
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            return buf
        buf += chunk
    return buf


def exchange(sock: socket.socket | ssl.SSLSocket, line: bytes) -> list[bytes]:
    """Send a tagged command, return every line up to its tagged answer."""
    tag = line.split(b" ", 1)[0]
    sock.sendall(line + b"\r\n")
    out = []
    while True:
        got = read_line(sock)
        assert got, f"closed after {out!r}"
        out.append(got)
        if got.startswith(tag + b" "):
            return out


def closed_without_greeting(sock: socket.socket, within: float = 5.0) -> bool:
    sock.settimeout(within)
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        return True
    return data == b""


def v1(source: str, port: int) -> bytes:
    return f"PROXY TCP4 {source} 127.0.0.1 {port} 143\r\n".encode()


# -- accepted headers ----------------------------------------------------------------------------------------
def test_v1_header_names_the_client_in_the_audit_log(proxied: ProxiedServer) -> None:
    sock = connect(proxied.plain_port)
    sock.sendall(v1("203.0.113.7", 40001) + b"a1 CAPABILITY\r\n")  # the header and a command in one segment
    assert read_line(sock).startswith(b"* OK")
    lines: list[bytes] = []
    while not lines or not lines[-1].startswith(b"a1 "):
        lines.append(read_line(sock))
        assert lines[-1], lines
    assert lines[-1].startswith(b"a1 OK")
    assert b"LOGINDISABLED" in lines[0]  # no TLS flag, loopback not trusted: plaintext LOGIN is refused
    sock.close()
    # On the TLS listener (the header before the ClientHello), a failed LOGIN is audited with the named address.
    raw = connect(proxied.tls_port)
    raw.sendall(v1("203.0.113.8", 40002))
    tls = client_context().wrap_socket(raw, server_hostname="localhost")
    assert read_line(tls).startswith(b"* OK")
    assert exchange(tls, b"a1 LOGIN alice wrong")[-1].startswith(b"a1 NO")
    tls.close()
    proxied.wait_log(r"login failed user='alice' address=203\.0\.113\.8 ")


def test_v2_header_with_tls_flag_allows_plaintext_login(proxied: ProxiedServer) -> None:
    sock = connect(proxied.plain_port)
    sock.sendall(encode_v2(("198.51.100.20", 50000), ("127.0.0.1", 143), tls=True))
    greeting = read_line(sock)
    assert greeting.startswith(b"* OK") and b"LOGINDISABLED" not in greeting and b"STARTTLS" not in greeting
    assert exchange(sock, b"a1 LOGIN alice secret1")[-1].startswith(b"a1 OK")
    assert exchange(sock, b"a2 STARTTLS")[-1].startswith(b"a2 BAD")  # TLS is already active, says the balancer
    exchange(sock, b"a3 LOGOUT")
    sock.close()
    proxied.wait_log(r"login user='alice' address=198\.51\.100\.20 ")


def test_v2_without_tls_flag_keeps_login_disabled(proxied: ProxiedServer) -> None:
    sock = connect(proxied.plain_port)
    sock.sendall(encode_v2(("198.51.100.21", 50001), ("127.0.0.1", 143)))
    assert b"LOGINDISABLED" in read_line(sock)
    assert exchange(sock, b"a1 LOGIN alice secret1")[-1].startswith(b"a1 NO")
    sock.close()


def test_per_address_limit_counts_the_named_address(proxied: ProxiedServer) -> None:
    """All connections come from 127.0.0.1; the limit (2) applies to each address the headers name."""
    held = []
    for port in (1, 2):
        sock = connect(proxied.plain_port)
        sock.sendall(encode_v2(("192.0.2.50", port), ("127.0.0.1", 143)))
        assert read_line(sock).startswith(b"* OK")
        held.append(sock)
    third = connect(proxied.plain_port)
    third.sendall(encode_v2(("192.0.2.50", 3), ("127.0.0.1", 143)))
    assert b"Too many connections" in read_line(third)
    third.close()
    other = connect(proxied.plain_port)  # another client behind the same balancer is not affected
    other.sendall(v1("192.0.2.51", 4))
    assert read_line(other).startswith(b"* OK")
    for sock in [*held, other]:
        sock.close()


def test_local_header_keeps_the_socket_address(proxied: ProxiedServer) -> None:
    """A v2 LOCAL header (HAProxy's health check with check-send-proxy): greeted, peer = the balancer."""
    local = V2_SIGNATURE + bytes([0x20, 0x00]) + (0).to_bytes(2, "big")
    raw = connect(proxied.tls_port)
    raw.sendall(local)
    sock = client_context().wrap_socket(raw, server_hostname="localhost")
    assert read_line(sock).startswith(b"* OK")
    assert exchange(sock, b"a1 LOGIN bob wrong")[-1].startswith(b"a1 NO")
    sock.close()
    proxied.wait_log(r"login failed user='bob' address=127\.0\.0\.1 ")


def test_tls_listener_reads_the_header_before_the_handshake(proxied: ProxiedServer) -> None:
    raw = connect(proxied.tls_port)
    raw.sendall(encode_v2(("198.51.100.30", 50030), ("127.0.0.1", 993)))
    tls = client_context().wrap_socket(raw, server_hostname="localhost")
    greeting = read_line(tls)
    assert greeting.startswith(b"* OK") and b"LOGINDISABLED" not in greeting
    assert exchange(tls, b"a1 LOGIN alice secret1")[-1].startswith(b"a1 OK")
    exchange(tls, b"a2 LOGOUT")
    tls.close()
    proxied.wait_log(r"login user='alice' address=198\.51\.100\.30 ")


# -- refused headers (a trusted peer that breaks the rule) ---------------------------------------------------
def test_no_header_from_a_trusted_peer_is_closed_before_the_greeting(proxied: ProxiedServer) -> None:
    sock = connect(proxied.plain_port)
    sock.sendall(b"a1 LOGIN alice secret1\r\n")
    assert closed_without_greeting(sock)
    proxied.wait_log(r"closing connection from 127\.0\.0\.1:\d+ \(server\.proxy_protocol_from\): "
                     r"connection did not start with a PROXY protocol header")


def test_garbage_v1_header_is_refused(proxied: ProxiedServer) -> None:
    sock = connect(proxied.plain_port)
    sock.sendall(b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n")
    assert closed_without_greeting(sock)
    proxied.wait_log(r"malformed PROXY v1 header")


def test_oversized_v2_header_is_refused(proxied: ProxiedServer) -> None:
    sock = connect(proxied.plain_port)
    sock.sendall(V2_SIGNATURE + bytes([0x21, 0x11]) + (4000).to_bytes(2, "big") + b"\0" * 64)
    assert closed_without_greeting(sock)
    proxied.wait_log(r"PROXY v2 header of 4016 bytes")


def test_overlong_v1_line_is_refused(proxied: ProxiedServer) -> None:
    sock = connect(proxied.plain_port)
    sock.sendall(b"PROXY TCP4 " + b"1" * 200)
    assert closed_without_greeting(sock)
    proxied.wait_log(r"PROXY v1 header longer than 107 bytes")


def test_truncated_header_then_close_is_logged(proxied: ProxiedServer) -> None:
    header = encode_v2(("198.51.100.40", 50040), ("127.0.0.1", 143))
    sock = connect(proxied.plain_port)
    sock.sendall(header[:20])
    time.sleep(0.1)
    sock.shutdown(socket.SHUT_WR)
    assert closed_without_greeting(sock)
    proxied.wait_log(r"closing connection from 127\.0\.0\.1:\d+ \(server\.proxy_protocol_from\): "
                     r"closed the connection after 20 bytes of its PROXY header")


def test_slow_header_times_out(proxied: ProxiedServer) -> None:
    header = v1("198.51.100.41", 50041)
    sock = connect(proxied.plain_port)
    started = time.monotonic()
    sock.sendall(header[:10])  # then nothing: the rest never comes
    assert closed_without_greeting(sock)
    assert time.monotonic() - started < 3.0  # server.proxy_header_timeout=0.5, not limits.preauth_timeout
    proxied.wait_log(r"sent 10 bytes of PROXY header within 0\.5 s")


# -- an untrusted peer ---------------------------------------------------------------------------------------
def test_header_from_an_untrusted_peer_is_not_honoured(proxied: ProxiedServer) -> None:
    sock = connect(proxied.plain_port, source=UNTRUSTED)
    assert read_line(sock).startswith(b"* OK")  # greeted at once: no header is expected of it
    sock.close()
    raw = connect(proxied.tls_port, source=UNTRUSTED)
    tls = client_context().wrap_socket(raw, server_hostname="localhost")
    assert read_line(tls).startswith(b"* OK")
    tls.sendall(v1("203.0.113.99", 1))  # inside the session: only a bad command
    assert b"BAD" in read_line(tls)
    assert exchange(tls, b"a1 LOGIN carol wrong")[-1].startswith(b"a1 NO")
    tls.close()
    proxied.wait_log(r"login failed user='carol' address=127\.0\.0\.2 ")
    assert "203.0.113.99" not in proxied.srv.log()


def test_header_before_tls_from_an_untrusted_peer_fails_the_handshake(proxied: ProxiedServer) -> None:
    raw = connect(proxied.tls_port, source=UNTRUSTED)
    raw.sendall(encode_v2(("203.0.113.98", 1), ("127.0.0.1", 993)))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        client_context().wrap_socket(raw, server_hostname="localhost")
    raw.close()


# -- several workers: the address survives the hand-off to the user's owner ------------------------------------
def test_named_address_survives_the_hand_off_between_workers(tmp_path: Path) -> None:
    """The worker that accepts is the kernel's choice; over 8 connections some land on the worker that does not
    own alice and are handed to its owner, which logs the login: with the named address, and still secure."""
    ps = start_proxied(tmp_path, "-o", "server.workers=2")
    try:
        for n in range(8):
            sock = connect(ps.plain_port)
            sock.sendall(encode_v2((f"198.51.100.{60 + n}", 50060), ("127.0.0.1", 143), tls=True))
            assert read_line(sock).startswith(b"* OK")
            assert exchange(sock, b"a1 LOGIN alice secret1")[-1].startswith(b"a1 OK")
            # Still secure (the TLS flag moved with it) and still the named address in the owner.
            assert exchange(sock, b"a2 STARTTLS")[-1].startswith(b"a2 BAD")
            exchange(sock, b"a3 LOGOUT")
            sock.close()
            ps.wait_log(rf"login user='alice' address=198\.51\.100\.{60 + n} ")
    finally:
        stop_server(ps.srv)


# -- LMTP behind a balancer (lmtp.proxy_protocol_from) ---------------------------------------------------------
def test_lmtp_listener_takes_the_mta_address_from_the_header(tmp_path: Path) -> None:
    data = tmp_path / "data"
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data), stdin="secret1")
    srv = start_server(data, "-o", "lmtp.listen=127.0.0.1:0", "-o", f'lmtp.proxy_protocol_from=["{TRUSTED}"]',
                       "-o", "lmtp.proxy_header_timeout=0.5")
    try:
        port = int((data / "run" / "lmtp").read_text().strip().rpartition(":")[2])
        mta = connect(port)
        mta.sendall(v1("192.0.2.77", 25025))
        assert read_line(mta).startswith(b"220 ")

        def say(line: bytes) -> bytes:
            mta.sendall(line + b"\r\n")
            reply = b""
            while True:  # multi-line replies: "250-..." until "250 ..."
                got = read_line(mta)
                assert got, reply
                reply += got
                if got[3:4] == b" ":
                    return reply

        assert say(b"LHLO relay.example").startswith(b"250")
        assert say(b"MAIL FROM:<s@remote.test>").startswith(b"250")
        assert say(b"RCPT TO:<alice>").startswith(b"250")
        assert say(b"DATA").startswith(b"354")
        assert say(b"Subject: via haproxy\r\n\r\nHi.\r\n.").startswith(b"250")
        say(b"QUIT")
        mta.close()
        stored = next((data / "mail" / "alice").glob("**/new/*"), None) or next((data / "mail" / "alice").glob("**/cur/*"))
        head = stored.read_bytes().split(b"\r\n\r\n", 1)[0]
        assert b"[192.0.2.77]" in head, head
        # A trusted peer without a header: closed before the 220, with the reason logged.
        bare = connect(port)
        bare.sendall(b"LHLO relay.example\r\n")
        assert closed_without_greeting(bare)
        deadline = time.monotonic() + 10
        while "did not start with a PROXY protocol header" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "did not start with a PROXY protocol header" in srv.log()
    finally:
        stop_server(srv)
