"""A real HAProxy in TCP mode in front of two ``imapd serve`` backends that require the PROXY header.

What the deploy/ example promises: clients log in through HAProxy, the backends see the client's own address
(PROXY v2), the IMAP health check passes on backends that refuse a trusted peer without a header
(``check-send-proxy``), and a stopped backend is taken out of rotation.
"""

from __future__ import annotations

import imaplib
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.haproxy import HAProxy, start_haproxy
from tests.conftest import RunningServer, imapd_cli, start_server, stop_server

CLIENT = "127.0.0.5"  # the client's own address (loopback reaches all of 127/8 on Linux)


class IMAP4From(imaplib.IMAP4):
    """imaplib from a chosen source address."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self._source = source
        super().__init__(host, port, timeout=15)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


@dataclass
class Cluster:
    backends: dict[str, RunningServer]
    haproxy: HAProxy


def start_backend(base: Path, name: str) -> RunningServer:
    data = base / name
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data), stdin="secret1")
    return start_server(data, "-o", 'server.proxy_protocol_from=["127.0.0.1/32"]',
                        "-o", f"server.greeting=imapd {name} ready")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    backends = {name: start_backend(tmp_path, name) for name in ("b1", "b2")}
    try:
        ha = start_haproxy(tmp_path / "haproxy", [(n, s.host, s.port) for n, s in backends.items()])
    except BaseException:
        for srv in backends.values():
            stop_server(srv)
        raise
    try:
        yield Cluster(backends, ha)
    finally:
        ha.stop()
        for srv in backends.values():
            stop_server(srv)


def login_through(ha: HAProxy) -> str:
    """Log in through HAProxy from CLIENT; the name of the backend that answered (from its greeting)."""
    imap = IMAP4From(ha.host, ha.port, CLIENT)
    try:
        greeting = imap.welcome.decode()
        typ, _ = imap.login("alice", "secret1")
        assert typ == "OK"
        selected, _ = imap.select("INBOX")
        assert selected == "OK"
    finally:
        imap.logout()
    m = re.search(r"imapd (b\d) ready", greeting)
    assert m, greeting
    return m.group(1)


def audited(srv: RunningServer, address: str) -> int:
    return len(re.findall(rf"login user='alice' address={re.escape(address)} ", srv.log()))


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_login_through_haproxy_reaches_both_backends_with_the_client_address(cluster: Cluster) -> None:
    served = [login_through(cluster.haproxy) for _ in range(4)]
    assert set(served) == {"b1", "b2"}, served  # roundrobin over two healthy backends
    for name, srv in cluster.backends.items():
        # Each backend logged the client's own address, not HAProxy's 127.0.0.1 ...
        assert wait_for(lambda srv=srv, name=name: audited(srv, CLIENT) == served.count(name)), srv.log()
        assert audited(srv, "127.0.0.1") == 0
        # ... and the health checks (PROXY v2 LOCAL header, then "* OK") were never refused.
        assert "server.proxy_protocol_from" not in srv.log(), srv.log()
    assert cluster.haproxy.states() == {"b1": "UP", "b2": "UP"}


def test_a_stopped_backend_is_taken_out_of_rotation(cluster: Cluster) -> None:
    stop_server(cluster.backends["b2"])
    cluster.haproxy.wait_states({"b1": "UP", "b2": "DOWN"})
    served = [login_through(cluster.haproxy) for _ in range(4)]
    assert served == ["b1"] * 4
    assert wait_for(lambda: audited(cluster.backends["b1"], CLIENT) >= 4)


def test_the_health_check_is_an_imap_greeting_after_the_header(tmp_path: Path) -> None:
    """A check that sends no header (no ``check-send-proxy`` and a ``port`` of its own) is closed by the backend
    before the greeting (which says why), so it fails and the server is DOWN: the check is not a mere TCP
    connect, and the one in the other tests passes because it sends the header and then gets ``* OK``."""
    strict = start_backend(tmp_path, "b1")
    try:
        ha = start_haproxy(tmp_path / "haproxy", [("b1", strict.host, strict.port)], check_send_proxy=False,
                           wait_up=False)
        try:
            ha.wait_states({"b1": "DOWN"})
            assert re.search(r"closing connection from 127\.0\.0\.1:\d+ \(server\.proxy_protocol_from\): "
                             r"closed the connection without sending a PROXY header", strict.log()), strict.log()
        finally:
            ha.stop()
    finally:
        stop_server(strict)
