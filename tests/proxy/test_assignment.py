"""The backend for a user: the live Redis assignment first (owner key + node registry), else rendezvous
hashing; the drained set shared through Redis."""

from __future__ import annotations

from tests.proxy.conftest import Cluster, RunningRedis, wait_for
from tests.rawimap import RawIMAP


def _login_logged_on(cluster: Cluster, port: int, user: str, password: str) -> str:
    before = {n: s.log().count(f"user='{user}'") for n, s in cluster.backends.items()}
    imap = RawIMAP("127.0.0.1", port, timeout=15)
    imap.ok(f"LOGIN {user} {password}")
    imap.command("LOGOUT")
    after = wait_for(lambda: [n for n, s in cluster.backends.items() if s.log().count(f"user='{user}'") > before[n]],
                     what="a backend to log the login")
    assert isinstance(after, list) and len(after) == 1
    return str(after[0])


def test_live_assignment_wins_over_hashing(cluster: Cluster, redis_server: RunningRedis) -> None:
    proxy = cluster.proxy("-o", f"cluster.redis_url={redis_server.url}")
    hashed = _login_logged_on(cluster, proxy.port, "alice", "secret1")
    other = next(n for n in cluster.backends if n != hashed)
    r = redis_server.client()
    r.set("imapd:owner:alice", other)
    # No registry entry for the node: the assignment is dead, hashing decides.
    assert _login_logged_on(cluster, proxy.port, "alice", "secret1") == hashed
    r.hset(f"imapd:node:{other}", mapping={"imap": f"127.0.0.1:{cluster.backends[other].port}"})
    assert _login_logged_on(cluster, proxy.port, "alice", "secret1") == other


def test_drained_set_is_shared(cluster: Cluster, redis_server: RunningRedis) -> None:
    one = cluster.proxy("-o", f"cluster.redis_url={redis_server.url}")
    two = cluster.proxy("-o", f"cluster.redis_url={redis_server.url}")
    hashed = _login_logged_on(cluster, two.port, "bob", "secret2")
    one.backends("drain", hashed)
    assert redis_server.client().smembers("imapd:drained") == {hashed}
    wait_for(lambda: f"{hashed}" in two.backends() and "drained" in two.backends(), what="the other proxy to see it")
    assert _login_logged_on(cluster, two.port, "bob", "secret2") != hashed
    one.backends("undrain", hashed)
    assert redis_server.client().smembers("imapd:drained") == set()
