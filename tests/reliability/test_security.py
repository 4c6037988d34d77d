"""Security review as tests: mailbox-name path traversal, cross-user access, plaintext LOGIN, user probing."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, start_server, stop_server
from tests.rawimap import RawIMAP

BAD_NAMES: list[bytes] = [
    b'"../x"', b'".."', b'"../bob/INBOX"', b'"/etc"', b'"/tmp/evil"', b'"~"', b'"~bob"', b'"~bob/INBOX"',
    b'"%2e%2e/x"', b'"a/../../b"', b'"a/./b"', b'"#shared/x"', b'"&AC8-etc"', b'"&AC4ALg-"', b'"&AC4ALgAv-x"',
    b'"' + b"a" * 5000 + b'"', b'"' + b"a/" * 300 + b'x"', b'"a\\\\b"', b'"."', b'"./x"', b'"x/"', b'"/"',
    b"{5+}\r\nab\x00cd",
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("sec") / "data"
    data.mkdir()
    s = start_server(data, "-o", "auth.max_failures=1000", "-o", "limits.max_bad_commands=100000")
    for name in ("alice", "bob", "mallory"):
        s.add_user(name, f"pw-{name}")
    yield s
    stop_server(s)


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "imapd-index" not in p.name and p.parent.name not in ("cur", "new", "tmp")}


def _login(srv: RunningServer, user: str) -> RawIMAP:
    imap = RawIMAP(srv.host, srv.port)
    imap.ok(f"LOGIN {user} pw-{user}")
    return imap


def test_traversal_names_refused_and_nothing_created_outside(srv: RunningServer) -> None:
    imap = _login(srv, "alice")
    imap.ok("SELECT INBOX")
    imap.ok(b"APPEND INBOX {21+}\r\nSubject: x\r\n\r\nhello\r\n")
    outside = srv.data_dir.parent
    before_outside = {p.name for p in outside.iterdir()}
    before_bob = _snapshot(srv.data_dir / "mail" / "bob") if (srv.data_dir / "mail" / "bob").exists() else set()
    problems = []
    for name in BAD_NAMES:
        for cmd in (b"CREATE %s", b"SELECT %s", b"STATUS %s (MESSAGES)", b"COPY 1 %s", b"RENAME INBOX %s",
                    b"DELETE %s", b"APPEND %s {3+}\r\nx\r\n"):
            _untagged, tagged = imap.command(cmd.replace(b"%s", name))
            if b" OK" in tagged[:12] and not cmd.startswith((b"DELETE",)):
                problems.append((cmd.replace(b"%s", name[:40]), tagged))
            if b" OK" in tagged[:12] and cmd.startswith(b"SELECT"):
                imap.ok("SELECT INBOX")
    assert {p.name for p in outside.iterdir()} == before_outside
    after_bob = _snapshot(srv.data_dir / "mail" / "bob") if (srv.data_dir / "mail" / "bob").exists() else set()
    assert after_bob == before_bob, after_bob ^ before_bob
    for p in srv.data_dir.rglob("*"):
        assert p.resolve().is_relative_to(srv.data_dir.resolve()), p
    assert not Path("/etc/imapd-evil").exists()
    # names like "a/./b" or "%2e%2e/x" are harmless as ordinary folder names; only escaping matters:
    escaped = [(c, t) for c, t in problems if b".." in c or b"/etc" in c or b"&AC" in c or b"\x00" in c]  # "~x" is a plain folder
    assert not escaped, escaped
    imap.close()


def test_cross_user(srv: RunningServer) -> None:
    bob = _login(srv, "bob")
    bob.ok("SELECT INBOX")
    bob_token = next(line.split()[2].decode() for line in bob.ok("X-STATE SAVE") if line.startswith(b"* X-STATE"))
    bob.close()
    alice = _login(srv, "mallory")  # a user who never created folders with odd names
    for name in ("../bob/INBOX", "../bob", "~bob", "~bob/INBOX", "#shared/bob", "/bob", "bob", "../../bob"):
        for cmd in (f'SELECT "{name}"', f'STATUS "{name}" (MESSAGES)', f'APPEND "{name}" {{3+}}\r\nx\r\n'):
            _, tagged = alice.command(cmd)
            assert b" OK" not in tagged[:12], (cmd, tagged)
    _, tagged = alice.command(f"X-STATE RESTORE {bob_token}")
    assert b" NO" in tagged[:12] and b"X-STATE-INVALID" in tagged, tagged
    alice.close()


def test_login_refused_before_starttls_on_non_loopback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    s = start_server(data, "-o", "tls.trust_loopback=false")
    try:
        s.add_user("carol", "pw-carol")
        imap = RawIMAP(s.host, s.port)
        caps = imap.ok("CAPABILITY")
        assert b"LOGINDISABLED" in caps[0], caps
        _, tagged = imap.command("LOGIN carol pw-carol")
        assert b" NO" in tagged[:12] and b"PRIVACYREQUIRED" in tagged, tagged
        _, tagged = imap.command("AUTHENTICATE PLAIN AGNhcm9sAHB3LWNhcm9s")
        assert b" OK" not in tagged[:12], tagged
        imap.close()
    finally:
        stop_server(s)


def test_unknown_user_and_wrong_password_take_the_same_time(srv: RunningServer) -> None:
    n = 12 if os.environ.get("IMAPD_SOAK") != "1" else 60
    times: dict[str, list[float]] = {"unknown": [], "wrong": []}
    for i in range(n):
        for kind, user in (("unknown", f"nobody{i}"), ("wrong", "alice")):
            imap = RawIMAP(srv.host, srv.port)
            t = time.monotonic()
            _, tagged = imap.command(f"LOGIN {user} not-the-password")
            times[kind].append(time.monotonic() - t)
            assert b" NO" in tagged[:12]
            assert b"AUTHENTICATIONFAILED" in tagged or b"NO " in tagged
            imap.close()
    a, b = statistics.median(times["unknown"]), statistics.median(times["wrong"])
    print(f"median LOGIN failure: unknown user {a * 1000:.1f} ms, wrong password {b * 1000:.1f} ms")
    assert abs(a - b) < 0.5 * max(a, b) + 0.01, (a, b)
