"""WITHIN, SAVEDATE, STATUS DELETED, OBJECTID and UNAUTHENTICATE with real clients (imaplib, IMAPClient)
against a real server process."""

from __future__ import annotations

import contextlib
import datetime
import imaplib
import re
import sqlite3
import ssl
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.e2e.test_compress as compress
import tests.e2e.test_workers as workers
from imapd.client import xstate_restore, xstate_save
from imapd.server.handoff import owner_slot
from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.rawimap import RawIMAP

DAY = 86400


def _login(server: RunningServer, user: str = "alice") -> imaplib.IMAP4:
    imap = imaplib.IMAP4(server.host, server.port)
    imap.login(user, server.users[user])
    return imap


@pytest.fixture
def imap(server: RunningServer) -> Iterator[imaplib.IMAP4]:
    c = _login(server)
    yield c
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        c.logout()


def _fresh(imap: imaplib.IMAP4, name: str) -> None:
    imap.delete(name)
    assert imap.create(name)[0] == "OK"


def _numbers(data: list[bytes | None]) -> list[int]:
    return [int(x) for x in (data[0] or b"").split()]


# -- WITHIN (RFC 5032) ----------------------------------------------------------------------------------------
def test_within_search_sort_esearch_and_saved_result(server: RunningServer, imap: imaplib.IMAP4) -> None:
    assert "WITHIN" in imap.capabilities
    _fresh(imap, "within")
    now = time.time()
    for age in (10 * DAY, 2 * DAY, 3600, 5):
        assert imap.append("within", None, now - age, f"Subject: aged {age}\r\n\r\nx\r\n".encode())[0] == "OK"
    imap.select("within")
    assert _numbers(imap.search(None, "YOUNGER", "259200")[1]) == [2, 3, 4]
    assert _numbers(imap.search(None, "OLDER", "259200")[1]) == [1]
    assert _numbers(imap.uid("SEARCH", "YOUNGER 7200")[1]) == [3, 4]
    typ, data = imap.uid("SORT", "(REVERSE ARRIVAL)", "UTF-8", "OLDER 60")
    assert typ == "OK" and _numbers(data) == [3, 2, 1]
    typ, _ = imap.search(None, "RETURN", "(COUNT)", "YOUNGER", "86400")
    _, data = imap.response("ESEARCH")  # imaplib keeps untagged ESEARCH under its own name
    assert typ == "OK" and data[0] is not None and data[0].endswith(b"COUNT 2"), data
    # CONTEXT=SEARCH (RFC 5267): such a result changes with time alone, so it is not kept live
    typ, data = imap._simple_command("SEARCH", "RETURN (UPDATE COUNT) YOUNGER 86400")
    assert typ == "OK" and b"will not notify" in (data[0] or b""), data
    _, noupdate = imap.response("NOUPDATE")
    assert noupdate and noupdate[0] is not None and noupdate[0].startswith(b'"'), noupdate
    typ, data = imap._simple_command("SEARCH", "RETURN (UPDATE COUNT) SINCE 1-Jan-2000")
    assert typ == "OK" and (data[0] or b"").endswith(b"completed, will notify"), data
    # SEARCHRES: the saved result is UIDs, fixed when saved; it survives X-STATE as it was.
    typ, _ = imap.uid("SEARCH", "RETURN (SAVE) OLDER 86400")
    assert typ == "OK"
    token = xstate_save(imap)
    again = _login(server)
    try:
        assert xstate_restore(again, token).selected
        assert _numbers(again.uid("SEARCH", "UID $")[1]) == [1, 2]
    finally:
        again.logout()
    with pytest.raises(imaplib.IMAP4.error, match="non-zero"):
        imap.search(None, "OLDER", "0")


# -- STATUS DELETED (RFC 9051) / DELETED-STORAGE (RFC 9208) -----------------------------------------------------
def _status(line: bytes) -> dict[str, int]:
    inner = line[line.rindex(b"(") + 1 : line.rindex(b")")].split()
    return {inner[i].decode(): int(inner[i + 1]) for i in range(0, len(inner), 2)}


