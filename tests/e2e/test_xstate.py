"""X-STATE SAVE / RESTORE end to end: exact restore, the catch-up a QRESYNC client would compute, and
every way a token can be wrong."""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from imapd.client import xstate_restore, xstate_save
from statecodec import KeyRing, SessionState
from statecodec import encode as encode_token
from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.rawimap import RawIMAP


def msg(subject: str) -> bytes:
    m = EmailMessage()
    m["From"] = "Ann <ann@example.org>"
    m["To"] = "alice@example.org"
    m["Subject"] = subject
    m["Date"] = "Mon, 02 Nov 2026 10:00:00 +0000"
    m.set_content(f"body {subject}\n")
    return m.as_bytes(policy=SMTP)


def login(server: RunningServer, user: str = "alice") -> RawIMAP:
    c = RawIMAP(server.host, server.port)
    c.ok(f"LOGIN {user} {server.users[user]}")
    return c


def fill(server: RunningServer, mailbox: str, n: int, user: str = "alice") -> None:
    c = login(server, user)
    c.ok(f"CREATE {mailbox}")
    for i in range(n):
        data = msg(f"{mailbox} {i}")
        c.ok(b"APPEND " + mailbox.encode() + b" {%d+}\r\n" % len(data) + data)
    c.close()


def token_of(lines: list[bytes]) -> str:
    for line in lines:
        if line.startswith(b"* X-STATE "):
            return line.split()[2].decode()
    raise AssertionError(f"no token in {lines!r}")


def server_view(server: RunningServer, mailbox: str) -> list[tuple[int, frozenset[str]]]:
    c = login(server)
    c.ok(f"EXAMINE {mailbox}")
    lines = c.ok("FETCH 1:* (UID FLAGS)")
    c.close()
    out = []
    for line in lines:
        m = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line) or re.search(rb"FLAGS \(([^)]*)\) UID (\d+)", line)
        assert m
        uid, flags = (m.group(1), m.group(2)) if line.find(b"UID") < line.find(b"FLAGS") else (m.group(2), m.group(1))
        out.append((int(uid), frozenset(flags.decode().split()) - {"\\Recent"}))
    return out


class ClientModel:
    """What a client knows of a mailbox, updated only from the untagged responses it receives."""

    def __init__(self, uids: list[int], flags: dict[int, frozenset[str]]) -> None:
        self.uids: list[int | None] = list(uids)
        self.flags: dict[int, frozenset[str]] = dict(flags)  # by UID
        self.new_flags: dict[int, frozenset[str]] = {}  # by seq, for messages without a known UID

    def apply(self, lines: list[bytes]) -> None:
        for line in lines:
            if m := re.match(rb"\* (\d+) EXPUNGE", line):
                del self.uids[int(m.group(1)) - 1]
            elif m := re.match(rb"\* VANISHED (?:\(EARLIER\) )?(\S+)", line):
                gone = set()
                for part in m.group(1).split(b","):
                    lo, _, hi = part.partition(b":")
                    gone.update(range(int(lo), int(hi or lo) + 1))
                self.uids = [u for u in self.uids if u not in gone]
            elif m := re.match(rb"\* (\d+) EXISTS", line):
                n = int(m.group(1))
                assert n >= len(self.uids)
                self.uids += [None] * (n - len(self.uids))
            elif m := re.match(rb"\* (\d+) FETCH \((.*)\)$", line):
                seq = int(m.group(1))
                body = m.group(2)
                fl = re.search(rb"FLAGS \(([^)]*)\)", body)
                uid_m = re.search(rb"UID (\d+)", body)
                if uid_m:
                    self.uids[seq - 1] = int(uid_m.group(1))
                if fl:
                    flags = frozenset(fl.group(1).decode().split()) - {"\\Recent"}
                    uid = self.uids[seq - 1]
                    if uid is None:
                        self.new_flags[seq] = flags
                    else:
                        self.flags[uid] = flags


@pytest.fixture
def alice(server: RunningServer) -> Iterator[RawIMAP]:
    c = login(server)
    yield c
    c.close()


