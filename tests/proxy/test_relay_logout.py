"""LOGOUT through the proxy is answered by the proxy (one relayed round trip less per webmail request),
and only when nothing else is in flight; the backend still sees the LOGOUT and ends the session."""

from __future__ import annotations

import signal
import socket

from tests.proxy.conftest import Cluster, wait_for
from tests.rawimap import read_until_closed


def _logged_in(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"* OK")
    sock.sendall(b"a LOGIN alice secret1\r\n")
    assert f.readline().startswith(b"a OK")
    return sock


def _until(sock: socket.socket, marker: bytes) -> bytes:
    """What the proxy sends until ``marker`` has arrived."""
    out = b""
    while marker not in out:
        out += sock.recv(65536)
    return out


def test_logout_answered_and_backend_session_ends(cluster: Cluster) -> None:
    proxy = cluster.proxy()
    sock = _logged_in(proxy.port)
    sock.sendall(b"b SELECT INBOX\r\n")
    _until(sock, b"b OK")
    stopped = [srv for srv in cluster.backends.values() if srv.proc.poll() is None]
    for srv in stopped:  # a relayed LOGOUT would now wait for ever
        srv.proc.send_signal(signal.SIGSTOP)
    try:
        sock.sendall(b"z LOGOUT\r\n")
        out = read_until_closed(sock, timeout=5)
    finally:
        for srv in stopped:
            srv.proc.send_signal(signal.SIGCONT)
    assert out == b"* BYE Logging out\r\nz OK LOGOUT completed\r\n"
    # The backend got the LOGOUT: its session is over (no attached session left in the proxy either).
    wait_for(lambda: "sessions=0" in proxy.backends() and "sessions=1" not in proxy.backends(),
             what="no attached session")
    logs = "".join(srv.log() for srv in cluster.backends.values())
    assert "Traceback" not in logs and "Traceback" not in proxy.log()


def test_pipelined_logout_waits_for_the_commands_before_it(cluster: Cluster) -> None:
    proxy = cluster.proxy()
    sock = _logged_in(proxy.port)
    sock.sendall(b"b SELECT INBOX\r\nc NOOP\r\nz LOGOUT\r\n")
    out = read_until_closed(sock)
    assert out.index(b"b OK") < out.index(b"c OK") < out.index(b"z OK")
    assert out.count(b"* BYE") == 1


def test_logout_with_arguments_and_a_later_command_go_to_the_backend(cluster: Cluster) -> None:
    """Only a bare ``tag LOGOUT`` line is answered here: ``LOGOUT junk`` is the backend's BAD (RFC 3501 9,
    LOGOUT takes no arguments), and a command after a LOGOUT is never answered as a LOGOUT."""
    proxy = cluster.proxy()
    sock = _logged_in(proxy.port)
    sock.sendall(b"c LOGOUT junk\r\n")
    out = _until(sock, b"c ")
    assert out.startswith(b"c BAD"), out
    sock.sendall(b"d NOOP\r\n")
    out = _until(sock, b"d ")
    assert b"d OK" in out and b"LOGOUT" not in out, out
    sock.sendall(b"z LOGOUT\r\n")
    assert read_until_closed(sock, timeout=5).endswith(b"z OK LOGOUT completed\r\n")
