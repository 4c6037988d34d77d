"""X-STATE RESTORE's catch-up against concurrent changes, failures that must leave the session as it was,
and tokens that must restore: big mailboxes seeded through the store, then a real server."""

from __future__ import annotations

import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from imapd.store.mailbox import AppendItem
from imapd.store.store import Store
from statecodec import KeyRing, UidRanges, UidSet
from statecodec import decode as decode_token
from statecodec import encode as encode_token
from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.e2e.test_xstate import ClientModel, token_of
from tests.rawimap import RawIMAP

WIDE = 1_500  # a mailbox where a scattered $ outgrows the token's cap
USER, PASSWORD = "carl", "pw-carl"


def _seed(data: Path) -> None:
    imapd_cli("user", "add", USER, "--password-stdin", "--data-dir", str(data), stdin=PASSWORD)
    store = Store(str(data), durability="normal")
    try:
        user = store.user(USER)
        for name, n in (("Forty", 40), ("Wide", WIDE), ("Small", 5)):
            user.create_mailbox(name)
            mb = user.open(name)
            for start in range(0, n, 5000):
                mb.append_many([AppendItem(b"From: a@example.org\r\nSubject: %d\r\n\r\nx\r\n" % i)
                                for i in range(start, min(n, start + 5000))], fsync=False)
            mb.release()
    finally:
        store.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("xstate-catchup") / "data"
    _seed(data)
    server = start_server(data, "-o", "store.fsync=false")
    server.users[USER] = PASSWORD
    try:
        yield server
    finally:
        stop_server(server)


def login(server: RunningServer, source: str | None = None) -> RawIMAP:
    c = connect(server, source=source)
    c.ok(f"LOGIN {USER} {PASSWORD}")
    return c


