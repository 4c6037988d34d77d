"""The lease and counter scripts (imapd/cluster/scripts.py) against a real redis-server: each decision
of the table in docs/cluster.md, one call at a time, and many takers racing for one user."""

from __future__ import annotations

import json
import threading
from typing import Any

from imapd.cluster import scripts
from imapd.cluster.keys import ClusterKeys
from tests.cluster.conftest import RedisServer

K = ClusterKeys("t:")


def _assert(r: Any, node: str, user: str, mode: str, *, epoch: str | None = None, grace_ms: int = 0,
            window_ms: int = 60_000) -> list[Any]:
    got = r.eval(scripts.ASSERT, 3, K.node(node), K.owner(user), K.since,
                 node, epoch or f"epoch-{node}", 1500, f"{node}.example:143", "0", 1, K.node(""), grace_ms, mode,
                 window_ms)
    return [x if isinstance(x, str) else int(x) for x in got]


def test_claim_confirm_takeover(redis_server: RedisServer) -> None:
    r: Any = redis_server.client()
    assert _assert(r, "a", "alice", "claim") == ["ok", "", 0]  # first sight of node a: its key was new
    assert _assert(r, "a", "alice", "claim") == ["ok", "", 1]
    assert r.get(K.owner("alice")) == "a" and 0 < r.pttl(K.node("a")) <= 1500
    assert _assert(r, "b", "alice", "claim")[:2] == ["taken", "a"]  # a is alive
    r.delete(K.node("a"))  # a's lease ran out
    assert _assert(r, "b", "alice", "claim")[:2] == ["ok", "a"]  # taken over from the dead node
    assert r.get(K.owner("alice")) == "b"
    # a comes back: it re-creates its key but never takes alice back, even once b dies
    assert _assert(r, "a", "alice", "confirm") == ["taken", "b", 0]
    r.delete(K.node("b"))
    assert _assert(r, "a", "alice", "confirm")[:2] == ["taken", "b"]
    assert _assert(r, "a", "alice", "claim")[:2] == ["ok", "b"]  # a fresh claim (a new login) may


def test_conflicting_holder_of_one_node_id(redis_server: RedisServer) -> None:
    r: Any = redis_server.client()
    assert _assert(r, "a", "alice", "claim", epoch="one")[0] == "ok"
    assert _assert(r, "a", "bob", "claim", epoch="two")[0] == "conflict"
    assert r.eval(scripts.HEARTBEAT, 2, K.node("a"), K.since, "two", 1500, "x", "0", 1) == [-1, ""]
    assert r.hget(K.node("a"), "epoch") == "one"


def test_after_redis_lost_its_keys_only_owners_reassert_during_the_grace(redis_server: RedisServer) -> None:
    r: Any = redis_server.client()
    assert _assert(r, "b", "alice", "claim", grace_ms=60_000)[0] == "wait"  # since was just stamped
    assert r.get(K.owner("alice")) is None
    assert _assert(r, "a", "alice", "confirm", grace_ms=60_000)[0] == "ok"  # the old owner re-asserts
    assert _assert(r, "b", "alice", "claim", grace_ms=60_000)[:2] == ["taken", "a"]
    r.set(K.since, 0)  # the grace is long over
    assert _assert(r, "b", "bob", "claim", grace_ms=60_000)[0] == "ok"
    # past the re-assert window a missing record means someone released the user: not ours to take back
    assert _assert(r, "c", "carol", "confirm")[:2] == ["taken", ""]
    assert r.get(K.owner("carol")) is None


