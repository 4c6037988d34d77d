"""TLS end-to-end: implicit TLS, STARTTLS, capabilities around it, and STARTTLS command injection."""

from __future__ import annotations

import imaplib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server


@dataclass
class TLSServer:
    srv: RunningServer
    plain_port: int
    tls_port: int


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_cert(directory: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def start_tls_server(base: Path, *extra: str) -> TLSServer:
    cert, key = make_cert(base)
    data_dir = base / "data"
    data_dir.mkdir()
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data_dir), stdin="secret1")
    srv = start_server(data_dir, "-o", f"tls.cert={cert}", "-o", f"tls.key={key}", *extra,
                       tls_listen="127.0.0.1:0")
    srv.users["alice"] = "secret1"
    # "ready on 127.0.0.1:PLAIN, 127.0.0.1:TLS" -- plain listeners are started first
    m = re.search(r"ready on 127\.0\.0\.1:(\d+), 127\.0\.0\.1:(\d+)", srv.log())
    assert m, srv.log()
    return TLSServer(srv, int(m.group(1)), int(m.group(2)))


def stop(ts: TLSServer) -> None:
    stop_server(ts.srv)
    if ts.srv.proc.returncode not in (0, -signal.SIGTERM):
        print(ts.srv.log())


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    ts = start_tls_server(tmp_path_factory.mktemp("imapd-tls"))
    try:
        yield ts
    finally:
        stop(ts)


def read_until(sock: socket.socket | ssl.SSLSocket, until: bytes, timeout: float = 10) -> bytes:
    buf = b""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while until not in buf and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def test_implicit_tls_login(tls_server: TLSServer) -> None:
    imap = imaplib.IMAP4_SSL("127.0.0.1", tls_server.tls_port, ssl_context=client_context(), timeout=15)
    try:
        assert "STARTTLS" not in imap.capabilities
        assert "AUTH=PLAIN" in imap.capabilities
        assert isinstance(imap.sock, ssl.SSLSocket)
        assert imap.sock.version() in ("TLSv1.2", "TLSv1.3")
        typ, _ = imap.login("alice", "secret1")
        assert typ == "OK"
        typ, _data = imap.select("INBOX")
        assert typ == "OK"
    finally:
        imap.logout()


def test_plain_port_does_not_speak_tls_on_tls_port(tls_server: TLSServer) -> None:
    # a plaintext client on the implicit-TLS port gets no IMAP greeting
    sock = socket.create_connection(("127.0.0.1", tls_server.tls_port), timeout=5)
    try:
        sock.settimeout(1)
        try:
            data = sock.recv(100)
        except TimeoutError:
            data = b""
        assert not data.startswith(b"* OK")
    finally:
        sock.close()


def test_starttls_then_login(tls_server: TLSServer) -> None:
    imap = imaplib.IMAP4("127.0.0.1", tls_server.plain_port, timeout=15)
    try:
        assert "STARTTLS" in imap.capabilities
        typ, _ = imap.starttls(ssl_context=client_context())
        assert typ == "OK"
        assert isinstance(imap.sock, ssl.SSLSocket)
        # imaplib re-asks CAPABILITY after the handshake; STARTTLS must be gone
        assert "STARTTLS" not in imap.capabilities
        assert "IMAP4REV1" in imap.capabilities
        typ, data = imap.capability()
        assert b"STARTTLS" not in data[0]
        typ, _ = imap.login("alice", "secret1")
        assert typ == "OK"
        typ, data = imap.list('""', "*")
        assert typ == "OK" and any(b"INBOX" in d for d in data)
    finally:
        imap.logout()


def test_starttls_twice_and_after_login(tls_server: TLSServer) -> None:
    imap = imaplib.IMAP4("127.0.0.1", tls_server.plain_port, timeout=15)
    try:
        imap.starttls(ssl_context=client_context())
        with pytest.raises(imaplib.IMAP4.error, match="BAD"):
            imap._simple_command("STARTTLS")
    finally:
        imap.logout()
    # only valid in the not-authenticated state (imaplib refuses to send it, so speak raw)
    raw = socket.create_connection(("127.0.0.1", tls_server.plain_port), timeout=10)
    try:
        read_until(raw, b"\r\n")
        raw.sendall(b"a LOGIN alice secret1\r\n")  # loopback is trusted by default
        assert b"a OK" in read_until(raw, b"a ")
        raw.sendall(b"b STARTTLS\r\nc NOOP\r\n")
        reply = read_until(raw, b"c OK")
        assert b"b BAD" in reply and b"c OK" in reply, reply
    finally:
        raw.close()


def test_starttls_discards_pipelined_commands(tls_server: TLSServer) -> None:
    """CVE-2011-0411 style injection: plaintext sent after STARTTLS must not be run inside TLS."""
    raw = socket.create_connection(("127.0.0.1", tls_server.plain_port), timeout=10)
    greeting = read_until(raw, b"\r\n")
    assert greeting.startswith(b"* OK")
    raw.sendall(b"a STARTTLS\r\nb NOOP\r\n")
    reply = read_until(raw, b"a OK")
    assert b"a OK" in reply, reply
    assert b"b " not in reply.split(b"a OK", 1)[1], reply  # nothing answered in the clear either
    tls = client_context().wrap_socket(raw, server_hostname="localhost")
    try:
        tls.sendall(b"c NOOP\r\n")
        after = read_until(tls, b"c OK")
        assert b"c OK" in after, after
        assert not re.search(rb"(^|\r\n)b ", after), f"injected command was answered: {after!r}"
        tls.sendall(b"d CAPABILITY\r\n")
        after += read_until(tls, b"d OK")
        assert b"d OK" in after and not re.search(rb"(^|\r\n)b ", after), after
    finally:
        tls.close()


def test_logindisabled_until_starttls_when_loopback_not_trusted(tmp_path: Path) -> None:
    ts = start_tls_server(tmp_path, "-o", "tls.trust_loopback=false")
    try:
        imap = imaplib.IMAP4("127.0.0.1", ts.plain_port, timeout=15)
        try:
            assert "LOGINDISABLED" in imap.capabilities
            assert "AUTH=PLAIN" not in imap.capabilities
            with pytest.raises(imaplib.IMAP4.error, match=r"PRIVACYREQUIRED|LOGINDISABLED|disabled"):
                imap.login("alice", "secret1")
            imap.starttls(ssl_context=client_context())
            assert "LOGINDISABLED" not in imap.capabilities
            assert "AUTH=PLAIN" in imap.capabilities
            typ, _ = imap.login("alice", "secret1")
            assert typ == "OK"
        finally:
            imap.logout()
    finally:
        stop(ts)