def test_status_deleted_and_deleted_storage(server: RunningServer, imap: imaplib.IMAP4) -> None:
    from imapclient import IMAPClient

    _fresh(imap, "deleted")
    bodies = [b"Subject: small\r\n\r\n" + b"x" * 100, b"Subject: big\r\n\r\n" + b"y" * 3000,
              b"Subject: kept\r\n\r\nz\r\n"]
    for raw in bodies:
        imap.append("deleted", None, None, raw)
    typ, data = imap.status("deleted", "(MESSAGES DELETED DELETED-STORAGE)")
    assert typ == "OK" and _status(data[0]) == {"MESSAGES": 3, "DELETED": 0, "DELETED-STORAGE": 0}, data
    imap.select("deleted")
    imap.store("1:2", "+FLAGS", "(\\Deleted)")
    imap.unselect()
    typ, data = imap.status("deleted", "(DELETED DELETED-STORAGE SIZE)")
    kib = -(-(len(bodies[0]) + len(bodies[1])) // 1024)  # units of 1024 octets, rounded up
    assert _status(data[0]) == {"DELETED": 2, "DELETED-STORAGE": kib, "SIZE": sum(map(len, bodies))}, data
    # LIST-STATUS (RFC 5819) carries the same items
    typ, data = imap._simple_command("LIST", '""', "deleted", "RETURN", "(STATUS (DELETED DELETED-STORAGE))")
    assert typ == "OK"
    _, lines = imap._untagged_response(typ, data, "STATUS")
    assert _status(lines[0]) == {"DELETED": 2, "DELETED-STORAGE": kib}, lines
    # a second client library reads them too, from a mailbox that is selected elsewhere
    imap.select("deleted")
    with IMAPClient(server.host, server.port, ssl=False) as client:
        client.login("alice", server.users["alice"])
        got = client.folder_status("deleted", ["DELETED", "DELETED-STORAGE", "MESSAGES"])
        assert got == {b"DELETED": 2, b"DELETED-STORAGE": kib, b"MESSAGES": 3}, got
        imap.expunge()
        assert client.folder_status("deleted", ["DELETED"]) == {b"DELETED": 0}


# -- OBJECTID (RFC 8474) ----------------------------------------------------------------------------------------
def _paren_id(data: bytes) -> str:
    m = re.search(rb"\(([A-Za-z0-9_-]+)\)", data)
    assert m, data
    return m.group(1).decode()


def _status_mailboxid(imap: imaplib.IMAP4, name: str) -> str:
    typ, data = imap.status(name, "(MAILBOXID)")
    assert typ == "OK", data
    assert data[0] is not None
    return _paren_id(data[0])


def _fetch_ids(imap: imaplib.IMAP4) -> dict[int, tuple[str, bytes]]:
    typ, data = imap.uid("FETCH", "1:*", "(EMAILID THREADID)")
    assert typ == "OK"
    out = {}
    for line in data:
        assert isinstance(line, bytes)
        m = re.search(rb"UID (\d+)", line)
        e = re.search(rb"EMAILID \(([A-Za-z0-9_-]+)\)", line)
        t = re.search(rb"THREADID (NIL|\([A-Za-z0-9_-]+\))", line)
        assert m and e and t, line
        out[int(m.group(1))] = (e.group(1).decode(), t.group(1))
    return out


def test_objectid_stable_across_rename_copy_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data), stdin="pw")
    srv = start_server(data)
    srv.users["alice"] = "pw"
    try:
        imap = _login(srv)
        assert "OBJECTID" in imap.capabilities
        typ, created = imap.create("Projects")
        assert typ == "OK" and created[0] is not None and b"[MAILBOXID (" in created[0], created
        mailboxid = _paren_id(created[0])
        assert _status_mailboxid(imap, "Projects") == mailboxid
        heads = ["Message-ID: <p0@x>", "Message-ID: <p1@x>\r\nIn-Reply-To: <p0@x>", "Message-ID: <q@x>"]
        for i, head in enumerate(heads):
            imap.append("Projects", None, None, f"{head}\r\nSubject: p{i}\r\n\r\nbody {i}\r\n".encode())
        typ, _ = imap.select("Projects")
        assert _paren_id(imap.response("MAILBOXID")[1][0] or b"") == mailboxid  # * OK [MAILBOXID (...)]
        ids = _fetch_ids(imap)
        assert len({e for e, _ in ids.values()}) == 3
        threads = {u: t for u, (_, t) in ids.items()}
        assert threads[1] == threads[2] != threads[3] and threads[1] != b"NIL", threads  # 2 replies to 1
        threadid = threads[1].strip(b"()").decode()
        assert _numbers(imap.uid("SEARCH", f"THREADID {threadid}")[1]) == [1, 2]
        emailid = ids[2][0]
        assert _numbers(imap.uid("SEARCH", f"EMAILID {emailid}")[1]) == [2]
        assert _numbers(imap.uid("SEARCH", "THREADID T1")[1]) == []  # no such thread
        assert _numbers(imap.uid("SEARCH", f"NOT EMAILID {emailid}")[1]) == [1, 3]
        # COPY keeps the EMAILID; RENAME keeps the MAILBOXID; a re-created name gets a new one
        imap.uid("COPY", "2", "INBOX")
        imap.unselect()
        assert imap.rename("Projects", "Archive/Projects")[0] == "OK"
        assert _status_mailboxid(imap, "Archive/Projects") == mailboxid
        typ, again = imap.create("Projects")
        assert again[0] is not None and _paren_id(again[0]) != mailboxid
        inbox_id = _status_mailboxid(imap, "INBOX")
        assert inbox_id not in (mailboxid, _paren_id(again[0]))
        imap.select("INBOX")
        assert [e for e, _ in _fetch_ids(imap).values()] == [emailid]
        imap.logout()
    finally:
        stop_server(srv)
    srv = start_server(data)
    srv.users["alice"] = "pw"
    try:
        imap = _login(srv)
        assert _status_mailboxid(imap, "Archive/Projects") == mailboxid
        assert _status_mailboxid(imap, "INBOX") == inbox_id
        imap.select("Archive/Projects")
        assert _fetch_ids(imap) == ids  # EMAILID and THREADID as they were
        imap.logout()
    finally:
        stop_server(srv)


