"""Two real nodes on one shared mail root, coordinated by a real redis-server: the contract keys, leases
and their failover, cross-node change notices, a Redis outage, and the cluster-wide login, X-STATE and
kick records."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import ClusterRoot, RedisServer, free_port, start_node
from tests.conftest import RunningServer, imapd_cli
from tests.e2e.test_xstate import token_of
from tests.rawimap import RawIMAP

pytestmark = pytest.mark.timeout(120)


def login(node: RunningServer, user: str = "alice", password: str | None = None) -> RawIMAP:
    client = RawIMAP(node.host, node.port)
    client.ok(f"LOGIN {user} {password or node.users[user]}")
    return client


def wait_for(what: str, check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def append(client: RawIMAP, subject: str) -> bytes:
    body = f"Subject: {subject}\r\nFrom: a@example.org\r\n\r\n{subject}\r\n".encode()
    _, tagged = client.command(b"APPEND INBOX {" + str(len(body)).encode() + b"+}\r\n" + body)
    return tagged


def index_subjects(root: ClusterRoot, user: str = "alice") -> list[str]:
    """What the user's index holds, read directly (the SQLite file on the shared root)."""
    import sqlite3

    conn = sqlite3.connect(root.mail / user / "imapd-index.sqlite")
    try:
        names = [row[0] for row in conn.execute("SELECT fname FROM messages")]
    finally:
        conn.close()
    out = []
    for fname in names:
        for sub in ("cur", "new"):
            path = root.mail / user / sub / fname
            if path.exists():
                out.append(path.read_bytes().split(b"\r\n", 1)[0].decode())
    return out


def files_in_inbox(root: ClusterRoot, user: str = "alice") -> int:
    return sum(len(os.listdir(root.mail / user / sub)) for sub in ("cur", "new"))


# -- the contract ----------------------------------------------------------------------------------------------
def test_node_registry_owner_record_and_change_channel(cluster_root: ClusterRoot, redis_server: RedisServer,
                                                       nodes: list[RunningServer]) -> None:
    a = start_node(cluster_root, "a", redis_server)
    nodes.append(a)
    r: Any = redis_server.client()
    info = r.hgetall("imapd:node:a")
    wait_for("the bound port advertised", lambda: r.hget("imapd:node:a", "imap") == f"127.0.0.1:{a.port}")
    assert float(info["started"]) > 0
    assert 0 < r.pttl("imapd:node:a") <= 1500
    pubsub = r.pubsub()
    pubsub.subscribe("imapd:changes:alice")
    client = login(a)
    assert r.get("imapd:owner:alice") == "a"
    assert b"OK" in append(client, "hello")
    got = wait_for("a change message", lambda: pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1))
    message = json.loads(got["data"])
    assert message["node"] == "a" and message["user"] == "alice" and message["mailbox"] == "INBOX"
    assert message["kind"] == "append" and message["uidvalidity"] > 0 and message["modseq"] > 0
    client.ok("LOGOUT")


# -- leases ------------------------------------------------------------------------------------------------------
def test_login_on_a_second_node_waits_then_unavailable(cluster_root: ClusterRoot, redis_server: RedisServer,
                                                       nodes: list[RunningServer]) -> None:
    a = start_node(cluster_root, "a", redis_server)
    nodes.append(a)
    b = start_node(cluster_root, "b", redis_server)
    nodes.append(b)
    held = login(a)
    other = RawIMAP(b.host, b.port)
    started = time.monotonic()
    _, tagged = other.command("LOGIN alice secret1")
    assert tagged.split()[1:3] == [b"NO", b"[UNAVAILABLE]"], tagged
    assert not re.search(rb"\ba\b|node|127\.0\.0\.1", tagged)  # names nothing of the cluster
    assert time.monotonic() - started >= 0.9  # it waited cluster.login_wait for a hand-over first
    login(b, "bob").ok("LOGOUT")  # other users are served there
    held.ok("LOGOUT")
    a.proc.send_signal(signal.SIGTERM)  # a clean stop hands alice back at once
    a.proc.wait(timeout=15)
    login(b).ok("LOGOUT")


