"""Hibernation in the proxy: a quiet session loses its backend connection and keeps only its socket and a
token; it wakes on the client's next command, or in IDLE on a change published in Redis.

Until the backends publish their changes (the Redis coordination branch), the tests that need a change
notice make a real change on the backend (an APPEND through another connection) and then PUBLISH the
contract's JSON message on ``{prefix}changes:{user}`` themselves, as a backend will.
"""

from __future__ import annotations

import json
import time

from tests.proxy.conftest import Cluster, RunningProxy, RunningRedis, wait_for
from tests.rawimap import RawIMAP

APPEND = "APPEND INBOX {20+}\r\nSubject: a\r\n\r\nbody\r\n"


def _hibernated(proxy: RunningProxy) -> int:
    out = proxy.backends()
    return int(out.rsplit("hibernated sessions:", 1)[1].split()[0])


def _attached(proxy: RunningProxy) -> int:
    return sum(int(part.split("=")[1]) for part in proxy.backends().split() if part.startswith("sessions="))


def _login(proxy: RunningProxy) -> RawIMAP:
    imap = RawIMAP("127.0.0.1", proxy.port, timeout=15)
    imap.ok("LOGIN alice secret1")
    return imap


def _publish(redis: RunningRedis, mailbox: str = "INBOX", kind: str = "new") -> float:
    message = {"node": "b1", "user": "alice", "mailbox": mailbox, "uidvalidity": 1, "modseq": 0, "kind": kind}
    t0 = time.monotonic()
    redis.client().publish("imapd:changes:alice", json.dumps(message))
    return t0


def test_between_commands_without_redis(cluster: Cluster) -> None:
    proxy = cluster.proxy("-o", "proxy.hibernate_after=0.3")
    imap = _login(proxy)
    imap.ok("ENABLE CONDSTORE")
    wait_for(lambda: _hibernated(proxy) == 1, what="the session to hibernate")
    assert _attached(proxy) == 0  # no backend connection is kept
    untagged = imap.ok(APPEND)
    assert untagged == []
    untagged = imap.ok("SELECT INBOX")
    assert any(b"HIGHESTMODSEQ" in line for line in untagged)  # CONDSTORE survived: restored from the token
    wait_for(lambda: _hibernated(proxy) == 1, what="the selected session to hibernate")
    imap.command("LOGOUT")