# -- SAVEDATE (RFC 8514) ----------------------------------------------------------------------------------------
def _fetch_dates(imap: imaplib.IMAP4, uids: str = "1:*") -> dict[int, tuple[str, str]]:
    typ, data = imap.uid("FETCH", uids, "(SAVEDATE INTERNALDATE)")
    assert typ == "OK", data
    out = {}
    for line in data:
        assert isinstance(line, bytes)
        m = re.search(rb'UID (\d+)', line)
        s = re.search(rb'SAVEDATE "([^"]+)"', line)
        i = re.search(rb'INTERNALDATE "([^"]+)"', line)
        assert m and s and i, line
        out[int(m.group(1))] = (s.group(1).decode(), i.group(1).decode())
    return out


def test_savedate_fetch_search_and_copy(server: RunningServer, imap: imaplib.IMAP4) -> None:
    from imapclient import IMAPClient

    assert "SAVEDATE" in imap.capabilities
    _fresh(imap, "saved")
    _fresh(imap, "saved2")
    imap.append("saved", None, imaplib.Time2Internaldate(946_684_800), b"Subject: old\r\n\r\nx\r\n")  # 1 Jan 2000
    imap.select("saved")
    ((saved, internal),) = _fetch_dates(imap).values()
    assert internal.startswith(" 1-Jan-2000") or internal.startswith("31-Dec-1999"), internal
    when = datetime.datetime.strptime(saved.strip(), "%d-%b-%Y %H:%M:%S %z")
    assert abs(when.timestamp() - time.time()) < 30, saved  # saved just now, not the INTERNALDATE
    today = when.strftime("%d-%b-%Y")
    assert _numbers(imap.search(None, "SAVEDON", today)[1]) == [1]
    assert _numbers(imap.search(None, "SAVEDBEFORE", today)[1]) == []
    assert _numbers(imap.search(None, "SAVEDSINCE", today, "BEFORE", "1-Jan-2001")[1]) == [1]
    assert _numbers(imap.search(None, "SAVEDATESUPPORTED")[1]) == [1]
    time.sleep(1.1)
    imap.uid("COPY", "1", "saved2")
    with IMAPClient(server.host, server.port, ssl=False) as client:
        client.login("alice", server.users["alice"])
        client.select_folder("saved2")
        got = client.fetch(client.search("ALL"), ["SAVEDATE", "INTERNALDATE"])
        ((uid, items),) = got.items()
        copied = items[b"SAVEDATE"]
        assert isinstance(copied, bytes) and copied.decode() != saved  # the copy was saved anew
        assert client.search(["SAVEDON", today]) == [uid]