def test_racing_takers_one_wins(redis_server: RedisServer) -> None:
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def take(node: str) -> None:
        r: Any = redis_server.client()
        barrier.wait()
        if _assert(r, node, "carol", "claim")[0] == "ok":
            winners.append(node)

    threads = [threading.Thread(target=take, args=(f"n{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert redis_server.client().get(K.owner("carol")) == winners[0]  # type: ignore[attr-defined]


def test_a_draining_node_keeps_its_users_and_takes_no_new_one(redis_server: RedisServer) -> None:
    r: Any = redis_server.client()
    assert _assert(r, "a", "alice", "claim")[0] == "ok"
    r.hset(K.node("a"), "draining", "1")
    assert r.eval(scripts.HEARTBEAT, 2, K.node("a"), K.since, "epoch-a", 1500, "x", "0", 1) == [1, "1"]
    assert _assert(r, "a", "alice", "confirm")[0] == "ok"
    assert _assert(r, "a", "bob", "claim")[0] == "draining"
    assert r.get(K.owner("bob")) is None


def test_release_only_by_the_owner(redis_server: RedisServer) -> None:
    r: Any = redis_server.client()
    _assert(r, "a", "alice", "claim")
    assert r.eval(scripts.RELEASE, 1, K.owner("alice"), "b") == 0
    assert r.eval(scripts.RELEASE, 1, K.owner("alice"), "a") == 1
    assert r.get(K.owner("alice")) is None


def test_failure_counters_and_success_forgets_only_its_pair(redis_server: RedisServer) -> None:
    r: Any = redis_server.client()
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(K.throttle)

    def fail(address: str, user: str) -> list[int]:
        return [int(x) for x in r.eval(scripts.FAILURE, 3, *K.failures(address, user), 300_000, "1", 3, 3,
                                       K.throttle, "n1", address, user)]

    def announced() -> list[dict[str, Any]]:
        out = []
        while (m := pubsub.get_message(timeout=0.2)) is not None:
            out.append(json.loads(m["data"]))
        return out

    fail("10.0.0.1", "alice")
    fail("10.0.0.1", "alice")
    assert announced() == []
    assert fail("10.0.0.2", "alice") == [1, 3]
    got = announced()
    assert [(m["kind"], m["key"]) for m in got] == [("user", "alice")] and 0 < got[0]["ttl"] <= 300_000
    assert fail("10.0.0.1", "bob") == [3, 1]
    assert [(m["kind"], m["key"]) for m in announced()] == [("address", "10.0.0.1")]
    fail("10.0.0.1", "bob")
    assert announced() == []  # announced once, when the limit is reached
    addr, user, _pair = K.failures("10.0.0.1", "alice")
    assert 0 < r.pttl(addr) <= 300_000
    success = (scripts.SUCCESS, 3, *K.failures("10.0.0.1", "alice"), K.throttle, "n1", "10.0.0.1", "alice")
    assert r.eval(*success) == 2
    assert int(r.get(addr)) == 2  # bob's failures from that address stay
    assert int(r.get(user)) == 1  # alice's failure from the other address stays
    assert announced() == [{"node": "n1", "kind": "clear", "address": "10.0.0.1", "user": "alice",
                            "address_count": 2, "user_count": 1}]
    assert r.eval(*success) == 0


def test_fence_ends_a_dead_nodes_key_only_for_the_checked_processes(redis_server: RedisServer) -> None:
    """A claim meets a live owner with its evidence (host, epoch, pids); FENCE ends that key only while it
    names exactly the epoch and pids that were checked."""
    r: Any = redis_server.client()

    def renew(node: str, pid: int) -> None:
        r.eval(scripts.HEARTBEAT, 2, K.node(node), K.since, f"epoch-{node}", 1500, "x", "0", pid, "host-1")

    assert _assert(r, "a", "alice", "claim")[0] == "ok"
    renew("a", 7)
    renew("a", 12)
    got = r.eval(scripts.ASSERT, 3, K.node("b"), K.owner("alice"), K.since, "b", "epoch-b", 1500, "b:143", "0",
                 2, K.node(""), 0, "claim", 60_000, "host-1")
    assert got[0] == "taken" and got[1] == "a" and got[3:] == ["host-1", "epoch-a", "12,7"]  # (the first claim sent no host)
    assert r.eval(scripts.FENCE, 1, K.node("a"), "epoch-b", "12,7") == 0  # another epoch
    assert r.eval(scripts.FENCE, 1, K.node("a"), "epoch-a", "7") == 0  # a process not checked
    renew("a", 30)  # a process registered after the check
    assert r.eval(scripts.FENCE, 1, K.node("a"), "epoch-a", "12,7") == 0
    assert r.exists(K.node("a"))
    assert r.eval(scripts.FENCE, 1, K.node("a"), "epoch-a", "12,30,7") == 1
    assert not r.exists(K.node("a"))
    assert _assert(r, "b", "alice", "claim")[:2] == ["ok", "a"]  # taken over from the dead node at once