def connect(server: RunningServer, *, source: str | None = None, rcvbuf: int | None = None) -> RawIMAP:
    """A client socket, optionally from another loopback address or with a tiny receive window."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source is not None:
        sock.bind((source, 0))
    sock.settimeout(60)
    sock.connect((server.host, server.port))
    c = RawIMAP.__new__(RawIMAP)
    c.sock, c.buf, c._n = sock, b"", 0
    c.greeting = c.readline()
    return c


def uids_of(server: RunningServer, mailbox: str) -> list[int]:
    c = login(server)
    c.ok(f"EXAMINE {mailbox}")
    lines = c.ok("UID SEARCH ALL")
    c.close()
    return [int(x) for x in lines[0].split()[2:]]


def restore(server: RunningServer, token: str, **kw: str) -> tuple[RawIMAP, list[bytes], bytes]:
    c = connect(server, **kw)  # type: ignore[arg-type]
    untagged, tagged = c.command(f"X-STATE RESTORE {token}")
    return c, untagged, tagged


# -- issue 15.1: an expunge during a slow catch-up ----------------------------------------------------------


def _send_buffer_max() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 << 20


# The client "knew" UIDs 1..FORGED_KNOWN: at ~17 bytes per EXPUNGE, about twice what the server's socket
# send buffer can grow to (Linux default 4 MiB: 400,000 UIDs, 6.8 MB), so the catch-up must wait in drain().
FORGED_KNOWN = max(400_000, _send_buffer_max() * 2 // 17)


def forged_big_token(srv: RunningServer, mailbox: str) -> str:
    """A token as the server would have issued it when ``mailbox`` held UIDs 1..FORGED_KNOWN, i.e. before
    all but its present messages were expunged (signed with the server's own key, so the test needs no
    400k-message Maildir to reproduce a catch-up that cannot fit in the socket buffers)."""
    a = login(srv)
    a.ok(f"SELECT {mailbox}")
    token = token_of(a.ok("X-STATE SAVE"))
    a.close()
    keys = KeyRing.load(srv.data_dir / "xstate.keys")
    state = decode_token(token, keys, max_age=3600)
    assert state.mailbox is not None
    view = msgspec.structs.replace(
        state.mailbox, known_uids=UidRanges.from_set(UidSet.from_ranges([(1, FORGED_KNOWN)])),
        message_count=FORGED_KNOWN, uidnext=FORGED_KNOWN + 1)
    return encode_token(msgspec.structs.replace(state, mailbox=view), keys)


def read_until_tagged(c: RawIMAP, tag: bytes) -> tuple[list[bytes], bytes]:
    """Every line up to the tagged one, read in bulk (RawIMAP.readline is quadratic on megabytes)."""
    data = bytearray(c.buf)
    marker = b"\r\n" + tag + b" "
    while marker not in data and not data.startswith(tag + b" "):
        chunk = c.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    end = data.index(b"\r\n", data.index(marker) + 2) + 2
    lines = bytes(data[:end]).split(b"\r\n")[:-1]
    c.buf = bytes(data[end:])
    return lines[:-1], lines[-1]


def test_expunge_during_a_slow_catch_up_is_reported_afterwards(srv: RunningServer) -> None:
    token = forged_big_token(srv, "Forty")
    before = list(range(1, FORGED_KNOWN + 1))
    present = uids_of(srv, "Forty")
    assert present == list(range(1, 41))

    slow = connect(srv, rcvbuf=4096)
    slow.sock.sendall(f"r1 X-STATE RESTORE {token}\r\n".encode())
    time.sleep(1.5)  # the server has filled every buffer and waits in drain(), inside the EXPUNGE run
    other = login(srv)
    other.ok("SELECT Forty")
    other.ok("UID STORE 30 +FLAGS.SILENT (\\Deleted)")
    other.ok("UID EXPUNGE 30")  # a message the client knows before and after the catch-up
    other.ok("UID STORE 10 +FLAGS.SILENT (\\Flagged)")
    other.close()

    untagged, tagged = read_until_tagged(slow, b"r1")
    assert tagged.startswith(b"r1 OK [READ-WRITE]"), tagged
    expunges = [ln for ln in untagged if ln.endswith(b" EXPUNGE")]
    assert len(expunges) == FORGED_KNOWN - 40 + 1
    assert expunges[0] == b"* %d EXPUNGE" % FORGED_KNOWN and expunges[-2] == b"* 41 EXPUNGE"
    assert expunges[-1] == b"* 30 EXPUNGE"  # reported after the catch-up, before the tagged OK
    assert untagged.index(b"* 40 EXISTS") < untagged.index(b"* 30 EXPUNGE")
    model = ClientModel(before, {})  # type: ignore[arg-type]
    model.apply(untagged)  # asserts that EXISTS never shrinks the client's list
    more, _ = slow.command("NOOP")
    model.apply(more)
    server_uids = uids_of(srv, "Forty")
    assert server_uids == [u for u in range(1, 41) if u != 30]
    assert model.uids == server_uids  # the client's seq -> UID map is the server's
    assert slow.ok("SEARCH FLAGGED") == [b"* SEARCH 10"]
    slow.close()


# -- issue 15.2: a failed RESTORE leaves the session as it was ------------------------------------------------
def _broken_token(srv: RunningServer) -> tuple[str, Path]:
    a = login(srv)
    a.ok("SELECT Small")
    token = token_of(a.ok("X-STATE SAVE"))
    a.close()
    new = srv.data_dir / "mail" / USER / ".Small" / "new"
    shutil.rmtree(new)
    new.write_bytes(b"not a directory")  # every sync of the folder now fails with a store error
    return token, new


def test_store_error_leaves_the_session_unauthenticated_and_unchanged(srv: RunningServer) -> None:
    token, new = _broken_token(srv)
    try:
        c, untagged, tagged = restore(srv, token)
        assert re.match(rb"t1 NO \[UNAVAILABLE\] ", tagged), tagged
        assert not any(ln.startswith(b"* CAPABILITY") for ln in untagged), untagged
        assert c.command("SELECT INBOX")[1] == b"t2 BAD SELECT needs authentication first"
        c.close()

        s = login(srv)  # from SELECTED: no [CLOSED], still selected on the old mailbox
        s.ok("SELECT Forty")
        untagged, tagged = s.command(f"X-STATE RESTORE {token}")
        assert b" NO [UNAVAILABLE] " in tagged and not any(b"[CLOSED]" in ln for ln in untagged)
        assert b"OK" in s.command("FETCH 1 (UID)")[1]
        s.close()
    finally:
        new.unlink()
        new.mkdir()


# -- issue 16.3: refresh, REVOKE, address binding, audit ---------------------------------------------------
def _lineage(srv: RunningServer, token: str) -> bytes:
    keys = KeyRing.load(srv.data_dir / "xstate.keys")
    return decode_token(token, keys, max_age=3600).lineage


def test_refresh_keeps_the_lineage_and_revoke_ends_it_everywhere(srv: RunningServer) -> None:
    a = login(srv)
    a.ok("SELECT Small")
    first = token_of(a.ok("X-STATE SAVE"))
    a.close()
    live, _, tagged = restore(srv, first)
    assert tagged.startswith(b"t1 OK [READ-WRITE]")
    refreshed = token_of(live.ok("X-STATE SAVE"))  # a restored session saves a fresh token...
    assert _lineage(srv, refreshed) == _lineage(srv, first)  # ...of the same lineage
    again, _, tagged = restore(srv, refreshed)
    assert tagged.startswith(b"t1 OK [READ-WRITE]")
    again.close()

    b = login(srv)  # another login: another lineage, untouched by the revocation below
    unrelated = token_of(b.ok("X-STATE SAVE"))
    b.close()
    assert _lineage(srv, unrelated) != _lineage(srv, first)

    logout = connect(srv)
    assert logout.command(f"X-STATE REVOKE {refreshed}")[1] == b"t1 OK X-STATE revoked"
    for token in (first, refreshed):
        c, _, tagged = restore(srv, token)
        assert tagged == b"t1 NO [X-STATE-EXPIRED] State token was revoked (X-STATE REVOKE)"
        assert c.command("SELECT INBOX")[1].startswith(b"t2 BAD")
        c.close()
    # A session of the lineage still open cannot mint new tokens of it.
    assert live.command("X-STATE SAVE")[1] == (
        b"t3 NO [X-STATE-EXPIRED] This session's state tokens were revoked; log in again")
    live.close()
    c, _, tagged = restore(srv, unrelated)
    assert tagged.startswith(b"t1 OK [CAPABILITY ")
    c.close()
    assert logout.command("X-STATE REVOKE")[1].startswith(b"t2 BAD")  # no token, not logged in
    assert logout.command("X-STATE REVOKE notatoken")[1] == b"t3 NO [X-STATE-INVALID] Not a state token of this server"
    logout.close()

    # Another server process on the same storage sees the revocation (it lives in the user's index).
    second = start_server(srv.data_dir, "-o", "store.fsync=false")
    try:
        c, _, tagged = restore(second, first)
        assert tagged == b"t1 NO [X-STATE-EXPIRED] State token was revoked (X-STATE REVOKE)"
        c.close()
    finally:
        stop_server(second)


def test_revoke_of_the_current_session(srv: RunningServer) -> None:
    a = login(srv)
    token = token_of(a.ok("X-STATE SAVE"))
    assert a.command("X-STATE REVOKE")[1] == b"t3 OK X-STATE revoked"
    assert a.command("X-STATE SAVE")[1].startswith(b"t4 NO [X-STATE-EXPIRED]")
    a.close()
    c, _, tagged = restore(srv, token)
    assert tagged.startswith(b"t1 NO [X-STATE-EXPIRED]")
    c.close()
    fresh = login(srv)  # a session that never saved: REVOKE still closes the door for it
    assert fresh.command("X-STATE REVOKE")[1] == b"t2 OK X-STATE revoked"
    assert fresh.command("X-STATE SAVE")[1].startswith(b"t3 NO [X-STATE-EXPIRED]")
    fresh.close()


def test_audit_line_for_every_restore(srv: RunningServer) -> None:
    a = login(srv)
    token = token_of(a.ok("X-STATE SAVE"))
    a.close()
    c, _, tagged = restore(srv, token)
    assert tagged.startswith(b"t1 OK")
    c.close()
    deadline = time.monotonic() + 5
    pattern = re.compile(rf"imapd\.audit.*login user='{USER}' address=127\.0\.0\.1 session=[0-9a-f]{{12}} mechanism=X-STATE")
    while not pattern.search(srv.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pattern.search(srv.log()), srv.log()[-2000:]


def test_bind_address(tmp_path: Path) -> None:
    data = tmp_path / "data"
    imapd_cli("user", "add", USER, "--password-stdin", "--data-dir", str(data), stdin=PASSWORD)
    bound = start_server(data, "-o", "xstate.bind_address=true")
    bound.users[USER] = PASSWORD
    try:
        a = login(bound, source="127.0.0.1")
        token = token_of(a.ok("X-STATE SAVE"))
        a.close()
        c, _, tagged = restore(bound, token, source="127.0.0.2")
        assert tagged == b"t1 NO [X-STATE-INVALID] State token was saved from another client address"
        c.close()
        c, _, tagged = restore(bound, token, source="127.0.0.1")
        assert tagged.startswith(b"t1 OK [CAPABILITY ")
        c.close()
    finally:
        stop_server(bound)
    unbound = start_server(data)  # the default: a token restores from anywhere
    try:
        c, _, tagged = restore(unbound, token, source="127.0.0.2")
        assert tagged.startswith(b"t1 OK [CAPABILITY ")
        c.close()
    finally:
        stop_server(unbound)


# -- issue 16.4: SAVE never issues a token RESTORE rejects ---------------------------------------------------
def _uid_set(uids: list[int]) -> str:
    return ",".join(map(str, uids))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.lists(st.integers(1, WIDE), min_size=1, max_size=WIDE, unique=True),
    st.integers(1, WIDE).map(lambda n: list(range(1, n + 1))),
    st.integers(2, 4).map(lambda k: list(range(1, WIDE + 1, k))),
))
@example(list(range(1, WIDE + 1, 2)))  # 750 scattered UIDs: dropped
@example([5, 6, 7, 1000])  # kept
def test_every_saved_token_restores_whatever_the_search_result(srv: RunningServer, saved: list[int]) -> None:
    a = login(srv)
    a.ok("SELECT Wide")
    a.ok(f"UID SEARCH RETURN (SAVE) UID {_uid_set(sorted(saved))}")
    untagged, tagged = a.command("X-STATE SAVE")
    a.close()
    token = token_of(untagged)
    c, _, restored = restore(srv, token)
    assert restored.startswith(b"t1 OK [READ-WRITE]"), (len(token), restored)
    got = c.ok("UID FETCH $ (UID)") if b"[X-STATE-NOSEARCHRES]" not in tagged else []
    c.close()
    if b"[X-STATE-NOSEARCHRES]" in tagged:
        assert tagged.endswith(b"OK [X-STATE-NOSEARCHRES] X-STATE saved without the search result $, too large to keep")
        assert len(saved) > 200  # only a large, scattered $ is dropped
    else:
        assert sorted(int(re.search(rb"UID (\d+)", ln).group(1)) for ln in got) == sorted(saved)  # type: ignore[union-attr]
    assert len(token) < 1200


# -- \Recent: a restored session is the same session ---------------------------------------------------------
def _append(c: RawIMAP, mailbox: str, subject: str) -> None:
    data = b"From: a@example.org\r\nSubject: " + subject.encode() + b"\r\n\r\nx\r\n"
    c.ok(b"APPEND " + mailbox.encode() + b" {%d+}\r\n" % len(data) + data)


def test_restore_keeps_the_sessions_recent_and_claims_new_mail(srv: RunningServer) -> None:
    b = login(srv)
    b.ok("CREATE Fresh")
    _append(b, "Fresh", "one")
    _append(b, "Fresh", "two")
    a = login(srv)
    assert b"* 2 RECENT" in a.ok("SELECT Fresh")  # a is the first to be told: both are \Recent for it
    token = token_of(a.ok("X-STATE SAVE"))
    a.close()
    _append(b, "Fresh", "three")  # arrives while no session has the mailbox open

    c, untagged, tagged = restore(srv, token)
    assert tagged.startswith(b"t1 OK [READ-WRITE]"), tagged
    assert untagged[1:4] == [b"* 3 EXISTS", b"* 3 RECENT", b"* 3 FETCH (FLAGS (\\Recent))"], untagged
    lines = c.ok("FETCH 1:* (FLAGS)")
    assert lines == [b"* 1 FETCH (FLAGS (\\Recent))", b"* 2 FETCH (FLAGS (\\Recent))",
                     b"* 3 FETCH (FLAGS (\\Recent))"]
    c.close()
    assert b"* 0 RECENT" in b.ok("SELECT Fresh")  # claimed once: nobody else gets them
    b.close()
