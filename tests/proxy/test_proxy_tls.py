"""TLS in front of the proxy: implicit TLS and STARTTLS, LOGINDISABLED until then when loopback is not
trusted, and a TLS session that hibernates (it keeps its transport) and wakes."""

from __future__ import annotations

import imaplib
import time

from tests.e2e.test_tls import client_context, make_cert
from tests.proxy.conftest import Cluster, RunningProxy, wait_for


def _tls_proxy(cluster: Cluster, *extra: str) -> tuple[RunningProxy, int]:
    cert, key = make_cert(cluster.tmp)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        tls_port = s.getsockname()[1]
    proxy = cluster.proxy("-o", f"tls.cert={cert}", "-o", f"tls.key={key}", "-o", "tls.trust_loopback=false",
                          "-o", f'proxy.tls_listen=["127.0.0.1:{tls_port}"]', *extra)
    return proxy, tls_port


def test_starttls_and_implicit_tls(cluster: Cluster) -> None:
    proxy, tls_port = _tls_proxy(cluster)
    plain = imaplib.IMAP4("127.0.0.1", proxy.port, timeout=15)
    assert "LOGINDISABLED" in plain.capabilities and "STARTTLS" in plain.capabilities
    plain.starttls(client_context())
    plain.capabilities = plain.capability()[1][0].decode().split()  # type: ignore[assignment]
    assert "STARTTLS" not in plain.capabilities and "AUTH=PLAIN" in plain.capabilities
    assert plain.login("alice", "secret1")[0] == "OK"
    assert plain.select("INBOX")[0] == "OK"
    plain.logout()
    tls = imaplib.IMAP4_SSL("127.0.0.1", tls_port, ssl_context=client_context(), timeout=15)
    assert tls.login("bob", "secret2")[0] == "OK"
    assert tls.select("INBOX")[0] == "OK"
    tls.logout()
    # The backend was told the client's hop was secure (PROXY v2 SSL TLV), so the RESTORE was accepted
    # although the backend does not see TLS and the client address counts as remote.
    assert any("user='bob'" in srv.log() for srv in cluster.backends.values())


def test_tls_session_hibernates_and_wakes(cluster: Cluster) -> None:
    proxy, tls_port = _tls_proxy(cluster, "-o", "proxy.hibernate_after=0.3")
    tls = imaplib.IMAP4_SSL("127.0.0.1", tls_port, ssl_context=client_context(), timeout=15)
    tls.login("alice", "secret1")
    tls.select("INBOX")
    wait_for(lambda: "hibernated sessions: 1" in proxy.backends(), what="the TLS session to hibernate")
    time.sleep(0.2)
    typ, data = tls.status("INBOX", "(MESSAGES)")
    assert typ == "OK" and b"MESSAGES" in data[0]
    tls.logout()