def _change_meanwhile(server: RunningServer, mailbox: str, uids: list[int]) -> None:
    b = login(server)
    b.ok(f"SELECT {mailbox}")
    b.ok(f"UID STORE {uids[1]},{uids[4]} +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    b.ok(f"UID STORE {uids[2]} +FLAGS (\\Flagged $Label1)")
    b.ok(f"UID STORE {uids[6]} -FLAGS (\\Seen)")
    data = msg("arrived meanwhile")
    b.ok(b"APPEND " + mailbox.encode() + b" (\\Seen) {%d+}\r\n" % len(data) + data)
    b.close()


@pytest.mark.parametrize("qresync", [False, True])
def test_restore_catches_up_exactly(server: RunningServer, qresync: bool) -> None:
    box = f"XS{int(qresync)}"
    fill(server, box, 8)
    a = login(server)
    if qresync:
        a.ok("ENABLE QRESYNC")
    a.ok(f"SELECT {box}")
    a.ok("STORE 1:8 +FLAGS (\\Seen)")
    before = server_view(server, box)
    uids = [u for u, _ in before]
    token = token_of(a.ok("X-STATE SAVE"))
    a.close()
    assert len(token) <= 300

    _change_meanwhile(server, box, uids)
    expected = server_view(server, box)

    c = RawIMAP(server.host, server.port)
    untagged, tagged = c.command(f"X-STATE RESTORE {token}")  # authenticates, enables, selects
    assert b"OK [READ-WRITE]" in tagged, (untagged, tagged)
    model = ClientModel(uids, dict(before))
    model.apply(untagged)
    assert [u for u in model.uids] [: len(uids) - 2] == [u for u, _ in expected][: len(uids) - 2]
    assert len(model.uids) == len(expected)
    for seq, (uid, flags) in enumerate(expected, 1):
        known = model.uids[seq - 1]
        if known is None:
            assert model.new_flags[seq] == flags
        else:
            assert known == uid and model.flags[uid] == flags, (seq, uid, flags, model.flags.get(uid))
    if qresync:
        assert any(line.startswith(b"* VANISHED ") for line in untagged)
        assert not any(b"EXPUNGE" in line for line in untagged)
    else:
        assert sum(b"EXPUNGE" in line for line in untagged) == 2
    assert any(b"[HIGHESTMODSEQ" in line for line in untagged)
    assert any(line.startswith(b"* FLAGS") and b"$Label1" in line for line in untagged)
    # The session really is selected with the old sequence numbers gone through: fetch works by seq.
    lines = c.ok("FETCH 1:* (UID)")
    assert [int(re.search(rb"UID (\d+)", ln).group(1)) for ln in lines] == [u for u, _ in expected]  # type: ignore[union-attr]
    c.close()


def test_restore_with_no_changes_is_quiet(server: RunningServer, alice: RawIMAP) -> None:
    fill(server, "Quiet", 3)
    alice.ok("EXAMINE Quiet")
    alice.ok("SEARCH RETURN (SAVE) ALL")
    token = token_of(alice.ok("X-STATE SAVE"))
    c = RawIMAP(server.host, server.port)
    untagged, tagged = c.command(f"X-STATE RESTORE {token}")
    assert b"OK [READ-ONLY]" in tagged
    assert not any(re.match(rb"\* \d+ (EXISTS|EXPUNGE|FETCH)", ln) for ln in untagged), untagged
    assert any(ln.startswith(b"* CAPABILITY ") for ln in untagged)
    assert len(c.ok("FETCH $ (UID)")) == 3  # SEARCHRES came back
    _, tagged = c.command("STORE 1 +FLAGS (\\Flagged)")
    assert b"NO" in tagged  # still read-only
    c.close()


def test_authenticated_state_and_closing_a_selected_mailbox(server: RunningServer, alice: RawIMAP) -> None:
    token = token_of(alice.ok("X-STATE SAVE"))
    c = RawIMAP(server.host, server.port)
    _, tagged = c.command(f"X-STATE RESTORE {token}")
    assert re.match(rb"t\d+ OK \[CAPABILITY [^\]]*X-STATE", tagged)
    _, tagged = c.command("FETCH 1 FLAGS")
    assert b"BAD" in tagged  # authenticated, nothing selected
    c.ok("SELECT INBOX")
    lines = c.ok(f"X-STATE RESTORE {token}")  # same user, from SELECTED: closes the mailbox
    assert any(b"[CLOSED]" in ln for ln in lines)
    _, tagged = c.command("FETCH 1 FLAGS")
    assert b"BAD" in tagged
    c.close()


def test_restore_with_imaplib_helper(server: RunningServer) -> None:
    imap = imaplib.IMAP4(server.host, server.port)
    imap.login("alice", "secret1")
    imap.select("INBOX")
    token = xstate_save(imap)
    imap.logout()
    again = imaplib.IMAP4(server.host, server.port)
    result = xstate_restore(again, token)
    assert result.ok and result.selected and result.code == "READ-WRITE"
    typ, _ = again.search(None, "ALL")  # imaplib now believes it is SELECTED
    assert typ == "OK"
    bad = xstate_restore(imaplib.IMAP4(server.host, server.port), token[:-3])
    assert not bad.ok and bad.code == "X-STATE-INVALID"
    again.logout()


def test_tampered_truncated_and_foreign_tokens(server: RunningServer, alice: RawIMAP) -> None:
    alice.ok("SELECT INBOX")
    token = token_of(alice.ok("X-STATE SAVE"))
    alphabet = "ABCabc0189-_."
    step = max(1, len(token) // 40)
    for pos in range(0, len(token), step):
        for repl in alphabet[:2]:
            if token[pos] == repl:
                continue
            bad = token[:pos] + repl + token[pos + 1:]
            _, tagged = alice.command(f"X-STATE RESTORE {bad}")
            assert b"NO [X-STATE-INVALID]" in tagged or b"NO [X-STATE-EXPIRED]" in tagged, (pos, tagged)
    for cut in (1, 10, len(token) // 2, len(token) - 1):
        _, tagged = alice.command(f"X-STATE RESTORE {token[:cut]}")
        assert b"NO [X-STATE-INVALID]" in tagged
    foreign = encode_token(SessionState.create("alice", 0), KeyRing.generate())
    _, tagged = alice.command(f"X-STATE RESTORE {foreign}")
    assert b"NO [X-STATE-INVALID]" in tagged
    # The session is unchanged by all of that: still selected, still alice.
    assert b"OK" in alice.command("NOOP")[1] and b"OK" in alice.command("UID FETCH 1:* (UID)")[1]


def test_not_authenticated_failures_leave_nothing_half_done(server: RunningServer) -> None:
    c = RawIMAP(server.host, server.port)
    _, tagged = c.command("X-STATE RESTORE notatoken")
    assert b"NO [X-STATE-INVALID]" in tagged
    _, tagged = c.command("SELECT INBOX")
    assert b"BAD" in tagged  # still not authenticated
    c.close()


def test_token_of_another_user_after_login(server: RunningServer) -> None:
    bob = login(server, "bob")
    token = token_of(bob.ok("X-STATE SAVE"))
    bob.close()
    a = login(server)
    _, tagged = a.command(f"X-STATE RESTORE {token}")
    assert b"NO [X-STATE-INVALID]" in tagged
    a.close()


def test_stale_when_mailbox_deleted_recreated_or_renamed(server: RunningServer) -> None:
    for action in ("delete", "recreate", "rename"):
        box = f"Stale{action}"
        fill(server, box, 2)
        a = login(server)
        a.ok(f"SELECT {box}")
        token = token_of(a.ok("X-STATE SAVE"))
        a.ok("UNSELECT")
        a.ok(f"DELETE {box}") if action != "rename" else a.ok(f"RENAME {box} {box}Moved")
        if action == "recreate":
            a.ok(f"CREATE {box}")
        a.close()
        c = RawIMAP(server.host, server.port)
        untagged, tagged = c.command(f"X-STATE RESTORE {token}")
        assert b"OK [X-STATE-STALE]" in tagged, (action, tagged)
        assert any(ln.startswith(b"* CAPABILITY") for ln in untagged)
        assert b"OK" in c.command("SELECT INBOX")[1]  # authenticated, free to select again
        c.close()


def test_password_change_and_user_removal_revoke_tokens(server: RunningServer) -> None:
    server.add_user("frank", "pw-frank")
    f = login(server, "frank")
    token = token_of(f.ok("X-STATE SAVE"))
    f.close()
    imapd_cli("user", "passwd", "frank", "--password-stdin", "--data-dir", str(server.data_dir), stdin="pw-new")
    c = RawIMAP(server.host, server.port)
    _, tagged = c.command(f"X-STATE RESTORE {token}")
    assert b"NO [X-STATE-EXPIRED]" in tagged
    c.close()
    server.users["frank"] = "pw-new"
    f = login(server, "frank")
    token = token_of(f.ok("X-STATE SAVE"))
    f.close()
    imapd_cli("user", "del", "frank", "--data-dir", str(server.data_dir))
    c = RawIMAP(server.host, server.port)
    _, tagged = c.command(f"X-STATE RESTORE {token}")
    assert b"NO [X-STATE-EXPIRED]" in tagged
    c.close()


def test_expiry_policy_and_failure_counting(tmp_path: Path) -> None:
    data = tmp_path / "data"
    imapd_cli("user", "add", "gina", "--password-stdin", "--data-dir", str(data), stdin="pw")
    srv = start_server(data, "-o", "xstate.max_age=1", "-o", "xstate.clock_skew=0",
                       "-o", "auth.max_failures=2", "-o", "auth.penalty_delay=0.6")
    srv.users["gina"] = "pw"
    try:
        g = login(srv, "gina")
        token = token_of(g.ok("X-STATE SAVE"))
        g.close()
        time.sleep(2.2)
        c = RawIMAP(srv.host, srv.port)
        _, tagged = c.command(f"X-STATE RESTORE {token}")
        assert b"NO [X-STATE-EXPIRED]" in tagged
        for _ in range(2):
            c.command("X-STATE RESTORE bogus")
        start = time.monotonic()
        _, tagged = c.command("X-STATE RESTORE bogus")
        assert b"NO [X-STATE-INVALID]" in tagged and time.monotonic() - start >= 0.55
        c.close()
    finally:
        stop_server(srv)
    srv = start_server(data, "-o", "xstate.authenticates=false", "-o", "tls.trust_loopback=true")
    try:
        c = RawIMAP(srv.host, srv.port)
        assert b"X-STATE" in c.greeting
        _, tagged = c.command("X-STATE RESTORE whatever")
        assert b"BAD" in tagged
        c.close()
    finally:
        stop_server(srv)
    srv = start_server(data, "-o", "tls.trust_loopback=false")
    try:
        c = RawIMAP(srv.host, srv.port)
        _, tagged = c.command("X-STATE RESTORE whatever")
        assert b"NO [PRIVACYREQUIRED]" in tagged
        _, tagged = c.command("X-STATE REVOKE whatever")
        assert b"NO [PRIVACYREQUIRED]" in tagged
        c.close()
    finally:
        stop_server(srv)


def test_signing_key_file_is_private_and_survives_restart(server: RunningServer) -> None:
    key = server.data_dir / "xstate.keys"
    assert key.exists() and (key.stat().st_mode & 0o077) == 0


def test_key_rotation_and_retirement_with_sighup(tmp_path: Path) -> None:
    import signal

    data = tmp_path / "data"
    imapd_cli("user", "add", "hal", "--password-stdin", "--data-dir", str(data), stdin="pw")
    srv = start_server(data)
    srv.users["hal"] = "pw"
    try:
        h = login(srv, "hal")
        old = token_of(h.ok("X-STATE SAVE"))
        out = imapd_cli("xstate-keys", "rotate", "--data-dir", str(data)).stdout.decode()
        assert "signs and verifies" in out and out.count("verifies") == 2
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded 2 X-STATE key(s)" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        new = token_of(h.ok("X-STATE SAVE"))
        assert new.rsplit(".", 1)[1] != old.rsplit(".", 1)[1]
        assert b"OK" in h.command(f"X-STATE RESTORE {old}")[1]  # the old key still verifies
        imapd_cli("xstate-keys", "retire", "--data-dir", str(data))
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while srv.log().count("X-STATE key(s)") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b"NO [X-STATE-EXPIRED]" in h.command(f"X-STATE RESTORE {old}")[1]
        assert b"OK" in h.command(f"X-STATE RESTORE {new}")[1]
        h.close()
    finally:
        stop_server(srv)
