"""The pool of pre-opened backend connections (``proxy.pool_size``, "id" mode): real backends, a real proxy.

What must hold: the pool fills and refills after each login; a login takes a pooled connection and the
backend still learns the client's real address (its own ID, sent first on that connection); a drained or
killed backend's pooled connections are dropped and not reopened while it is out; a client relayed after
UNAUTHENTICATE cannot rename itself with an ID of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.proxy.conftest import Cluster, RunningProxy, make_cluster, teardown_cluster, wait_for
from tests.rawimap import RawIMAP

POOL = 3


@pytest.fixture
def id_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two backends that honour ``ID x-originating-ip`` from loopback (no PROXY headers)."""
    c = make_cluster(tmp_path, ("b1", "b2"), proxy_protocol=False)
    try:
        yield c
    finally:
        teardown_cluster(c)


def _rows(proxy: RunningProxy) -> dict[str, dict[str, Any]]:
    """node -> its row of the control socket's listing (healthy, sessions, pooled, pool_opened, pool_taken)."""
    return {row["node"]: row for row in json.loads(proxy.backends("--json"))["backends"]}


def _pooled(proxy: RunningProxy, node: str) -> int:
    return int(_rows(proxy)[node]["pooled"])


def _pool_proxy(cluster: Cluster, *extra: str) -> RunningProxy:
    return cluster.proxy("-o", f"proxy.pool_size={POOL}", *extra, forward="id")


def _serving(proxy: RunningProxy) -> str:
    nodes = wait_for(lambda: [n for n, r in _rows(proxy).items() if r["sessions"]], what="an attached session")
    assert isinstance(nodes, list) and len(nodes) == 1
    return str(nodes[0])


def test_login_takes_a_pooled_connection_and_the_pool_refills(id_cluster: Cluster) -> None:
    proxy = _pool_proxy(id_cluster)
    wait_for(lambda: all(_pooled(proxy, n) == POOL for n in id_cluster.backends), what="full pools")
    imap = RawIMAP("127.0.0.1", proxy.port, timeout=15)
    client_port = imap.sock.getsockname()[1]
    imap.ok("LOGIN alice secret1")
    imap.ok("SELECT INBOX")
    node = _serving(proxy)
    assert _rows(proxy)[node]["pool_taken"] == 1
    # Refilled in the background while the session is still open, bounded by pool_size.
    wait_for(lambda: _pooled(proxy, node) == POOL, what="the pool to refill")
    imap.command("LOGOUT")
    imap.close()
    # The backend was told this client's address (ID on the pooled connection), not the proxy's.
    log = id_cluster.backends[node].log()
    assert f"user='alice' address=127.0.0.1:{client_port} (via 127.0.0.1)" in log, log[-2000:]
    # A second login takes another pooled connection: never one a session has used.
    again = RawIMAP("127.0.0.1", proxy.port, timeout=15)
    again.ok("LOGIN alice secret1")
    again.command("LOGOUT")
    wait_for(lambda: _rows(proxy)[node]["pool_taken"] == 2, what="the second take")
    assert _pooled(proxy, node) <= POOL


def test_drained_backend_pool_is_dropped_and_refilled_after_undrain(id_cluster: Cluster) -> None:
    proxy = _pool_proxy(id_cluster)
    wait_for(lambda: _pooled(proxy, "b1") == POOL and _pooled(proxy, "b2") == POOL, what="full pools")
    proxy.backends("drain", "b1")
    assert _pooled(proxy, "b1") == 0  # dropped at once, not at the next maintenance pass
    for _ in range(3):  # every login goes to b2 now, through its pool
        imap = RawIMAP("127.0.0.1", proxy.port, timeout=15)
        imap.ok("LOGIN alice secret1")
        imap.command("LOGOUT")
    rows = _rows(proxy)
    assert rows["b1"]["pool_taken"] == 0 and rows["b2"]["pool_taken"] == 3
    assert _pooled(proxy, "b1") == 0  # not reopened while drained
    proxy.backends("undrain", "b1")
    wait_for(lambda: _pooled(proxy, "b1") == POOL, what="b1's pool after undrain")


def test_killed_backend_pool_is_dropped_and_logins_go_elsewhere(id_cluster: Cluster) -> None:
    proxy = _pool_proxy(id_cluster)
    wait_for(lambda: _pooled(proxy, "b1") == POOL and _pooled(proxy, "b2") == POOL, what="full pools")
    id_cluster.kill("b1")
    wait_for(lambda: _pooled(proxy, "b1") == 0, what="b1's pooled connections to go")
    wait_for(lambda: not _rows(proxy)["b1"]["healthy"], what="b1 marked down")
    for user, password in (("alice", "secret1"), ("bob", "secret2")):
        imap = RawIMAP("127.0.0.1", proxy.port, timeout=15)
        imap.ok(f"LOGIN {user} {password}")
        imap.ok("SELECT INBOX")
        imap.command("LOGOUT")
    assert _pooled(proxy, "b1") == 0
    assert "Traceback" not in proxy.log()


def test_pooled_connections_are_replaced_when_old(id_cluster: Cluster) -> None:
    """Older than pool_max_age: closed and replaced before a backend's pre-auth timeout could close one
    under a session; the pool stays bounded meanwhile."""
    proxy = _pool_proxy(id_cluster, "-o", "proxy.pool_max_age=0.3")
    wait_for(lambda: _pooled(proxy, "b1") == POOL, what="a full pool")
    wait_for(lambda: _rows(proxy)["b1"]["pool_opened"] >= 3 * POOL, what="replacements", timeout=15)
    assert _pooled(proxy, "b1") <= POOL
    assert _rows(proxy)["b1"]["pool_taken"] == 0
    imap = RawIMAP("127.0.0.1", proxy.port, timeout=15)
    imap.ok("LOGIN alice secret1")
    imap.ok("NOOP")
    imap.command("LOGOUT")


def test_client_cannot_rename_itself_after_unauthenticate(id_cluster: Cluster) -> None:
    """The backend honours only the first ID x-originating-ip of a connection (the proxy's)."""
    proxy = _pool_proxy(id_cluster)
    imap = RawIMAP("127.0.0.1", proxy.port, timeout=15)
    client_port = imap.sock.getsockname()[1]
    imap.ok("LOGIN alice secret1")
    node = _serving(proxy)
    imap.ok("UNAUTHENTICATE")
    imap.ok('ID ("x-originating-ip" "192.0.2.66" "x-originating-port" "4444")')
    imap.ok("LOGIN bob secret2")
    imap.command("LOGOUT")
    log = id_cluster.backends[node].log()
    assert "192.0.2.66" not in log
    assert f"user='bob' address=127.0.0.1:{client_port} (via 127.0.0.1)" in log, log[-2000:]


def test_pool_needs_id_forwarding(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "imapd", "proxy", "-o", "proxy.pool_size=2",
                          "-o", 'proxy.backends=["b1=127.0.0.1:1"]', "-o", 'proxy.listen=["127.0.0.1:0"]',
                          "-o", f'server.data_dir="{tmp_path}"'], capture_output=True, cwd=ROOT, timeout=30)
    assert out.returncode != 0
    assert b"forward_address" in out.stdout + out.stderr
