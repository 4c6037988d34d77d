"""Login and a webmail request through a real `imapd proxy` in front of real backends."""

from __future__ import annotations

import imaplib
import socket
from pathlib import Path

import pytest

from imapd.client import xstate_restore, xstate_save
from tests.proxy.conftest import Cluster, RunningProxy, make_cluster, teardown_cluster


def _connect(proxy: RunningProxy) -> imaplib.IMAP4:
    return imaplib.IMAP4("127.0.0.1", proxy.port, timeout=20)


def _webmail_request(imap: imaplib.IMAP4) -> list[bytes]:
    imap.select("INBOX")
    typ, data = imap.fetch("1:*", "(UID FLAGS ENVELOPE)")
    assert typ == "OK"
    return [d for d in data if isinstance(d, bytes)]


@pytest.mark.parametrize("forward", ["proxy-protocol", "id"])
def test_login_and_webmail_request(tmp_path: Path, forward: str) -> None:
    cluster = make_cluster(tmp_path, ("b1",), proxy_protocol=forward == "proxy-protocol")
    try:
        _login_and_webmail_request(cluster, forward)
    finally:
        teardown_cluster(cluster)


def _login_and_webmail_request(cluster: Cluster, forward: str) -> None:
    proxy = cluster.proxy(forward=forward)
    imap = _connect(proxy)
    assert "X-STATE" in imap.capabilities and "AUTH=PLAIN" in imap.capabilities
    typ, data = imap.login("alice", "secret1")
    assert typ == "OK" and b"CAPABILITY" in data[0]
    assert imap.append("INBOX", None, None, b"Subject: through the proxy\r\n\r\nhello\r\n")[0] == "OK"
    rows = _webmail_request(imap)
    assert any(b"through the proxy" in r for r in rows)
    imap.logout()
    # The backend knows the real client (PROXY v2 header or ID x-originating-ip), and logged X-STATE.
    logs = "".join(srv.log() for srv in cluster.backends.values())
    assert "user='alice'" in logs and "mechanism=X-STATE" in logs
    if forward == "id":
        assert "(via 127.0.0.1)" in logs


def test_authenticate_plain_and_sasl_ir(cluster: Cluster) -> None:
    proxy = cluster.proxy()
    imap = _connect(proxy)
    typ, _ = imap.authenticate("PLAIN", lambda _: b"\0bob\0secret2")
    assert typ == "OK"
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        f = sock.makefile("rwb")
        assert f.readline().startswith(b"* OK")
        import base64

        f.write(b"a AUTHENTICATE PLAIN " + base64.b64encode(b"\0bob\0secret2") + b"\r\n")
        f.flush()
        line = f.readline()
        assert line.startswith(b"a OK"), line
        f.write(b"b NOOP\r\n")
        f.flush()
        assert f.readline().startswith(b"b OK")


def test_preauth_failures(cluster: Cluster) -> None:
    proxy = cluster.proxy()
    imap = _connect(proxy)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login("alice", "wrong")
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login("nobody", "x")
    imap.state = "AUTH"  # make imaplib send SELECT before login: the proxy answers BAD
    with pytest.raises(imaplib.IMAP4.error, match="not valid before login"):
        imap.select("INBOX")
    imap.state = "NONAUTH"
    # A bad login never reached a backend: no backend logged anything of alice.
    assert all("user='alice'" not in srv.log() for srv in cluster.backends.values())
    # And the same connection can still log in.
    assert imap.login("alice", "secret1")[0] == "OK"
    imap.logout()
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    f = raw.makefile("rwb")
    f.readline()
    f.write(b"t1 X-STATE RESTORE notatoken.abc.def\r\nt2 AUTHENTICATE CRAM-MD5\r\nt3 LOGOUT\r\n")
    f.flush()
    assert b"X-STATE-INVALID" in f.readline()
    assert f.readline().startswith(b"t2 NO")
    assert f.readline().startswith(b"* BYE")
    raw.close()


def test_xstate_restore_through_the_proxy(cluster: Cluster) -> None:
    proxy = cluster.proxy()
    imap = _connect(proxy)
    imap.login("alice", "secret1")
    imap.append("INBOX", None, None, b"Subject: one\r\n\r\nx\r\n")
    imap.select("INBOX")
    token = xstate_save(imap)
    imap.logout()
    imap = _connect(proxy)
    result = xstate_restore(imap, token)
    assert result.ok and not result.stale
    typ, data = imap.fetch("1", "(ENVELOPE)")
    assert typ == "OK" and b"one" in data[0]
    imap.logout()


def test_backends_command_and_drain(cluster: Cluster) -> None:
    proxy = cluster.proxy()
    out = proxy.backends()
    assert "b1" in out and "b2" in out and "up" in out
    out = proxy.backends("drain", "b1")
    assert "drained" in out.splitlines()[0] or "drained" in out
    # With b1 drained every user goes to b2.
    for user, password in (("alice", "secret1"), ("bob", "secret2")):
        imap = _connect(proxy)
        imap.login(user, password)
        imap.logout()
    b2 = cluster.backends["b2"].log()
    assert "user='alice'" in b2 and "user='bob'" in b2
    assert "drained" not in proxy.backends("undrain", "b1").split("b1", 1)[1].splitlines()[0]


def test_connections_per_address(cluster: Cluster) -> None:
    """limits.max_connections_per_address, counted by the proxy on the real client address."""
    proxy = cluster.proxy("-o", "limits.max_connections_per_address=2")
    first, second = _connect(proxy), _connect(proxy)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        assert sock.recv(4096).startswith(b"* BYE [UNAVAILABLE]")
    first.logout()
    import time

    time.sleep(0.3)
    third = _connect(proxy)
    assert third.login("alice", "secret1")[0] == "OK"
    third.logout()
    second.logout()