def test_savedate_of_messages_stored_before_the_index_kept_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data), stdin="pw")
    srv = start_server(data)
    srv.users["alice"] = "pw"
    try:
        imap = _login(srv)
        imap.append("INBOX", None, imaplib.Time2Internaldate(1_100_000_000), b"Subject: before\r\n\r\nx\r\n")
        imap.logout()
    finally:
        stop_server(srv)
    # the index as schema version 2 left it: no savedate or threadid column, no threads table
    conn = sqlite3.connect(data / "mail" / "alice" / "imapd-index.sqlite")
    conn.execute("ALTER TABLE messages DROP COLUMN savedate")
    conn.execute("ALTER TABLE messages DROP COLUMN threadid")
    conn.execute("DROP TABLE threads")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    srv = start_server(data)
    srv.users["alice"] = "pw"
    try:
        imap = _login(srv)
        imap.append("INBOX", None, imaplib.Time2Internaldate(1_100_000_000), b"Subject: after\r\n\r\nx\r\n")
        imap.select("INBOX")
        dates = _fetch_dates(imap)
        assert dates[1][0] == dates[1][1]  # migrated: the save date is the INTERNALDATE
        assert dates[2][0] != dates[2][1]  # stored now
        imap.logout()
    finally:
        stop_server(srv)


# -- UNAUTHENTICATE (RFC 8437) --------------------------------------------------------------------------------
def _unauthenticate(imap: imaplib.IMAP4) -> tuple[str, list[bytes | None]]:
    imaplib.Commands.setdefault("UNAUTHENTICATE", ("AUTH", "SELECTED"))
    typ, data = imap._simple_command("UNAUTHENTICATE")
    if typ == "OK":
        imap.state = "NONAUTH"  # imaplib does not know the command: tell it the state changed
    return typ, data


def test_unauthenticate_then_another_user_logs_in(server: RunningServer) -> None:
    imap = _login(server, "alice")
    try:
        typ, caps = imap.capability()
        assert b"UNAUTHENTICATE" in (caps[0] or b"").split()
        imap.create("unauth-alice")
        imap.append("unauth-alice", None, None, b"Subject: alice's\r\n\r\nx\r\n")
        typ, data = imap._simple_command("ENABLE", "CONDSTORE")
        assert typ == "OK"
        imap.select("unauth-alice")
        imap.store("1", "+FLAGS", "(\\Deleted)")
        typ, data = _unauthenticate(imap)  # RFC 8437: A01 UNAUTHENTICATE / A01 OK
        assert typ == "OK", data
        assert data[0] is not None and data[0].startswith(b"[CAPABILITY "), data
        code = data[0][1 : data[0].index(b"]")].split()
        assert b"AUTH=PLAIN" in code and b"UNAUTHENTICATE" not in code, data  # the pre-login list
        # not authenticated: what needs a login is refused, CAPABILITY is the pre-login one
        imap.state = "AUTH"  # past imaplib's own state check: the server must refuse it
        with pytest.raises(imaplib.IMAP4.error, match="needs authentication"):
            imap.select("INBOX")
        imap.state = "NONAUTH"
        typ, caps = imap.capability()
        assert b"AUTH=PLAIN" in (caps[0] or b"").split() and b"UNAUTHENTICATE" not in (caps[0] or b"").split()
        # another user on the same connection sees only their own mail and starts with nothing enabled
        imap.login("bob", server.users["bob"])
        audit = [line.split("imapd.audit: ", 1)[1] for line in server.log().splitlines() if "imapd.audit: " in line]
        unauth = next(i for i, line in enumerate(audit) if line.startswith("unauthenticate user='alice'"))
        session = re.search(r"session=(\S+)", audit[unauth])
        assert session and any(line.startswith("login user='bob'") and f"session={session.group(1)} " in line
                               for line in audit[unauth + 1 :]), audit[unauth:]
        typ, data = imap.status("INBOX", "(MESSAGES)")
        assert typ == "OK"
        typ, data = imap.list('""', "unauth-*")
        assert data == [None], data
        typ, data = imap._simple_command("ENABLE", "CONDSTORE")
        _, enabled = imap._untagged_response(typ, data, "ENABLED")
        assert enabled == [b"CONDSTORE"], enabled  # enabled anew: UNAUTHENTICATE reset it
        # alice's mailbox was closed without expunge
        _unauthenticate(imap)
        imap.login("alice", server.users["alice"])
        imap.select("unauth-alice")
        assert _numbers(imap.search(None, "DELETED")[1]) == [1]
    finally:
        imap.logout()


