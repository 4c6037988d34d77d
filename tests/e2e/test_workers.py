"""The multi-worker server: one owner process per user, hand-off of plain and TLS connections, reload
with sessions in every state, a worker killed, and one user's lock not stalling another user."""

from __future__ import annotations

import glob
import imaplib
import os
import re
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapd.server.handoff import owner_slot
from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.e2e.test_tls import client_context, make_cert
from tests.rawimap import RawIMAP

# Users chosen so that both worker slots own some (rendezvous hashing over 2 slots).
USERS = {"alice": "secret1", "bob": "secret2", "carol": "secret3", "erin": "secret4"}
assert {owner_slot(u, 2) for u in USERS} == {0, 1}


def _server_socket_pid(server_port: int, client_port: int) -> set[int]:
    """PIDs holding the server side of the TCP connection from ``client_port`` (read from /proc)."""
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
                inode = fields[9]
    assert inode is not None, "no such connection"
    pids = set()
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == f"socket:[{inode}]":
                pids.add(int(fd.split("/")[2]))
        except OSError:
            continue
    return pids


def _worker_pids(srv: RunningServer) -> set[int]:
    out = set()
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            text = Path(status).read_text()
        except OSError:
            continue
        if re.search(rf"^PPid:\s+{srv.proc.pid}$", text, re.M):
            out.add(int(status.split("/")[2]))
    return out


def _supervisor_ready(srv: RunningServer, count: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if len(_worker_pids(srv)) == count:
            return
        time.sleep(0.05)
    raise AssertionError(f"expected {count} workers:\n{srv.log()}")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RunningServer, int]]:
    """Two workers behind one supervisor, plain and TLS listeners; yields (server, TLS port)."""
    cert, key = make_cert(tmp_path)
    data = tmp_path / "data"
    for user, password in USERS.items():
        imapd_cli("user", "add", user, "--password-stdin", "--data-dir", str(data), stdin=password)
    srv = start_server(data, "-o", "server.workers=2", "-o", f"tls.cert={cert}", "-o", f"tls.key={key}",
                       tls_listen="127.0.0.1:0")
    srv.users.update(USERS)
    m = re.search(r"ready on 127\.0\.0\.1:\d+, 127\.0\.0\.1:(\d+)", srv.log())
    assert m, srv.log()
    _supervisor_ready(srv, 2)
    try:
        yield srv, int(m.group(1))
    finally:
        stop_server(srv)


class TLSRaw(RawIMAP):
    def __init__(self, port: int) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = client_context().wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        self.greeting = self.readline()
        self._n = 0


def _login(conn: RawIMAP, user: str) -> None:
    conn.ok(f"LOGIN {user} {USERS[user]}")


def test_every_session_of_a_user_is_served_by_its_owner(cluster: tuple[RunningServer, int]) -> None:
    srv, _ = cluster
    where: dict[str, set[int]] = {}
    conns = []
    for _ in range(3):
        for user in USERS:
            conn = RawIMAP(srv.host, srv.port)
            _login(conn, user)
            conn.ok("SELECT INBOX")
            client_port = conn.sock.getsockname()[1]
            pids = _server_socket_pid(srv.port, client_port)
            assert len(pids) == 1, pids
            where.setdefault(user, set()).update(pids)
            conns.append(conn)
    assert all(len(p) == 1 for p in where.values()), where
    by_slot: dict[int, set[int]] = {}
    for user, pids in where.items():
        by_slot.setdefault(owner_slot(user, 2), set()).update(pids)
    # the users of one slot share a process, and the two slots are two processes
    assert all(len(p) == 1 for p in by_slot.values()) and len(set.union(*by_slot.values())) == 2, by_slot
    for conn in conns:
        conn.command("LOGOUT")
        conn.close()