def test_selected_between_commands_keeps_the_clients_numbers(cluster: Cluster) -> None:
    """RFC 3501 7.4.1 across a hibernation: a FETCH by sequence number that wakes the session is answered in
    the client's numbering, with no EXPUNGE; the next NOOP delivers it (X-STATE RESTORE ... PENDING)."""
    proxy = cluster.proxy("-o", "proxy.hibernate_after=0.3")
    imap = _login(proxy)
    imap.ok("CREATE Keep")
    for i in range(4):
        text = f"Subject: m{i}\r\n\r\nx\r\n"
        imap.ok(f"APPEND Keep {{{len(text)}+}}\r\n{text}")
    imap.ok("SELECT Keep")
    wait_for(lambda: _hibernated(proxy) == 1, what="the selected session to hibernate")
    other = RawIMAP("127.0.0.1", proxy.port, timeout=15)
    other.ok("LOGIN alice secret1")
    other.ok("SELECT Keep")
    other.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    other.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")  # the client's message 3
    other.command("LOGOUT")
    untagged = imap.ok("FETCH 3 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert not any(b"EXPUNGE" in line for line in untagged)
    third = b"".join(line for line in untagged if line.startswith(b"* 3 FETCH"))
    assert b"m2" in third and b"\\Flagged" in third
    untagged = imap.ok("NOOP")
    assert b"* 2 EXPUNGE" in untagged
    imap.command("LOGOUT")


def test_idle_without_redis_stays_attached(cluster: Cluster) -> None:
    proxy = cluster.proxy("-o", "proxy.hibernate_after=0.3")
    imap = _login(proxy)
    imap.ok("SELECT INBOX")
    imap.sock.sendall(b"i1 IDLE\r\n")
    assert imap.readline().startswith(b"+")
    time.sleep(1.0)
    assert _hibernated(proxy) == 0  # nothing could wake it on new mail
    other = _login(proxy)
    other.ok(APPEND)
    assert imap.read_until(rb"EXISTS")  # the backend's own IDLE
    imap.sock.sendall(b"DONE\r\n")
    imap.read_until(rb"^i1 OK")


def test_idle_hibernates_and_wakes_on_change(cluster: Cluster, redis_server: RunningRedis) -> None:
    proxy = cluster.proxy("-o", "proxy.hibernate_after=0.3", "-o", f"cluster.redis_url={redis_server.url}")
    imap = _login(proxy)
    imap.ok("SELECT INBOX")
    imap.sock.sendall(b"idle7 IDLE\r\n")
    assert imap.readline().startswith(b"+")
    wait_for(lambda: _hibernated(proxy) == 1, what="the IDLE session to hibernate")
    assert _attached(proxy) == 0
    other = _login(proxy)
    other.ok(APPEND)
    other.command("LOGOUT")
    _publish(redis_server, mailbox="Other")  # another mailbox: no wake
    time.sleep(0.5)
    assert _hibernated(proxy) == 1
    _publish(redis_server)
    lines = imap.read_until(rb"\* 1 EXISTS", timeout=5)
    assert not any(b"BYE" in line for line in lines)
    # Still in IDLE (on a backend again, then hibernated again: it is quiet); DONE ends it with the
    # client's own tag.
    wait_for(lambda: _hibernated(proxy) == 1, what="the IDLE session to hibernate again")
    imap.sock.sendall(b"DONE\r\n")
    lines = imap.read_until(rb"^idle7 ")
    assert lines[-1].startswith(b"idle7 OK")
    untagged = imap.ok("FETCH 1 (FLAGS)")
    assert untagged and b"FETCH" in untagged[0]
    imap.command("LOGOUT")


def test_idle_wakes_on_client_done_and_kick(cluster: Cluster, redis_server: RunningRedis) -> None:
    proxy = cluster.proxy("-o", "proxy.hibernate_after=0.3", "-o", f"cluster.redis_url={redis_server.url}")
    imap = _login(proxy)
    imap.ok("SELECT INBOX")
    imap.sock.sendall(b"x IDLE\r\n")
    assert imap.readline().startswith(b"+")
    wait_for(lambda: _hibernated(proxy) == 1, what="hibernation")
    imap.sock.sendall(b"DONE\r\n")
    assert imap.read_until(rb"^x ")[-1].startswith(b"x OK")
    imap.sock.sendall(b"y IDLE\r\n")
    assert imap.readline().startswith(b"+")
    wait_for(lambda: _hibernated(proxy) == 1, what="hibernation again")
    _publish(redis_server, kind="kick")
    assert b"BYE" in imap.readline()
    wait_for(lambda: _hibernated(proxy) == 0, what="the kicked session to be gone")


def test_many_hibernated_sessions_wake(cluster: Cluster) -> None:
    """Twenty sessions hibernate between commands; each answers its next command from a backend."""
    proxy = cluster.proxy("-o", "proxy.hibernate_after=0.3")
    sessions = [_login(proxy) for _ in range(20)]
    wait_for(lambda: _hibernated(proxy) == 20, what="twenty hibernated sessions")
    for i, imap in enumerate(sessions):
        untagged, tagged = imap.command("STATUS INBOX (MESSAGES)", tag=f"s{i}")
        assert tagged.startswith(f"s{i} OK".encode()) and b"MESSAGES" in untagged[0]
    for imap in sessions:
        imap.command("LOGOUT")


def test_client_gone_while_hibernated(cluster: Cluster) -> None:
    """A client that closes its socket while hibernated is forgotten without waking a backend session."""
    proxy = cluster.proxy("-o", "proxy.hibernate_after=0.3")
    imap = _login(proxy)
    wait_for(lambda: _hibernated(proxy) == 1, what="hibernation")
    logins = sum(s.log().count("mechanism=X-STATE") for s in cluster.backends.values())
    imap.close()
    wait_for(lambda: _hibernated(proxy) == 0, what="the closed session to be forgotten")
    time.sleep(0.3)
    assert sum(s.log().count("mechanism=X-STATE") for s in cluster.backends.values()) == logins
