"""PROXY protocol headers from an HAProxy-like balancer in front of the proxy (and of a backend): valid v1
and v2 name the real client; truncated, oversized, malformed headers and headers from an address that is
not trusted are refused."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from imapd.protocol.proxyproto import V2_SIGNATURE, encode_v2
from tests.proxy.conftest import Cluster, RunningProxy, make_cluster, teardown_cluster, wait_for


def _talk(port: int, first: bytes, *, source: str = "127.0.0.1", commands: bytes = b"") -> bytes:
    """Send ``first`` then ``commands``; everything the peer sent until it closed or went quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
        sock.sendall(first)
        if commands:
            time.sleep(0.2)
            with contextlib.suppress(OSError):
                sock.sendall(commands)
        out = b""
        sock.settimeout(3)
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                out += chunk
                if out.endswith(b"OK Logout completed\r\n") or b"\r\nz OK" in out:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the module: these tests only read the backends' logs, each for an address of its own."""
    c = make_cluster(tmp_path_factory.mktemp("headers"), ("b1", "b2"))
    try:
        yield c
    finally:
        teardown_cluster(c)


@pytest.fixture(scope="module")
def balanced(cluster: Cluster) -> RunningProxy:
    """A proxy that takes PROXY headers from 127.0.0.1 only (connections from 127.0.0.2 are plain clients)."""
    return cluster.proxy("-o", 'proxy.proxy_protocol_from=["127.0.0.1/32"]', "-o", "tls.trust_loopback=false",
                         "-o", "tls.allow_plaintext_auth=true")


LOGIN = b"a LOGIN alice secret1\r\nz LOGOUT\r\n"


def test_v1_header_names_the_client(cluster: Cluster, balanced: RunningProxy) -> None:
    out = _talk(balanced.port, b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 143\r\n" + LOGIN)
    assert out.startswith(b"* OK") and b"a OK" in out
    wait_for(lambda: "203.0.113.7" in "".join(s.log() for s in cluster.backends.values()),
             what="the backend to log the client's real address")


def test_v2_header_names_the_client(cluster: Cluster, balanced: RunningProxy) -> None:
    header = encode_v2(("2001:db8::9", 40000), ("2001:db8::1", 143))
    out = _talk(balanced.port, header + LOGIN)
    assert b"a OK" in out
    wait_for(lambda: "2001:db8::9" in "".join(s.log() for s in cluster.backends.values()),
             what="the backend to log the client's IPv6 address")


def test_v2_local_is_a_health_check(balanced: RunningProxy) -> None:
    out = _talk(balanced.port, V2_SIGNATURE + b"\x20\x00\x00\x00", commands=b"z LOGOUT\r\n")
    assert out.startswith(b"* OK")


@pytest.mark.parametrize("hostile", [
    pytest.param(b"a LOGIN alice secret1\r\n", id="no-header"),
    pytest.param(b"PROXY TCP4 198.51.100.7 192.0.2.1 51234\r\n", id="v1-missing-port"),
    pytest.param(b"PROXY TCP4 " + b"9" * 200 + b"\r\n", id="v1-oversized"),
    pytest.param(V2_SIGNATURE + b"\x21\x11\xff\xff" + b"\0" * 64, id="v2-oversized"),
    pytest.param(V2_SIGNATURE + b"\x21\x11\x00\x0c\x7f\x00", id="v2-truncated"),
    pytest.param(V2_SIGNATURE[:8] + b"garbage!\r\n", id="v2-bad-signature"),
])
def test_hostile_headers_are_refused(balanced: RunningProxy, hostile: bytes) -> None:
    out = _talk(balanced.port, hostile)
    assert not out.startswith(b"* OK"), out  # closed without a greeting, nothing logged in
    assert b"a OK" not in out


def test_header_from_an_untrusted_address_is_not_honoured(cluster: Cluster, balanced: RunningProxy) -> None:
    out = _talk(balanced.port, b"PROXY TCP4 203.0.113.8 192.0.2.1 51234 143\r\n" + LOGIN, source="127.0.0.2")
    assert out.startswith(b"* OK")  # a plain client: greeted at once; its "PROXY" line is a bad command
    assert b"BAD" in out.split(b"\r\n")[1]
    time.sleep(0.3)
    assert all("203.0.113.8" not in s.log() for s in cluster.backends.values())


def test_backend_refuses_hostile_header(cluster: Cluster) -> None:
    backend = cluster.backends["b1"]
    assert not _talk(backend.port, b"PROXY TCP4 198.51.100.70 192.0.2.1 1 2 3 4\r\n").startswith(b"* OK")
    assert not _talk(backend.port, b"a LOGIN alice secret1\r\n").startswith(b"* OK")
    good = _talk(backend.port, encode_v2(("203.0.113.9", 1), ("192.0.2.1", 143), tls=True),
                 commands=b"a LOGIN alice secret1\r\nz LOGOUT\r\n")
    assert good.startswith(b"* OK") and b"a OK" in good  # the SSL TLV: plaintext LOGIN allowed
    assert "203.0.113.9" in backend.log()