@pytest.mark.serial  # timed: run alone, not beside another test (Makefile)
def test_drain_hands_back_idle_users_and_takes_no_new_one(cluster_root: ClusterRoot, redis_server: RedisServer,
                                                          nodes: list[RunningServer]) -> None:
    a = start_node(cluster_root, "a", redis_server)
    nodes.append(a)
    b = start_node(cluster_root, "b", redis_server)
    nodes.append(b)
    login(a).ok("LOGOUT")  # a holds alice's lease (cluster.release_after: 300 s)
    held = login(a, "bob")  # and bob's, with a session
    r: Any = redis_server.client()
    assert r.get("imapd:owner:alice") == "a"
    r.hset("imapd:node:a", "draining", "1")  # what `imapd proxy backends drain` sets
    wait_for("alice handed back", lambda: r.get("imapd:owner:alice") is None, timeout=3)
    assert r.get("imapd:owner:bob") == "a"  # a session still runs there
    started = time.monotonic()
    _, tagged = RawIMAP(a.host, a.port).command("LOGIN alice secret1")
    assert b"NO [UNAVAILABLE]" in tagged and time.monotonic() - started < 0.9  # refused without waiting
    login(b).ok("LOGOUT")
    held.ok("LOGOUT")
    wait_for("bob handed back", lambda: r.get("imapd:owner:bob") is None, timeout=3)
    assert "draining" in a.log()


def test_failover_after_sigstop_refuses_the_old_owners_pending_write(
        cluster_root: ClusterRoot, redis_server: RedisServer, nodes: list[RunningServer]) -> None:
    """The issue's proof: the old owner is frozen with a write in its socket buffer; its lease runs out,
    another node takes the user over and writes; once resumed, the old owner refuses the write, which
    never reaches the index nor the Maildir."""
    a = start_node(cluster_root, "a", redis_server)
    nodes.append(a)
    b = start_node(cluster_root, "b", redis_server)
    nodes.append(b)
    old = login(a)
    old.ok("SELECT INBOX")
    assert b"OK" in append(old, "before the freeze")
    r: Any = redis_server.client()
    a.proc.send_signal(signal.SIGSTOP)
    try:
        body = b"Subject: from the frozen node\r\n\r\nlate\r\n"
        old.sock.sendall(b"w1 APPEND INBOX {" + str(len(body)).encode() + b"+}\r\n" + body + b"\r\n")
        wait_for("node a's liveness key to expire", lambda: not r.exists("imapd:node:a"), timeout=5)
        new = login(b)  # the takeover
        assert r.get("imapd:owner:alice") == "b"
        assert b"OK" in append(new, "from the new owner")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    lines = []
    try:
        while True:
            line = old.readline()
            lines.append(line)
            if line.startswith((b"w1 ", b"* BYE")):
                break
    except (ConnectionError, OSError):
        pass
    answer = b"".join(lines)
    assert b"UNAVAILABLE" in answer and b"w1 OK" not in answer, answer
    time.sleep(0.5)
    assert sorted(index_subjects(cluster_root)) == ["Subject: before the freeze", "Subject: from the new owner"]
    assert files_in_inbox(cluster_root) == 2  # no file of the refused APPEND either
    new.ok("NOOP")
    untagged = new.ok("SELECT INBOX")
    assert b"* 2 EXISTS" in untagged
    assert "lost user alice to node b" in a.log()
    assert r.get("imapd:owner:alice") == "b"  # the resumed node did not take it back
    new.ok("LOGOUT")