def test_tls_sessions_are_relayed_to_the_owner_and_see_plain_sessions_changes(
        cluster: tuple[RunningServer, int]) -> None:
    srv, tls_port = cluster
    for user in USERS:
        tls = TLSRaw(tls_port)
        _login(tls, user)
        tls.ok("SELECT INBOX")
        tls.sock.sendall(b"i IDLE\r\n")
        assert tls.readline().startswith(b"+ ")
        plain = imaplib.IMAP4(srv.host, srv.port)
        plain.login(user, USERS[user])
        plain.append("INBOX", None, None, b"Subject: over TLS\r\n\r\nhello\r\n")
        lines = tls.read_until(rb"^\* \d+ EXISTS$", timeout=5)
        assert lines[-1].endswith(b"EXISTS")
        tls.sock.sendall(b"DONE\r\n")
        tls.read_until(rb"^i OK")
        untagged, tagged = tls.command("UID FETCH 1:* (FLAGS)")
        assert b" OK" in tagged, tagged
        assert len(untagged) == 1 and b"FETCH (UID 1 FLAGS" in untagged[0], untagged
        plain.logout()
        tls.command("LOGOUT")
        tls.close()


def test_reload_keeps_every_session(cluster: tuple[RunningServer, int]) -> None:
    srv, tls_port = cluster
    # alice: IDLE over plain; bob: SELECTED with an expunge it has not been told of; carol: AUTHENTICATED
    # only; erin: IDLE over TLS.
    alice = RawIMAP(srv.host, srv.port)
    _login(alice, "alice")
    alice.ok("SELECT INBOX")
    alice.sock.sendall(b"i1 IDLE\r\n")
    assert alice.readline().startswith(b"+ ")

    bob = RawIMAP(srv.host, srv.port)
    _login(bob, "bob")
    other = imaplib.IMAP4(srv.host, srv.port)
    other.login("bob", USERS["bob"])
    for i in range(3):
        other.append("INBOX", None, None, f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
    bob.ok("SELECT INBOX")
    other.select("INBOX")
    other.uid("STORE", "2", "+FLAGS", r"(\Deleted)")
    other.expunge()
    other.logout()
    # bob has not been told of the expunge: it is pending in his view when the reload comes

    carol = RawIMAP(srv.host, srv.port)
    _login(carol, "carol")

    erin = TLSRaw(tls_port)
    _login(erin, "erin")
    erin.ok("SELECT INBOX")
    erin.sock.sendall(b"i2 IDLE\r\n")
    assert erin.readline().startswith(b"+ ")

    old = _worker_pids(srv)
    started = time.monotonic()
    imapd_cli("reload", "--data-dir", str(srv.data_dir))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "finished its hand-over" not in srv.log():
        time.sleep(0.05)
    assert "finished its hand-over" in srv.log(), srv.log()
    assert time.monotonic() - started < 10
    new = _worker_pids(srv)
    # the TLS stream of erin may still be relayed by an old worker; alice's socket must be with a new one
    alice_pids = _server_socket_pid(srv.port, alice.sock.getsockname()[1])
    assert alice_pids and alice_pids.isdisjoint(old), (alice_pids, old, new)

    # new mail still reaches the IDLE sessions
    for user in ("alice", "erin"):
        c = imaplib.IMAP4(srv.host, srv.port)
        c.login(user, USERS[user])
        c.append("INBOX", None, None, b"Subject: after reload\r\n\r\nhi\r\n")
        c.logout()
    assert alice.read_until(rb"^\* 1 EXISTS$", timeout=5)
    assert erin.read_until(rb"^\* 1 EXISTS$", timeout=5)
    alice.sock.sendall(b"DONE\r\n")
    assert alice.read_until(rb"^i1 OK")
    erin.sock.sendall(b"DONE\r\n")
    assert erin.read_until(rb"^i2 OK")

    # bob's pending expunge comes at his next command, with the sequence numbers he knows
    untagged, tagged = bob.command("NOOP")
    assert b"OK" in tagged
    assert b"* 2 EXPUNGE" in untagged, untagged
    untagged, _ = bob.command("FETCH 1:* (UID)")
    assert untagged == [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 3)"], untagged

    # carol is still logged in, with nothing selected
    untagged, tagged = carol.command("SELECT INBOX")
    assert b"OK [READ-WRITE]" in tagged, tagged
    for conn in (alice, bob, carol, erin):
        conn.command("LOGOUT")
        conn.close()


def test_a_killed_worker_drops_only_its_sessions_and_is_restarted(cluster: tuple[RunningServer, int]) -> None:
    srv, _ = cluster
    sessions = {}
    for user in USERS:
        conn = RawIMAP(srv.host, srv.port)
        _login(conn, user)
        conn.ok("SELECT INBOX")
        sessions[user] = conn
    victim_user = "alice"
    (victim,) = _server_socket_pid(srv.port, sessions[victim_user].sock.getsockname()[1])
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    for user, conn in sessions.items():
        if owner_slot(user, 2) == owner_slot(victim_user, 2):
            with pytest.raises((ConnectionError, OSError)):
                conn.command("NOOP")
        else:
            try:
                _, tagged = conn.command("NOOP")
            except ConnectionError as exc:
                raise AssertionError(f"{user}'s session dropped with worker {victim}:\n{srv.log()}") from exc
            assert b"OK" in tagged, (user, tagged)
    # its users are served again at once (by the restarted worker, or meanwhile by the acceptor). A
    # connection accepted by the dying process in its last moments dies with it: a client retries.
    attempts = 0
    while True:
        attempts += 1
        try:
            conn = RawIMAP(srv.host, srv.port)
            _login(conn, victim_user)
            conn.ok("SELECT INBOX")
            break
        except (ConnectionError, OSError):
            assert attempts < 5 and time.monotonic() - killed_at < 3, srv.log()
            time.sleep(0.05)
    served_after = time.monotonic() - killed_at
    assert served_after < 3, served_after
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not re.search(r"worker \d restarted", srv.log()):
        time.sleep(0.05)
    assert re.search(r"worker \d restarted", srv.log()), srv.log()
    _supervisor_ready(srv, 2)
    for c in [conn, *sessions.values()]:
        c.close()


@pytest.mark.serial  # timed: run alone, not beside another test (Makefile)
def test_a_locked_index_of_one_user_does_not_stall_another(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for user in ("alice", "bob"):
        imapd_cli("user", "add", user, "--password-stdin", "--data-dir", str(data), stdin=USERS[user])
    srv = start_server(data)  # a single worker: the lanes alone must keep bob going
    try:
        bob = RawIMAP(srv.host, srv.port)
        _login(bob, "bob")
        bob.ok("SELECT INBOX")
        index = data / "mail" / "alice" / "imapd-index.sqlite"
        alice = RawIMAP(srv.host, srv.port)
        _login(alice, "alice")
        # another process takes alice's index write lock for 3 s
        holder = sqlite3.connect(index, timeout=1, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        blocked = threading.Thread(target=lambda: alice.command('CREATE "Blocked"'))
        blocked.start()
        time.sleep(0.2)
        worst = 0.0
        for _ in range(10):
            t = time.monotonic()
            _, tagged = bob.command("NOOP")
            worst = max(worst, time.monotonic() - t)
            assert b"OK" in tagged
        t = time.monotonic()
        fresh = RawIMAP(srv.host, srv.port)  # a new connection gets its greeting at once too
        greeting_wait = time.monotonic() - t
        assert fresh.greeting.startswith(b"* OK")
        assert blocked.is_alive(), "alice's command should still wait for the lock"
        holder.execute("ROLLBACK")
        holder.close()
        blocked.join(35)
        assert worst < 0.2, f"bob's NOOP took {worst * 1000:.0f} ms while alice's index was locked"
        assert greeting_wait < 0.2, greeting_wait
        for c in (alice, bob, fresh):
            c.close()
    finally:
        stop_server(srv)


@pytest.mark.parametrize("workers", [1, 2])
def test_deliver_notifies_the_owner_without_inotify(tmp_path: Path, workers: int) -> None:
    """Our own writers reach the owner directly: with the watcher off, an IDLE client still hears of a
    message `imapd deliver` stored, at once."""
    data = tmp_path / "data"
    for user in USERS:
        imapd_cli("user", "add", user, "--password-stdin", "--data-dir", str(data), stdin=USERS[user])
    srv = start_server(data, "-o", "store.watch=false", "-o", f"server.workers={workers}")
    try:
        for user in USERS:
            conn = RawIMAP(srv.host, srv.port)
            _login(conn, user)
            conn.ok("SELECT INBOX")
            conn.sock.sendall(b"i IDLE\r\n")
            assert conn.readline().startswith(b"+ ")
            started = time.monotonic()
            imapd_cli("deliver", user, "--data-dir", str(data), stdin=b"Subject: notice\r\n\r\nhi\r\n")
            assert conn.read_until(rb"^\* 1 EXISTS$", timeout=3)
            assert time.monotonic() - started < 3
            conn.sock.sendall(b"DONE\r\n")
            conn.read_until(rb"^i OK")
            conn.close()
    finally:
        stop_server(srv)


def test_a_trusted_proxys_client_address_moves_with_the_connection(tmp_path: Path) -> None:
    """ID x-originating-ip before LOGIN is kept when LOGIN moves the connection to the user's owner."""
    data = tmp_path / "data"
    for user in USERS:
        imapd_cli("user", "add", user, "--password-stdin", "--data-dir", str(data), stdin=USERS[user])
    srv = start_server(data, "-o", "server.workers=2", "-o", 'auth.trusted_networks=["127.0.0.0/8"]')
    try:
        for user in USERS:  # owners on both workers: some connections move, some do not
            conn = RawIMAP(srv.host, srv.port)
            conn.ok('ID ("x-originating-ip" "192.0.2.77" "x-originating-port" "40123")')
            _login(conn, user)
            conn.command("LOGOUT")
            conn.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and srv.log().count("imapd.audit") < len(USERS):
            time.sleep(0.05)
        lines = [line for line in srv.log().splitlines() if "imapd.audit" in line]
        assert len(lines) == len(USERS), srv.log()
        assert all("address=192.0.2.77:40123 (via 127.0.0.1)" in line for line in lines), lines
    finally:
        stop_server(srv)


def _metrics(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_metrics_sum_every_worker_and_forget_a_dead_ones_gauges(tmp_path: Path) -> None:
    """The supervisor's endpoint adds up the workers (prometheus_client's multiprocess mode): counters and
    histograms over every worker that ran, gauges over the live ones."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "data"
    for user, password in USERS.items():
        imapd_cli("user", "add", user, "--password-stdin", "--data-dir", str(data), stdin=password)
    srv = start_server(data, "-o", "server.workers=2", "-o", f"metrics.listen=127.0.0.1:{port}")
    srv.users.update(USERS)
    try:
        _supervisor_ready(srv, 2)
        sessions = {}
        for user in USERS:  # both workers own some of them
            conn = RawIMAP(srv.host, srv.port)
            _login(conn, user)
            conn.ok("SELECT INBOX")
            sessions[user] = conn
        m = _metrics(port)
        assert m['imapd_command_seconds_count{command="SELECT"}'] == len(USERS), m
        assert m['imapd_command_seconds_count{command="LOGIN"}'] == len(USERS), m
        assert m["imapd_connections"] == len(USERS), m
        assert m["imapd_cache_misses_total"] == len(USERS), m
        (victim,) = _server_socket_pid(srv.port, sessions["alice"].sock.getsockname()[1])
        lost = [u for u in USERS if owner_slot(u, 2) == owner_slot("alice", 2)]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not re.search(r"worker \d restarted", srv.log()):
            time.sleep(0.05)
        m = _metrics(port)
        assert m["imapd_connections"] == len(USERS) - len(lost), m  # the dead worker's gauge is gone
        assert m['imapd_command_seconds_count{command="SELECT"}'] == len(USERS), m  # its counts stay
        for c in sessions.values():
            c.close()
    finally:
        stop_server(srv)
