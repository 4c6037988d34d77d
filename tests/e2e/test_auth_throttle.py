"""Throttling that protects the CPU, per address and per user, a bounded number of password hashes,
trusted proxies naming the real client, and the audit log (issue 16, findings 3 and 5)."""

from __future__ import annotations

import base64
import os
import re
import threading
import time
from pathlib import Path

from tests.conftest import RunningServer, start_server, stop_server
from tests.rawimap import RawIMAP

# Failure records, hash slots and the CPU figure are per worker process: these tests use one.
ONE_PROCESS = ("-o", "server.workers=1")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _login(srv: RunningServer, user: str, password: str, *, origin: str | None = None) -> bytes:
    c = RawIMAP(srv.host, srv.port, timeout=60)
    if origin is not None:
        c.ok(f'ID ("x-originating-ip" "{origin}" "x-originating-port" "40123")')
    _, tagged = c.command(f"LOGIN {user} {password}", tag="l1")
    c.close()
    return tagged


def _audit(srv: RunningServer) -> list[str]:
    return [line.split("imapd.audit: ", 1)[1] for line in srv.log().splitlines() if "imapd.audit: " in line]


def test_failed_login_storm_costs_little_cpu(tmp_path: Path) -> None:
    """30 failed LOGINs from one address over 10 connections: only the first few run argon2id."""
    # defaults: max_failures=5, max_user_failures=10; one process, so /proc/PID/stat holds all the CPU
    srv = start_server(tmp_path / "data", *ONE_PROCESS)
    try:
        srv.add_user("victim", "right password")
        answers: list[bytes] = []

        def attacker() -> None:
            c = RawIMAP(srv.host, srv.port, timeout=60)
            for _ in range(3):
                answers.append(c.command("LOGIN victim wrong", tag="x")[1])
            c.close()

        before = cpu_seconds(srv.proc.pid)
        threads = [threading.Thread(target=attacker) for _ in range(10)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
        time.sleep(0.2)
        cpu = cpu_seconds(srv.proc.pid) - before
        print(f"30 failed logins over 10 connections: server CPU {cpu:.2f} s in {wall:.2f} s")
        assert answers == [b"x NO [AUTHENTICATIONFAILED] Invalid credentials"] * 30
        reasons = [re.search(r"reason=(.*)$", line).group(1) for line in _audit(srv)]  # type: ignore[union-attr]
        hashed = reasons.count("wrong password")
        assert len(reasons) == 30 and hashed <= 5 + 2, reasons  # max_failures, plus those already hashing
        assert cpu < 2.5, cpu  # it was 5-6 s before the throttle moved ahead of the hash
    finally:
        stop_server(srv)


def test_throttle_per_address_per_user_and_success_keeps_other_records(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", *ONE_PROCESS, "-o", "auth.max_failures=3", "-o", "auth.max_user_failures=4",
                       "-o", 'auth.trusted_networks=["127.0.0.0/8"]', "-o", "cache.ttl=0")
    try:
        for name in ("carol", "dave", "erin"):
            srv.add_user(name, f"pw-{name}")
        a, b = "192.0.2.10", "198.51.100.20"
        # Two failures from address a, then carol's success from a: the failures stay recorded.
        assert _login(srv, "mallory", "x", origin=a).startswith(b"l1 NO [AUTHENTICATIONFAILED]")
        assert _login(srv, "dave", "guess", origin=a).startswith(b"l1 NO [AUTHENTICATIONFAILED]")
        assert _login(srv, "carol", "pw-carol", origin=a).startswith(b"l1 OK [CAPABILITY ")
        assert _login(srv, "erin", "guess", origin=a).startswith(b"l1 NO [AUTHENTICATIONFAILED]")
        # Third failure reached: a is throttled, even for a right password (nothing is hashed).
        assert _login(srv, "carol", "pw-carol", origin=a) == b"l1 NO [AUTHENTICATIONFAILED] Invalid credentials"
        # Address b is another client, told apart by the trusted proxy's ID: not throttled.
        assert _login(srv, "carol", "pw-carol", origin=b).startswith(b"l1 OK [CAPABILITY ")
        # Per user: dave has one failure (from a); three more from other addresses throttle dave everywhere.
        for origin in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
            assert _login(srv, "dave", "guess", origin=origin).startswith(b"l1 NO [AUTHENTICATIONFAILED]")
        assert _login(srv, "dave", "pw-dave", origin="203.0.113.4") == (
            b"l1 NO [AUTHENTICATIONFAILED] Invalid credentials")
        assert _login(srv, "erin", "pw-erin", origin="203.0.113.4").startswith(b"l1 OK [CAPABILITY ")
        lines = _audit(srv)
        session = r"session=[0-9a-f]{12}"
        assert re.fullmatch(rf"login user='carol' address=192\.0\.2\.10:40123 \(via 127\.0\.0\.1\) {session} "
                            r"mechanism=LOGIN", lines[2]), lines[2]
        assert re.fullmatch(rf"login failed user='mallory' address=192\.0\.2\.10:40123 \(via 127\.0\.0\.1\) "
                            rf"{session} mechanism=LOGIN reason=no such user", lines[0]), lines[0]
        assert lines[4].endswith("reason=throttled (address)"), lines[4]
        assert lines[9].startswith("login failed user='dave' address=203.0.113.4:40123")
        assert lines[9].endswith("reason=throttled (user)"), lines[9]
        assert "pw-" not in srv.log() and "guess" not in srv.log()  # no password in any log line
    finally:
        stop_server(srv)


def test_untrusted_peer_cannot_claim_an_address(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", *ONE_PROCESS, "-o", "auth.max_failures=2", "-o", "cache.ttl=0")
    try:
        srv.add_user("gus", "pw-gus")
        for i in range(2):
            assert _login(srv, "gus", "guess", origin=f"192.0.2.{i}").startswith(b"l1 NO")
        # The ID was ignored (127.0.0.1 is not a trusted network): one bucket, now throttled.
        assert _login(srv, "gus", "pw-gus", origin="192.0.2.99") == b"l1 NO [AUTHENTICATIONFAILED] Invalid credentials"
        assert all("address=127.0.0.1 session=" in line for line in _audit(srv))
    finally:
        stop_server(srv)


def test_only_the_first_id_of_a_trusted_peer_counts(tmp_path: Path) -> None:
    """The proxy's ID comes first; an ID after it (a client relayed after UNAUTHENTICATE) cannot name an
    address, even when the first one named none (``ID NIL``, or no x-originating-ip)."""
    srv = start_server(tmp_path / "data", *ONE_PROCESS, "-o", 'auth.trusted_networks=["127.0.0.0/8"]',
                       "-o", "cache.ttl=0")
    try:
        srv.add_user("hal", "pw-hal")
        for first in ("ID NIL", 'ID ("name" "proxy")'):
            c = RawIMAP(srv.host, srv.port, timeout=60)
            c.ok(first)
            c.ok('ID ("x-originating-ip" "192.0.2.55" "x-originating-port" "40123")')
            _, tagged = c.command("LOGIN hal wrong", tag="l1")
            c.close()
            assert tagged.startswith(b"l1 NO")
        lines = _audit(srv)
        assert len(lines) == 2 and all("address=127.0.0.1 session=" in line for line in lines), lines
        assert _login(srv, "hal", "pw-hal", origin="192.0.2.56").startswith(b"l1 OK")
        assert "address=192.0.2.56:40123 (via 127.0.0.1)" in _audit(srv)[-1]  # a first ID still names it
    finally:
        stop_server(srv)


def test_authenticate_is_audited_and_hashes_are_bounded(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", *ONE_PROCESS, "-o", "auth.max_concurrent_hashes=1", "-o", "auth.max_queued_hashes=1",
                       "-o", "cache.ttl=0", "-o", "limits.max_connections_per_address=50")
    try:
        for i in range(4):
            srv.add_user(f"h{i}", f"pw-h{i}")
        conns = [RawIMAP(srv.host, srv.port, timeout=60) for _ in range(4)]
        for i, c in enumerate(conns):
            c.sock.sendall(f"l1 LOGIN h{i} pw-h{i}\r\n".encode())
        answers = sorted(c.readline().rstrip(b"\r\n") for c in conns)
        for c in conns:
            c.close()
        # One hashing, one queued, the others refused at once.
        assert answers.count(b"l1 NO [UNAVAILABLE] Too many logins in progress; try again later") == 2, answers
        assert sum(a.startswith(b"l1 OK [CAPABILITY ") for a in answers) == 2, answers
        c = RawIMAP(srv.host, srv.port)
        plain = base64.b64encode(b"\0h0\0pw-h0").decode()
        _, tagged = c.command(f"AUTHENTICATE PLAIN {plain}", tag="a1")
        assert tagged.startswith(b"a1 OK [CAPABILITY ")
        c.close()
        lines = _audit(srv)
        assert re.fullmatch(r"login user='h0' address=127\.0\.0\.1 session=[0-9a-f]{12} mechanism=PLAIN", lines[-1]), lines
        assert sum(line.endswith("reason=busy: too many password checks waiting") for line in lines) == 2
    finally:
        stop_server(srv)


def test_a_throttled_address_still_admits_a_remembered_password(tmp_path: Path) -> None:
    """Behind a shared address (NAT, an untrusted webmail), users who logged in recently keep getting in
    while someone else's guesses throttle the address; a password never seen gets no hash."""
    srv = start_server(tmp_path / "data", *ONE_PROCESS, "-o", "auth.max_failures=2", "-o", "cache.ttl=300")
    try:
        srv.add_user("ina", "pw-ina")
        srv.add_user("jon", "pw-jon")
        assert _login(srv, "ina", "pw-ina").startswith(b"l1 OK [CAPABILITY ")  # remembered from now on
        for _ in range(2):
            assert _login(srv, "jon", "guess").startswith(b"l1 NO [AUTHENTICATIONFAILED]")
        assert _login(srv, "ina", "pw-ina").startswith(b"l1 OK [CAPABILITY ")
        assert _login(srv, "ina", "wrong") == b"l1 NO [AUTHENTICATIONFAILED] Invalid credentials"
        assert _login(srv, "jon", "pw-jon") == b"l1 NO [AUTHENTICATIONFAILED] Invalid credentials"
        reasons = [line.rsplit(" ", 2)[-2:] for line in _audit(srv)]
        assert [r[-1] for r in reasons] == ["mechanism=LOGIN", "password", "password", "mechanism=LOGIN",
                                            "(address)", "(address)"], reasons
    finally:
        stop_server(srv)


def test_an_address_is_throttled_across_workers(tmp_path: Path) -> None:
    """Each worker serves the logins of the users it owns; the failures of one address still add up over
    all of them: three failures for users of worker 0 throttle a login for a user of worker 1."""
    from imapd.rendezvous import owner_slot

    srv = start_server(tmp_path / "data", "-o", "server.workers=2", "-o", "auth.max_failures=3",
                       "-o", "cache.ttl=0")
    try:
        names = [f"user{i}" for i in range(40)]
        first = next(n for n in names if owner_slot(n, 2) == 0)
        second = [n for n in names if owner_slot(n, 2) == 1][:2]
        for name in (first, *second):
            srv.add_user(name, f"pw-{name}")
        # The second worker's user logs in before: nothing is recorded against the address yet.
        assert _login(srv, second[0], f"pw-{second[0]}").startswith(b"l1 OK [CAPABILITY ")
        for _ in range(3):
            assert _login(srv, first, "guess").startswith(b"l1 NO [AUTHENTICATIONFAILED]")
        time.sleep(0.2)  # the outcome travels as a notice between the workers
        assert _login(srv, second[1], f"pw-{second[1]}") == b"l1 NO [AUTHENTICATIONFAILED] Invalid credentials"
        last = [line for line in srv.log().splitlines() if "imapd.audit[w" in line][-1]
        assert f"login failed user='{second[1]}'" in last and last.endswith("reason=throttled (address)"), last
    finally:
        stop_server(srv)