def test_frozen_with_a_redis_call_in_flight_is_no_outage(cluster_root: ClusterRoot, redis_server: RedisServer,
                                                         nodes: list[RunningServer]) -> None:
    """Frozen while its heartbeat waits for Redis, the node resumes with that call's deadline long past:
    that time-out must not count as a Redis outage (outage mode would let the stale write through)."""
    import threading

    a = start_node(cluster_root, "a", redis_server)
    nodes.append(a)
    b = start_node(cluster_root, "b", redis_server)
    nodes.append(b)
    old = login(a)
    old.ok("SELECT INBOX")
    r: Any = redis_server.client()
    sleeper = threading.Thread(target=lambda: redis_server.client().execute_command(  # type: ignore[attr-defined]
        "DEBUG", "SLEEP", "0.45"))
    sleeper.start()
    time.sleep(0.4)  # a's heartbeat (every 0.3 s) now waits for the sleeping Redis
    a.proc.send_signal(signal.SIGSTOP)
    try:
        sleeper.join()
        body = b"Subject: stale\r\n\r\nlate\r\n"
        old.sock.sendall(b"w1 APPEND INBOX {" + str(len(body)).encode() + b"+}\r\n" + body + b"\r\n")
        wait_for("node a's liveness key to expire", lambda: not r.exists("imapd:node:a"), timeout=5)
        new = login(b)
        time.sleep(0.6)  # past every deadline a had running
    finally:
        a.proc.send_signal(signal.SIGCONT)
    answer = b""
    try:
        while not answer.endswith(b"\r\n") or not (b"w1 " in answer or b"* BYE" in answer):
            answer += old.readline()
    except (ConnectionError, OSError):
        pass
    assert b"UNAVAILABLE" in answer and b"w1 OK" not in answer, answer
    assert index_subjects(cluster_root) == []
    assert files_in_inbox(cluster_root) == 0
    assert "outage mode" not in a.log()
    new.ok("LOGOUT")


@pytest.mark.serial  # timed: run alone, not beside another test (Makefile)
def test_killed_node_users_taken_over_within_two_seconds(cluster_root: ClusterRoot, redis_server: RedisServer,
                                                         nodes: list[RunningServer]) -> None:
    a = start_node(cluster_root, "a", redis_server)
    nodes.append(a)
    b = start_node(cluster_root, "b", redis_server, "-o", "cluster.login_wait=3.0")
    nodes.append(b)
    login(a).ok("SELECT INBOX")
    a.proc.kill()
    a.proc.wait()
    killed = time.monotonic()
    client = login(b)
    # the key lapses lease_ttl (1.5 s) after a's last renewal, then b's claim retries every 0.3 s at most;
    # the 2 s goal holds in bench/cluster_leases.py, this leaves slack for a loaded test machine
    assert time.monotonic() - killed < 2.5
    client.ok("LOGOUT")


def test_a_killed_node_on_this_host_is_proven_dead_before_its_lease_runs_out(
        cluster_root: ClusterRoot, redis_server: RedisServer, nodes: list[RunningServer]) -> None:
    """With a 6 s lease, a kill -9 of the owner frees its users at once for a peer on the same host (its
    pid is gone: imapd/cluster/death.py); the peer writes right away, the user's index is intact."""
    slow = ("-o", "cluster.lease_ttl=6", "-o", "cluster.heartbeat_interval=1", "-o", "cluster.login_wait=3.0")
    a = start_node(cluster_root, "a", redis_server, *slow)
    nodes.append(a)
    b = start_node(cluster_root, "b", redis_server, *slow, "-o", f"lmtp.listen=\"127.0.0.1:{free_port()}\"")
    nodes.append(b)
    old = login(a)
    old.ok("SELECT INBOX")
    assert b"OK" in append(old, "before the kill")
    login(a, "bob").ok("SELECT INBOX")
    r: Any = redis_server.client()
    assert r.hget("imapd:node:a", f"pid:{a.proc.pid}") == "1" and r.hget("imapd:node:a", "host")
    a.proc.kill()
    a.proc.wait()
    killed = time.monotonic()
    # both of a's users at once: the claims race to end a's key; each must then take its user
    import threading

    def deliver(user: str) -> None:
        with smtplib.LMTP(*_lmtp_address(b)) as lmtp:
            lmtp.sendmail("s@example.org", [user], b"Subject: delivered after the kill\r\n\r\nhi\r\n")

    both = [threading.Thread(target=deliver, args=(u,)) for u in ("alice", "bob")]
    for t in both:
        t.start()
    for t in both:
        t.join()
    assert r.get("imapd:owner:bob") == "b"
    assert len(index_subjects(cluster_root, "bob")) == 1  # indexed by b (not a file left in new/)
    assert files_in_inbox(cluster_root, "bob") == 1 and not os.listdir(cluster_root.mail / "bob" / "new")
    new = login(b)
    took = time.monotonic() - killed
    assert took < 1.0, took  # not the 6 s of the lease
    assert r.get("imapd:owner:alice") == "b" and not r.exists("imapd:node:a")
    assert b"OK" in append(new, "after the kill")
    subjects = index_subjects(cluster_root)
    assert len(subjects) == 3 and {"Subject: after the kill", "Subject: before the kill"} <= set(subjects)
    assert "node a is dead" in b.log()
    new.ok("LOGOUT")