def test_unauthenticate_then_xstate_restore_and_unauthenticate_in_wrong_state(server: RunningServer) -> None:
    first = _login(server, "bob")
    first.select("INBOX")
    token = xstate_save(first)
    first.logout()
    imap = _login(server, "alice")
    try:
        assert _unauthenticate(imap)[0] == "OK"
        imap.state = "AUTH"  # past imaplib's own state check: the server must refuse it
        with pytest.raises(imaplib.IMAP4.error, match="UNAUTHENTICATE command error: BAD"):
            _unauthenticate(imap)  # only valid once authenticated
        imap.state = "NONAUTH"
        assert xstate_restore(imap, token).selected  # RESTORE authenticates bob, as after a greeting
        assert imap.status("INBOX", "(MESSAGES)")[0] == "OK"
    finally:
        imap.logout()


def test_unauthenticate_gives_back_the_users_connection_slot(tmp_path: Path) -> None:
    data = tmp_path / "data"
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data), stdin="pw")
    srv = start_server(data, "-o", "limits.max_connections_per_user=1")
    srv.users["alice"] = "pw"
    try:
        first = _login(srv)
        second = imaplib.IMAP4(srv.host, srv.port)
        with pytest.raises(imaplib.IMAP4.error, match="LIMIT"):
            second.login("alice", "pw")  # the one slot is taken
        assert _unauthenticate(first)[0] == "OK"
        second.login("alice", "pw")  # given back by UNAUTHENTICATE
        with pytest.raises(imaplib.IMAP4.error, match="LIMIT"):
            first.login("alice", "pw")
        second.logout()
        first.login("alice", "pw")
        first.logout()
    finally:
        stop_server(srv)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RunningServer, int]]:
    """Two workers (each user has one owner worker) with plain and TLS listeners: (server, TLS port)."""
    cert, key = workers.make_cert(tmp_path)
    data = tmp_path / "data"
    for user, password in workers.USERS.items():
        imapd_cli("user", "add", user, "--password-stdin", "--data-dir", str(data), stdin=password)
    srv = start_server(data, "-o", "server.workers=2", "-o", f"tls.cert={cert}", "-o", f"tls.key={key}",
                       tls_listen="127.0.0.1:0")
    srv.users.update(workers.USERS)
    m = re.search(r"ready on 127\.0\.0\.1:\d+, 127\.0\.0\.1:(\d+)", srv.log())
    assert m, srv.log()
    workers._supervisor_ready(srv, 2)
    try:
        yield srv, int(m.group(1))
    finally:
        stop_server(srv)


def _two_owners() -> tuple[str, str]:
    """Two users whose owner workers differ."""
    first = "alice"
    other = next(u for u in workers.USERS if owner_slot(u, 2) != owner_slot(first, 2))
    return first, other


def _login_raw(conn: RawIMAP, user: str) -> None:
    conn.ok(f"LOGIN {user} {workers.USERS[user]}")


def _works_as(srv: RunningServer, conn: RawIMAP, user: str, subject: str) -> None:
    """The session is really ``user``'s: what it appends, another client of that user sees."""
    raw = f"Subject: {subject}\r\n\r\nx"
    conn.ok(f"APPEND INBOX {{{len(raw)}+}}\r\n{raw}")
    other = imaplib.IMAP4(srv.host, srv.port)
    try:
        other.login(user, workers.USERS[user])
        other.select("INBOX", readonly=True)
        _, found = other.search(None, "SUBJECT", subject)
        assert _numbers(found), (user, subject)
    finally:
        other.logout()


