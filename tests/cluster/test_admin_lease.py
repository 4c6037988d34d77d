"""Admin commands that write a user's index respect the cluster lease (imapd/cluster/admin_lease.py): a
user a live node serves is refused with its name and the node's; a free user is written under a lease of
the command's own, handed back at the end."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from tests.cluster.conftest import ClusterRoot, RedisServer, start_node
from tests.cluster.test_coordination import index_subjects, login
from tests.conftest import RunningServer, imapd_cli

pytestmark = pytest.mark.timeout(120)


def _cluster(redis: RedisServer) -> tuple[str, ...]:
    return ("-o", f"cluster.redis_url={redis.url}", "-o", "cluster.lease_ttl=1.5",
            "-o", "cluster.heartbeat_interval=0.3", "-o", "cluster.login_wait=0.5",
            "-o", "cluster.reassert_grace=0.3")


def test_index_rebuild_refuses_a_user_another_node_serves(cluster_root: ClusterRoot, redis_server: RedisServer,
                                                          nodes: list[RunningServer]) -> None:
    a = start_node(cluster_root, "a", redis_server)
    nodes.append(a)
    client = login(a)
    client.ok("SELECT INBOX")
    args = ("index", "rebuild", "alice", "--data-dir", str(cluster_root.path), *_cluster(redis_server))
    proc = imapd_cli(*args, check=False)
    assert proc.returncode == 75, proc.stderr
    err = proc.stderr.decode()
    assert "user alice is served by cluster node a" in err, err
    r: Any = redis_server.client()
    assert r.get("imapd:owner:alice") == "a"
    assert not r.keys("imapd:node:admin-*")  # the refused command left nothing behind
    client.ok("LOGOUT")
    a.proc.send_signal(signal.SIGTERM)  # a clean stop hands alice back
    a.proc.wait(timeout=15)
    proc = imapd_cli(*args, check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"INBOX: UIDVALIDITY" in proc.stdout
    assert r.get("imapd:owner:alice") is None and not r.keys("imapd:node:admin-*")  # handed back


def test_direct_deliver_refuses_a_served_user_and_writes_a_free_one(
        cluster_root: ClusterRoot, redis_server: RedisServer, nodes: list[RunningServer]) -> None:
    a = start_node(cluster_root, "a", redis_server)
    nodes.append(a)
    login(a).ok("SELECT INBOX")
    deliver = ("deliver", "--direct", "--data-dir", str(cluster_root.path), *_cluster(redis_server))
    proc = imapd_cli(*deliver, "alice", stdin=b"Subject: direct\r\n\r\nhi\r\n", check=False)
    assert proc.returncode == 75 and b"user alice is served by cluster node a" in proc.stderr, proc.stderr
    assert index_subjects(cluster_root) == []
    proc = imapd_cli(*deliver, "bob", stdin=b"Subject: direct to bob\r\n\r\nhi\r\n", check=False)
    assert proc.returncode == 0, proc.stderr  # nobody serves bob: written here, under the command's lease
    assert index_subjects(cluster_root, "bob") == ["Subject: direct to bob"]
    r: Any = redis_server.client()
    assert r.get("imapd:owner:bob") is None


def test_admin_command_refuses_when_redis_cannot_say(cluster_root: ClusterRoot, redis_server: RedisServer) -> None:
    url = redis_server.url
    redis_server.stop()
    proc = imapd_cli("index", "rebuild", "alice", "--data-dir", str(cluster_root.path),
                     "-o", f"cluster.redis_url={url}", check=False)
    assert proc.returncode == 75 and b"cannot reach the cluster's Redis" in proc.stderr, proc.stderr