def test_a_stopped_node_is_not_taken_for_dead(cluster_root: ClusterRoot, redis_server: RedisServer,
                                              nodes: list[RunningServer]) -> None:
    """SIGSTOP: the process exists, so no peer may end its lease early; a login elsewhere waits and is
    refused while the key lives."""
    slow = ("-o", "cluster.lease_ttl=6", "-o", "cluster.heartbeat_interval=1")
    a = start_node(cluster_root, "a", redis_server, *slow)
    nodes.append(a)
    b = start_node(cluster_root, "b", redis_server, *slow)
    nodes.append(b)
    login(a).ok("SELECT INBOX")
    r: Any = redis_server.client()
    a.proc.send_signal(signal.SIGSTOP)
    try:
        other = RawIMAP(b.host, b.port)
        _, tagged = other.command("LOGIN alice secret1")
        assert tagged.split()[1:3] == [b"NO", b"[UNAVAILABLE]"], tagged
        assert r.exists("imapd:node:a") and r.get("imapd:owner:alice") == "a"
    finally:
        a.proc.send_signal(signal.SIGCONT)
    assert "is dead" not in b.log()


# -- changes from other nodes --------------------------------------------------------------------------------------
def _lmtp_address(node: RunningServer) -> tuple[str, int]:
    text = wait_for("the LMTP address", lambda: (node.data_dir / "run" / "lmtp").exists()
                    and (node.data_dir / "run" / "lmtp").read_text().strip())
    host, _, port = text.rpartition(":")
    return host, int(port)


@pytest.mark.serial  # timed: run alone, not beside another test (Makefile)
def test_delivery_on_another_node_reaches_the_owners_idle_session(
        cluster_root: ClusterRoot, redis_server: RedisServer, nodes: list[RunningServer]) -> None:
    a = start_node(cluster_root, "a", redis_server)
    nodes.append(a)
    b = start_node(cluster_root, "b", redis_server, "-o", f"lmtp.listen=\"127.0.0.1:{free_port()}\"")
    nodes.append(b)
    client = login(a)
    assert b"* 0 EXISTS" in client.ok("SELECT INBOX")
    client.sock.sendall(b"i1 IDLE\r\n")
    assert client.readline().startswith(b"+")
    with smtplib.LMTP(*_lmtp_address(b)) as lmtp:
        lmtp.sendmail("s@example.org", ["alice"], b"Subject: over lmtp on b\r\n\r\nhi\r\n")
    sent = time.monotonic()
    client.sock.settimeout(5)
    line = client.readline()
    assert line == b"* 1 EXISTS\r\n", line
    assert time.monotonic() - sent < 2.0
    client.sock.sendall(b"DONE\r\n")
    client.readline()
    assert len(index_subjects(cluster_root)) == 1  # indexed by a, the owner
    assert "for the node that serves the user" in b.log()