def test_unauthenticate_moves_to_the_next_users_owner_worker(cluster: tuple[RunningServer, int]) -> None:
    srv, tls_port = cluster
    first, second = _two_owners()
    conn = RawIMAP(srv.host, srv.port)
    port = conn.sock.getsockname()[1]
    _login_raw(conn, first)
    conn.ok("SELECT INBOX")
    (owner_first,) = workers._server_socket_pid(srv.port, port)
    _works_as(srv, conn, first, "plain-first")
    _, tagged = conn.command("UNAUTHENTICATE")
    assert tagged.startswith(b"t") and b" OK [CAPABILITY " in tagged, tagged
    _login_raw(conn, second)  # owned by the other worker: the connection moves there
    (owner_second,) = workers._server_socket_pid(srv.port, port)
    assert owner_second != owner_first
    conn.ok("SELECT INBOX")
    _works_as(srv, conn, second, "plain-second")
    conn.ok("UNAUTHENTICATE")
    _login_raw(conn, first)  # and back
    assert workers._server_socket_pid(srv.port, port) == {owner_first}
    untagged = conn.ok("SELECT INBOX")
    assert any(line.endswith(b" EXISTS") for line in untagged)
    conn.command("LOGOUT")
    conn.close()

    # over TLS the stream is relayed to whichever worker owns the user logged in now
    tls = workers.TLSRaw(tls_port)
    _login_raw(tls, first)
    _works_as(srv, tls, first, "tls-first")
    tls.ok("UNAUTHENTICATE")
    _login_raw(tls, second)
    _works_as(srv, tls, second, "tls-second")
    tls.ok("UNAUTHENTICATE")
    untagged, tagged = tls.command("SELECT INBOX")
    assert b"BAD" in tagged, tagged
    _login_raw(tls, first)
    tls.ok("SELECT INBOX")
    tls.command("LOGOUT")
    tls.close()


def _serving_pids(srv: RunningServer, conn: RawIMAP) -> set[int] | None:
    """The process that holds a plain connection's socket (None over TLS: the acceptor keeps it)."""
    if isinstance(conn.sock, compress.Deflated) and isinstance(conn.sock.sock, ssl.SSLSocket):
        return None
    return workers._server_socket_pid(srv.port, conn.sock.getsockname()[1])


def test_unauthenticate_on_a_compressed_connection_then_another_owner(cluster: tuple[RunningServer, int]) -> None:
    """COMPRESS=DEFLATE stays on after UNAUTHENTICATE (it is a layer of the connection, like TLS), so the
    next LOGIN's hand-off carries the deflate stream, as a reload does."""
    srv, tls_port = cluster
    first, second = _two_owners()
    for conn in (compress.ZClient(srv.host, srv.port), compress.ZClient.over_tls(tls_port)):
        _login_raw(conn, first)
        conn.compress()
        _works_as(srv, conn, first, "z-first")
        conn.ok("UNAUTHENTICATE")
        before = _serving_pids(srv, conn)
        _login_raw(conn, second)
        _works_as(srv, conn, second, "z-second")
        after = _serving_pids(srv, conn)
        assert before is None or (after is not None and after != before), (before, after)  # moved
        untagged = conn.ok("SELECT INBOX")
        assert any(line.endswith(b" EXISTS") for line in untagged), untagged
        conn.ok("UNAUTHENTICATE")
        _login_raw(conn, first)
        conn.ok("SELECT INBOX")
        conn.command("LOGOUT")
        conn.close()


def test_login_after_unauthenticate_mid_deflate_block_is_served_where_it_is(
        cluster: tuple[RunningServer, int]) -> None:
    """Input that does not end with a sync flush cannot be resumed by another process: the LOGIN is
    served by the worker that has the connection (correct, only not the owner)."""
    srv, _ = cluster
    first, second = _two_owners()
    conn = compress.ZClient(srv.host, srv.port)
    _login_raw(conn, first)
    conn.compress()
    conn.ok("UNAUTHENTICATE")
    (here,) = workers._server_socket_pid(srv.port, conn.sock.getsockname()[1])
    z = conn.sock
    assert isinstance(z, compress.Deflated)
    login = f"a1 LOGIN {second} {workers.USERS[second]}\r\n".encode()
    # LOGIN sync-flushed, then a NOOP ended by a partial flush only, in one packet
    z.send_raw(z.out.compress(login) + z.out.flush(zlib.Z_SYNC_FLUSH)
               + z.out.compress(b"a2 NOOP\r\n") + z.out.flush(zlib.Z_PARTIAL_FLUSH))
    assert conn.readline().startswith(b"a1 OK"), srv.log()
    assert conn.readline().startswith(b"a2 OK")
    assert workers._server_socket_pid(srv.port, z.getsockname()[1]) == {here}
    _works_as(srv, conn, second, "z-partial")
    conn.command("LOGOUT")
    conn.close()
