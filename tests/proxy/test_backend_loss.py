"""Backend loss (kill -9) and drain: quiet sessions are restored on another backend from their last token
and the client notices nothing; a session with a command in flight gets one `* BYE [UNAVAILABLE]`.

The change notice that wakes a hibernated IDLE session is PUBLISHed by the test (after a real change on a
backend), as the backends will once the Redis coordination branch lands.
"""

from __future__ import annotations

import json
import re
import time

from tests.proxy.conftest import Cluster, RunningProxy, RunningRedis, wait_for
from tests.rawimap import RawIMAP

APPEND = "APPEND INBOX {20+}\r\nSubject: a\r\n\r\nbody\r\n"


def _sessions_by_node(proxy: RunningProxy) -> dict[str, int]:
    out = proxy.backends()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s.*sessions=(\d+)", out, re.M)}


def _hibernated(proxy: RunningProxy) -> int:
    return int(proxy.backends().rsplit("hibernated sessions:", 1)[1].split()[0])


def _idle(proxy: RunningProxy, tag: str = "i1") -> RawIMAP:
    imap = RawIMAP("127.0.0.1", proxy.port, timeout=15)
    imap.ok("LOGIN alice secret1")
    imap.ok("SELECT INBOX")
    imap.sock.sendall(f"{tag} IDLE\r\n".encode())
    assert imap.readline().startswith(b"+")
    return imap


def _serving(proxy: RunningProxy) -> str:
    nodes = wait_for(lambda: [n for n, c in _sessions_by_node(proxy).items() if c], what="an attached session")
    assert isinstance(nodes, list) and len(nodes) == 1
    return str(nodes[0])


def test_kill_restores_idle_and_hibernated_sessions(cluster: Cluster, redis_server: RunningRedis) -> None:
    sleepy = cluster.proxy("-o", "proxy.hibernate_after=0.3", "-o", f"cluster.redis_url={redis_server.url}")
    awake = cluster.proxy()
    hibernated = _idle(sleepy, "h1")
    wait_for(lambda: _hibernated(sleepy) == 1, what="the IDLE session to hibernate")
    attached = _idle(awake, "a1")
    time.sleep(0.3)  # the SAVE at IDLE entry is answered
    dead = _serving(awake)
    alive = next(n for n in cluster.backends if n != dead)
    cluster.kill(dead)
    wait_for(lambda: _sessions_by_node(awake).get(alive) == 1, what="the attached IDLE session on the other backend")
    writer = RawIMAP("127.0.0.1", awake.port, timeout=15)
    writer.ok("LOGIN alice secret1")
    writer.ok(APPEND)
    writer.command("LOGOUT")
    lines = attached.read_until(rb"\* 1 EXISTS", timeout=5)  # the new backend's own IDLE tells it
    redis_server.client().publish("imapd:changes:alice", json.dumps(
        {"node": alive, "user": "alice", "mailbox": "INBOX", "uidvalidity": 1, "modseq": 0, "kind": "new"}))
    lines += hibernated.read_until(rb"\* 1 EXISTS", timeout=10)
    assert not any(b"BYE" in line for line in lines)
    for imap, tag in ((attached, b"a1"), (hibernated, b"h1")):
        imap.sock.sendall(b"DONE\r\n")
        assert imap.read_until(rb"^" + tag + rb" ")[-1].startswith(tag + b" OK")
        untagged = imap.ok("FETCH 1 (FLAGS)")
        assert b"FETCH" in untagged[0]
    assert f"session of alice restored on {alive} after losing {dead}" in awake.log()


def test_command_in_flight_gets_one_bye(cluster: Cluster) -> None:
    proxy = cluster.proxy()
    imap = RawIMAP("127.0.0.1", proxy.port, timeout=15)
    imap.ok("LOGIN alice secret1")
    imap.sock.sendall(b"a1 APPEND INBOX {100}\r\n")
    assert imap.readline().startswith(b"+")
    cluster.kill(_serving(proxy))
    rest = b""
    while True:
        chunk = imap.sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    assert rest == b"* BYE [UNAVAILABLE] Backend lost, please reconnect\r\n"


def test_drain_moves_an_idle_session(cluster: Cluster) -> None:
    proxy = cluster.proxy()
    imap = _idle(proxy)
    time.sleep(0.3)
    old = _serving(proxy)
    new = next(n for n in cluster.backends if n != old)
    proxy.backends("drain", old)
    wait_for(lambda: _sessions_by_node(proxy) == {old: 0, new: 1}, what="the session to move")
    writer = RawIMAP("127.0.0.1", proxy.port, timeout=15)
    writer.ok("LOGIN alice secret1")  # a drained backend takes no new sessions
    writer.ok(APPEND)
    assert _sessions_by_node(proxy)[old] == 0
    lines = imap.read_until(rb"\* 1 EXISTS", timeout=5)
    assert not any(b"BYE" in line for line in lines)
    imap.sock.sendall(b"DONE\r\n")
    assert imap.read_until(rb"^i1 ")[-1].startswith(b"i1 OK")
    proxy.backends("undrain", old)