def test_a_delivery_for_another_nodes_user_runs_its_sieve_script_on_the_owner(
        cluster_root: ClusterRoot, redis_server: RedisServer, nodes: list[RunningServer]) -> None:
    """LMTP on b for alice, whom a serves: b hands the copy to a's LMTP listener (registered in a's node
    key), so alice's script files it into "Lists" and a indexes it; nothing lands in INBOX new/."""
    from imapd.sieve.scripts import ScriptStore

    a_lmtp = free_port()
    a = start_node(cluster_root, "a", redis_server, "-o", f"lmtp.listen=\"127.0.0.1:{a_lmtp}\"")
    nodes.append(a)
    b = start_node(cluster_root, "b", redis_server, "-o", f"lmtp.listen=\"127.0.0.1:{free_port()}\"")
    nodes.append(b)
    scripts = ScriptStore(str(cluster_root.mail / "alice"))
    scripts.put("lists", 'require ["fileinto", "mailbox"];\n'
                         'if header :contains "subject" "[list]" { fileinto :create "Lists"; stop; }\n')
    scripts.set_active("lists")
    client = login(a)
    client.ok("SELECT INBOX")
    r: Any = redis_server.client()
    assert r.hget("imapd:node:a", "lmtp") == f"127.0.0.1:{a_lmtp}"
    with smtplib.LMTP(*_lmtp_address(b)) as lmtp:
        lmtp.sendmail("s@example.org", ["alice"], b"Subject: [list] via b\r\n\r\nhi\r\n")
    untagged = client.ok('STATUS "Lists" (MESSAGES)')
    assert b"MESSAGES 1" in b"".join(untagged), untagged
    assert b"* 0 EXISTS" in client.ok("SELECT INBOX")  # filed by the script, not kept
    assert "handed to node a over LMTP" in b.log()
    assert files_in_inbox(cluster_root) == 0
    client.ok("LOGOUT")


# -- Redis down ------------------------------------------------------------------------------------------------------
def _metric(port: int, name: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rpartition(" ")[2])
    return 0.0


def test_redis_outage_keeps_serving_and_reconnects(cluster_root: ClusterRoot, redis_server: RedisServer,
                                                   nodes: list[RunningServer]) -> None:
    metrics = free_port()
    a = start_node(cluster_root, "a", redis_server, "-o", f"metrics.listen=\"127.0.0.1:{metrics}\"")
    nodes.append(a)
    b = start_node(cluster_root, "b", redis_server, "-o", f"lmtp.listen=\"127.0.0.1:{free_port()}\"")
    nodes.append(b)
    client = login(a)
    client.ok("SELECT INBOX")
    assert _metric(metrics, "imapd_cluster_redis_up") == 1
    redis_server.stop()
    wait_for("outage mode", lambda: _metric(metrics, "imapd_cluster_redis_up") == 0, timeout=5)
    time.sleep(2.0)  # past the lease: a node that had no outage mode would stop here
    for n in range(3):
        assert b"OK" in append(client, f"during the outage {n}")
    assert _metric(metrics, "imapd_cluster_outage_writes_total") >= 3
    assert "unreachable" in a.log() and "outage mode" in a.log()
    other = RawIMAP(a.host, a.port)  # a user it did not own before: refused, nobody can hand it over
    _, tagged = other.command("LOGIN bob secret2")
    assert b"NO [UNAVAILABLE]" in tagged
    # a delivery on b meanwhile: b cannot learn who owns alice, so it stores the file alone, and its
    # notice cannot go out; a finds the message at its next command (late, never wrong)
    with smtplib.LMTP(*_lmtp_address(b)) as lmtp:
        lmtp.sendmail("s@example.org", ["alice"], b"Subject: delivered during the outage\r\n\r\nhi\r\n")
    assert b"* 4 EXISTS" in client.ok("NOOP")
    redis_server.start()  # empty, as after a crash without persistence
    wait_for("the reconnect", lambda: _metric(metrics, "imapd_cluster_reconnects_total") >= 1, timeout=10)
    r: Any = redis_server.client()
    wait_for("alice re-asserted", lambda: r.get("imapd:owner:alice") == "a", timeout=5)
    assert r.exists("imapd:node:a")
    assert b"OK" in append(client, "after the outage")
    untagged = client.ok("SELECT INBOX")
    assert b"* 5 EXISTS" in untagged
    assert "reachable again" in a.log()


