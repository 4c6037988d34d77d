"""The whole chain with nothing simulated: backends in cluster mode (leases, change channel) on one shared
root, a real redis-server, and ``imapd proxy`` hibernating IDLE sessions. The change notices here come from
the backends themselves (not PUBLISHed by the test), and a drain or a kill moves the user's lease."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proxy.conftest import (
    Cluster,
    RunningProxy,
    RunningRedis,
    make_cluster,
    start_backend,
    teardown_cluster,
    wait_for,
)
from tests.rawimap import RawIMAP

APPEND = "APPEND INBOX {20+}\r\nSubject: a\r\n\r\nbody\r\n"


@pytest.fixture
def coordinated(tmp_path: Path, redis_server: RunningRedis) -> Iterator[Cluster]:
    """b1 and b2 in cluster mode: each node's Redis name is the name the proxy knows it by."""
    c = make_cluster(tmp_path, ())
    for node in ("b1", "b2"):
        c.backends[node] = start_backend(c.root, tmp_path, node, "-o", f"cluster.redis_url={redis_server.url}",
                                         "-o", f"cluster.node_id={node}", "-o", "store.watch=false")
    try:
        yield c
    finally:
        teardown_cluster(c)


def _hibernated(proxy: RunningProxy) -> int:
    return int(proxy.backends().rsplit("hibernated sessions:", 1)[1].split()[0])


def _idle(proxy: RunningProxy, tag: str) -> RawIMAP:
    imap = RawIMAP("127.0.0.1", proxy.port, timeout=15)
    imap.ok("LOGIN alice secret1")
    imap.ok("SELECT INBOX")
    imap.sock.sendall(tag.encode() + b" IDLE\r\n")
    assert imap.readline().startswith(b"+")
    return imap


def _append(proxy: RunningProxy) -> None:
    writer = RawIMAP("127.0.0.1", proxy.port, timeout=15)
    writer.ok("LOGIN alice secret1")
    writer.ok(APPEND)
    writer.command("LOGOUT")


@pytest.mark.serial  # timed: run alone, not beside another test (Makefile)
def test_backend_notice_wakes_a_hibernated_idle_session(coordinated: Cluster, redis_server: RunningRedis) -> None:
    proxy = coordinated.proxy("-o", "proxy.hibernate_after=0.3", "-o", f"cluster.redis_url={redis_server.url}")
    imap = _idle(proxy, "i1")
    wait_for(lambda: _hibernated(proxy) == 1, what="the IDLE session to hibernate")
    owner = redis_server.client().get("imapd:owner:alice")
    assert owner in ("b1", "b2")
    t0 = time.monotonic()
    _append(proxy)  # served by the owner, which publishes the commit on imapd:changes:alice
    lines = imap.read_until(rb"\* 1 EXISTS", timeout=5)
    assert time.monotonic() - t0 < 2.0
    assert not any(b"BYE" in line for line in lines)
    # Woken, told, and quiet again: it hibernates again rather than waking on its own restore.
    wait_for(lambda: _hibernated(proxy) == 1, what="the session to hibernate again")
    time.sleep(1.0)
    assert _hibernated(proxy) == 1
    imap.sock.sendall(b"DONE\r\n")
    assert imap.read_until(rb"^i1 ")[-1].startswith(b"i1 OK")
    imap.command("LOGOUT")


def test_drain_moves_the_session_and_the_lease(coordinated: Cluster, redis_server: RunningRedis) -> None:
    proxy = coordinated.proxy("-o", f"cluster.redis_url={redis_server.url}")
    imap = _idle(proxy, "i2")
    time.sleep(0.3)  # the SAVE at IDLE entry is answered
    r = redis_server.client()
    old = r.get("imapd:owner:alice")
    assert old in ("b1", "b2")
    new = "b2" if old == "b1" else "b1"
    proxy.backends("drain", old)
    assert r.hget(f"imapd:node:{old}", "draining") == "1"
    wait_for(lambda: r.get("imapd:owner:alice") == new, timeout=15, what="the lease to move to the other backend")
    _append(proxy)
    lines = imap.read_until(rb"\* 1 EXISTS", timeout=10)
    assert not any(b"BYE" in line for line in lines)
    imap.sock.sendall(b"DONE\r\n")
    assert imap.read_until(rb"^i2 ")[-1].startswith(b"i2 OK")
    proxy.backends("undrain", old)
    assert r.hget(f"imapd:node:{old}", "draining") is None


def test_owner_killed_hibernated_idle_told_of_new_mail(coordinated: Cluster, redis_server: RunningRedis) -> None:
    proxy = coordinated.proxy("-o", "proxy.hibernate_after=0.3", "-o", f"cluster.redis_url={redis_server.url}")
    imap = _idle(proxy, "i3")
    wait_for(lambda: _hibernated(proxy) == 1, what="the IDLE session to hibernate")
    r = redis_server.client()
    dead = r.get("imapd:owner:alice")
    coordinated.kill(dead)
    t0 = time.monotonic()
    _append(proxy)  # the survivor takes the user over once the dead node's liveness key expired
    lines = imap.read_until(rb"\* 1 EXISTS", timeout=10)
    elapsed = time.monotonic() - t0
    assert not any(b"BYE" in line for line in lines)
    assert r.get("imapd:owner:alice") != dead
    assert elapsed < 5.0, f"told after {elapsed:.2f} s"
    imap.sock.sendall(b"DONE\r\n")
    assert imap.read_until(rb"^i3 ")[-1].startswith(b"i3 OK")
