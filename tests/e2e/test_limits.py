"""Limits and hostile clients: each gets the documented answer and the server keeps serving others."""

from __future__ import annotations

import imaplib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.rawimap import exchange, open_session, read_until_closed


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("limits") / "data"
    data.mkdir()
    imapd_cli("user", "add", "carol", "--password-stdin", "--data-dir", str(data), stdin="pw-carol")
    srv = start_server(
        data,
        "-o", "limits.max_connections_per_user=2",
        "-o", "limits.max_connections_per_address=6",
        "-o", "limits.max_bad_commands=3",
        "-o", "limits.max_line=2000",
        "-o", "limits.max_literal=5000",
        "-o", "auth.max_failures=2",
        "-o", "auth.failure_delay=0.05",
        "-o", "auth.penalty_delay=0.6",
    )
    srv.users["carol"] = "pw-carol"
    yield srv
    stop_server(srv)


def _sock(server: RunningServer) -> socket.socket:
    return open_session(server.host, server.port)


_ask = exchange



def test_connections_per_user(limited: RunningServer) -> None:
    a = imaplib.IMAP4(limited.host, limited.port)
    b = imaplib.IMAP4(limited.host, limited.port)
    a.login("carol", "pw-carol")
    b.login("carol", "pw-carol")
    c = imaplib.IMAP4(limited.host, limited.port)
    with pytest.raises(imaplib.IMAP4.error, match="LIMIT"):
        c.login("carol", "pw-carol")
    a.logout()
    time.sleep(0.2)
    assert c.login("carol", "pw-carol")[0] == "OK"
    b.logout()
    c.logout()


def test_connections_per_address(limited: RunningServer) -> None:
    socks = [_sock(limited) for _ in range(6)]
    extra = socket.create_connection((limited.host, limited.port), timeout=10)
    reply = read_until_closed(extra)
    assert b"* BYE [UNAVAILABLE]" in reply
    for s in socks:
        s.close()
    time.sleep(0.3)
    ok = _sock(limited)
    ok.close()


def test_too_many_bad_commands_closes(limited: RunningServer) -> None:
    s = _sock(limited)
    _ask(s, b"a1 BOGUS\r\n", b"a1 ")
    _ask(s, b"a2 BOGUS\r\n", b"a2 ")
    s.sendall(b"a3 BOGUS\r\n")
    rest = read_until_closed(s)
    assert b"a3 BAD" in rest and b"* BYE" in rest
    s.close()


def test_long_line_and_big_literal_are_refused_but_session_goes_on(limited: RunningServer) -> None:
    s = _sock(limited)
    reply = _ask(s, b"a1 NOOP " + b"x" * 5000 + b"\r\n", b"a1 ")
    assert b"a1 BAD [TOOBIG]" in reply
    assert b"a2 OK" in _ask(s, b"a2 LOGIN carol pw-carol\r\n", b"a2 ")
    reply = _ask(s, b"a3 APPEND INBOX {6000}\r\n", b"a3 ")
    assert b"a3 BAD [TOOBIG]" in reply or b"a3 NO [TOOBIG]" in reply
    assert not reply.startswith(b"+")
    reply = _ask(s, b"a4 APPEND INBOX {4294967296}\r\n", b"a4 ")
    assert b"[TOOBIG]" in reply
    assert b"a5 OK" in _ask(s, b"a5 NOOP\r\n", b"a5 ")
    s.close()


def test_failed_logins_are_slowed_per_address(limited: RunningServer) -> None:
    imap = imaplib.IMAP4(limited.host, limited.port)
    times = []
    for _ in range(4):
        start = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login("carol", "wrong")
        times.append(time.monotonic() - start)
    assert times[-1] >= 0.6 > times[0] - 0.3  # past max_failures the penalty applies
    imap.logout()
    ok = imaplib.IMAP4(limited.host, limited.port)
    assert ok.login("carol", "pw-carol")[0] == "OK"
    ok.logout()


def test_unknown_user_costs_like_wrong_password(limited: RunningServer, tmp_path: Path) -> None:
    # Both pay the password hash (a dummy one for the unknown user): no user enumeration by timing.
    def attempt(user: str) -> float:
        imap = imaplib.IMAP4(limited.host, limited.port)
        start = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(user, "nope")
        elapsed = time.monotonic() - start
        imap.logout()
        return elapsed

    attempt("carol")  # warm up
    wrong = min(attempt("carol") for _ in range(2))
    unknown = min(attempt("nobody-here") for _ in range(2))
    assert unknown > 0.5 * wrong, (unknown, wrong)


def test_plaintext_login_refused_when_loopback_not_trusted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    imapd_cli("user", "add", "dave", "--password-stdin", "--data-dir", str(data), stdin="pw")
    srv = start_server(data, "-o", "tls.trust_loopback=false")
    try:
        imap = imaplib.IMAP4(srv.host, srv.port)
        assert "LOGINDISABLED" in imap.capabilities
        assert "AUTH=PLAIN" not in imap.capabilities
        typ, data_ = imap._simple_command("LOGIN", "dave", "pw")  # imaplib refuses itself otherwise
        assert typ == "NO" and b"[PRIVACYREQUIRED]" in data_[0]
        imap.logout()
    finally:
        stop_server(srv)


def test_autologout_and_shutdown_bye(tmp_path: Path) -> None:
    data = tmp_path / "data"
    imapd_cli("user", "add", "erin", "--password-stdin", "--data-dir", str(data), stdin="pw")
    srv = start_server(data, "-o", "limits.preauth_timeout=1")
    try:
        idle = _sock(srv)
        assert b"BYE" in read_until_closed(idle, timeout=8)
        authed = _sock(srv)
        assert b"a1 OK" in _ask(authed, b"a1 LOGIN erin pw\r\n", b"a1 ")
        srv.proc.send_signal(signal.SIGTERM)
        assert b"* BYE" in read_until_closed(authed, timeout=10)
        assert srv.proc.wait(timeout=10) == 0
    finally:
        stop_server(srv)


def test_connections_per_address_hold_across_workers(tmp_path: Path) -> None:
    """Two workers each holding two sessions of one address, limit four: the fifth connection is refused
    whichever worker accepts it; when some close, new ones are admitted again."""
    from imapd.rendezvous import owner_slot

    srv = start_server(tmp_path / "data", "-o", "server.workers=2", "-o", "limits.max_connections_per_address=4")
    try:
        names = [f"user{i}" for i in range(40)]
        users = [n for n in names if owner_slot(n, 2) == 0][:2] + [n for n in names if owner_slot(n, 2) == 1][:2]
        for name in users:
            srv.add_user(name, f"pw-{name}")
        clients = []
        for name in users:  # each LOGIN moves the connection to its user's worker: two on each
            c = imaplib.IMAP4(srv.host, srv.port)
            c.login(name, f"pw-{name}")
            clients.append(c)
        time.sleep(0.3)  # the counts travel as notices between the workers
        for _ in range(4):  # whichever worker accepts it
            extra = socket.create_connection((srv.host, srv.port), timeout=10)
            assert b"* BYE [UNAVAILABLE]" in read_until_closed(extra)
        clients.pop().logout()
        clients.pop(0).logout()
        time.sleep(0.3)
        again = [open_session(srv.host, srv.port) for _ in range(2)]
        for s in again:
            s.close()
        for c in clients:
            c.logout()
    finally:
        stop_server(srv)