def test_a_hung_redis_costs_requests_one_timeout_per_outage(cluster_root: ClusterRoot, redis_server: RedisServer,
                                                            nodes: list[RunningServer]) -> None:
    """SIGSTOP of redis-server: once the node found it hung (one cluster.timeout), logins of the users it
    owns no longer wait for Redis each (the breaker); when Redis answers again the node is back at once."""
    a = start_node(cluster_root, "a", redis_server, "-o", "cluster.reconnect_max=5")
    nodes.append(a)
    held = login(a)
    held.ok("SELECT INBOX")
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for("outage mode", lambda: "outage mode" in a.log(), timeout=5)
        time.sleep(1.5)  # past lease_ttl - heartbeat_interval: alice's lease is no longer fresh in memory
        walls = []
        for _ in range(5):
            started = time.monotonic()
            login(a).ok("LOGOUT")  # alice's lease is stale in memory: without the breaker each waits 0.5 s
            walls.append(time.monotonic() - started)
        assert max(walls) < 0.3, walls
        assert b"OK" in append(held, "while Redis hangs")
        _, tagged = RawIMAP(a.host, a.port).command("LOGIN bob secret2")  # not owned: refused, at once
        assert b"NO [UNAVAILABLE]" in tagged
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    # the reconnect loop sits in a backoff of up to 5 s; a request that met the open breaker asks it to
    # probe now, so a login soon finds Redis back
    started = time.monotonic()
    while True:
        _, tagged = RawIMAP(a.host, a.port).command("LOGIN bob secret2")
        if b" OK " in tagged or time.monotonic() - started > 3:
            break
        time.sleep(0.05)
    assert b" OK " in tagged and time.monotonic() - started < 1.5, tagged
    assert "reachable again" in a.log()


def test_after_an_outage_an_idle_owned_user_is_reasserted_whatever_call_comes_first(
        cluster_root: ClusterRoot, redis_server: RedisServer, nodes: list[RunningServer]) -> None:
    """A login's claim may be the first call to reach Redis again (the heartbeat sits in its backoff).
    It re-creates the node key, so the heartbeat that follows sees neither an outage nor a lapse; the
    reconnect itself must re-assert every user, or a user with only an IDLE session here keeps no owner
    record and, at its next write after the re-assert window, is given up: BYE to its IDLE client."""
    a = start_node(cluster_root, "a", redis_server, "-o", "cluster.reconnect_max=5")
    nodes.append(a)
    idle = login(a)  # alice: a session that writes nothing
    idle.ok("SELECT INBOX")
    login(a, "bob").ok("LOGOUT")
    redis_server.stop()
    wait_for("outage mode", lambda: "outage mode" in a.log(), timeout=5)
    time.sleep(2.0)  # the heartbeat's backoff is past 1.6 s now
    redis_server.start()
    login(a, "bob").ok("LOGOUT")  # the first call to reach the new Redis
    r: Any = redis_server.client()
    wait_for("alice re-asserted", lambda: r.get("imapd:owner:alice") == "a", timeout=2)
    assert b"OK" in append(idle, "after the outage")


def test_deliveries_during_an_outage_reach_the_idle_client_once_redis_is_back(
        cluster_root: ClusterRoot, redis_server: RedisServer, nodes: list[RunningServer]) -> None:
    """B stores a delivery for A's user as a file alone while neither reaches Redis, so its notice cannot
    go out; once Redis is back the IDLE client on A is told, without waiting for its next command."""
    a = start_node(cluster_root, "a", redis_server)
    nodes.append(a)
    b = start_node(cluster_root, "b", redis_server, "-o", f"lmtp.listen=\"127.0.0.1:{free_port()}\"")
    nodes.append(b)
    idle = login(a)
    idle.ok("SELECT INBOX")
    idle.sock.sendall(b"i IDLE\r\n")
    assert idle.readline().startswith(b"+")
    redis_server.stop()
    wait_for("outage mode", lambda: "outage mode" in a.log() and "outage mode" in b.log(), timeout=5)
    with smtplib.LMTP(*_lmtp_address(b)) as lmtp:
        lmtp.sendmail("s@example.org", ["alice"], b"Subject: delivered during the outage\r\n\r\nhi\r\n")
    redis_server.start()
    idle.sock.settimeout(8)
    line = idle.readline()
    assert line == b"* 1 EXISTS\r\n", line
    idle.sock.sendall(b"DONE\r\n")
    while not idle.readline().startswith(b"i "):
        pass
    assert len(index_subjects(cluster_root)) == 1  # in the index, once


# -- logins, X-STATE, kick -------------------------------------------------------------------------------------------
def test_failed_logins_count_across_nodes(cluster_root: ClusterRoot, redis_server: RedisServer,
                                          nodes: list[RunningServer]) -> None:
    opts = ("-o", "auth.max_user_failures=3", "-o", "auth.max_failures=100")
    a = start_node(cluster_root, "a", redis_server, *opts)
    nodes.append(a)
    b = start_node(cluster_root, "b", redis_server, *opts)
    nodes.append(b)
    for _ in range(3):
        _, tagged = RawIMAP(a.host, a.port).command("LOGIN alice wrong")
        assert b"NO [AUTHENTICATIONFAILED]" in tagged
    r: Any = redis_server.client()
    wait_for("the counter", lambda: int(r.get("imapd:authfail:user:alice") or 0) >= 3)
    assert 0 < r.pttl("imapd:authfail:user:alice") <= 300_000
    time.sleep(0.2)  # the announcement on the throttle channel
    _, tagged = RawIMAP(b.host, b.port).command("LOGIN alice secret1")  # right password, other node
    assert b"NO [AUTHENTICATIONFAILED]" in tagged
    assert "reason=throttled (user)" in b.log()
    login(b, "bob").ok("LOGOUT")
    r.delete("imapd:authfail:user:alice")  # an operator lifting it in Redis does not reach the nodes' memory:
    _, tagged = RawIMAP(b.host, b.port).command("LOGIN alice secret1")  # the throttle holds for its window
    assert b"NO [AUTHENTICATIONFAILED]" in tagged


def test_revocation_on_one_node_is_refused_on_another(cluster_root: ClusterRoot, redis_server: RedisServer,
                                                      nodes: list[RunningServer]) -> None:
    a = start_node(cluster_root, "a", redis_server)
    nodes.append(a)
    b = start_node(cluster_root, "b", redis_server)
    nodes.append(b)
    client = login(a)
    client.ok("SELECT INBOX")
    token = token_of(client.ok("X-STATE SAVE"))
    client.ok("X-STATE REVOKE")
    client.ok("LOGOUT")
    r: Any = redis_server.client()
    assert len(r.keys("imapd:revoked:*")) == 1
    _, tagged = RawIMAP(b.host, b.port).command(f"X-STATE RESTORE {token}")  # from Redis
    assert b"NO [X-STATE-EXPIRED]" in tagged, tagged
    _, tagged = RawIMAP(a.host, a.port).command(f"X-STATE RESTORE {token}")  # the owner: from its index
    assert b"NO [X-STATE-EXPIRED]" in tagged, tagged


def test_kick_closes_the_users_sessions_everywhere(cluster_root: ClusterRoot, redis_server: RedisServer,
                                                   nodes: list[RunningServer], tmp_path: Path) -> None:
    a = start_node(cluster_root, "a", redis_server)
    nodes.append(a)
    client = login(a)
    client.ok("SELECT INBOX")
    bob = login(a, "bob")
    proc = imapd_cli("kick", "alice", "-o", f"cluster.redis_url={redis_server.url}")
    assert b"kicked alice" in proc.stdout
    client.sock.settimeout(5)
    assert client.readline().startswith(b"* BYE")
    bob.ok("NOOP")  # other users stay
    bob.ok("LOGOUT")
