"""QUOTA (RFC 9208) and METADATA (RFC 5464) sessions against a real server, following the RFCs' examples."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.rawimap import RawIMAP

MESSAGE = b"From: a@example.org\r\nSubject: q\r\n\r\n" + b"x" * 200 + b"\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("quota") / "data"
    srv = start_server(data, "-o", "metadata.max_value_size=1024", "-o", "metadata.max_entries=6")
    for name in ("alice", "bob", "carol"):
        srv.add_user(name, "pw")
    try:
        yield srv
    finally:
        stop_server(srv)


def login(server: RunningServer, user: str) -> RawIMAP:
    c = RawIMAP(server.host, server.port)
    c.ok(f"LOGIN {user} pw")
    return c


def kib(octets: int) -> int:
    return (octets + 1023) // 1024


def append(c: RawIMAP, body: bytes = MESSAGE, mailbox: str = "INBOX") -> tuple[list[bytes], bytes]:
    return c.command(b"APPEND %s {%d+}\r\n" % (mailbox.encode(), len(body)) + body)


def test_capabilities_name_both_extensions_and_not_quotaset(server: RunningServer) -> None:
    c = RawIMAP(server.host, server.port)
    caps = c.ok("CAPABILITY")[0].split()
    for cap in (b"QUOTA", b"QUOTA=RES-STORAGE", b"QUOTA=RES-MESSAGE", b"METADATA", b"METADATA-SERVER"):
        assert cap in caps
    assert b"QUOTASET" not in caps  # SETQUOTA is the administrator's
    c.close()


def test_quota_root_usage_and_overquota_on_append_copy_but_not_move(server: RunningServer) -> None:
    imapd_cli("user", "quota", "alice", "--storage", "10", "--messages", "3", "--data-dir", str(server.data_dir))
    c = login(server, "alice")
    untagged = c.ok("GETQUOTAROOT INBOX")
    assert untagged == [b'* QUOTAROOT "INBOX" ""', b'* QUOTA "" (STORAGE 0 10 MESSAGE 0 3)']
    for _ in range(3):
        assert b"OK [APPENDUID" in append(c)[1]
    untagged, tagged = append(c)
    assert re.fullmatch(rb"t\d+ NO \[OVERQUOTA\] .*", tagged), tagged
    three = kib(3 * len(MESSAGE))
    assert c.ok('GETQUOTA ""') == [b'* QUOTA "" (STORAGE %d 10 MESSAGE 3 3)' % three]
    c.ok("SELECT INBOX")
    _, tagged = c.command("COPY 1 Sent")
    assert b"NO [OVERQUOTA]" in tagged
    assert c.ok("STATUS Sent (MESSAGES)") == [b'* STATUS "Sent" (MESSAGES 0)']
    c.ok("MOVE 1 Sent")  # inside the one quota root: no new usage
    assert c.ok('GETQUOTA ""') == [b'* QUOTA "" (STORAGE %d 10 MESSAGE 3 3)' % three]
    c.ok("STORE 1:* +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")
    assert c.ok('GETQUOTA ""') == [b'* QUOTA "" (STORAGE %d 10 MESSAGE 1 3)' % kib(len(MESSAGE))]
    # STORAGE: 11 KiB cannot fit in 10.
    big = b"Subject: big\r\n\r\n" + b"y" * 11 * 1024 + b"\r\n"
    _, tagged = append(c, big)
    assert b"NO [OVERQUOTA]" in tagged
    # A raised limit takes effect at once, in the running server, and ends no session.
    imapd_cli("user", "quota", "alice", "--storage", "100", "--data-dir", str(server.data_dir))
    assert b"OK [APPENDUID" in append(c, big)[1]
    used = kib(len(MESSAGE) + len(big))
    assert used > 10
    assert c.ok('GETQUOTA ""') == [b'* QUOTA "" (STORAGE %d 100 MESSAGE 2 3)' % used]
    c.close()


def test_setquota_and_unknown_roots_are_refused(server: RunningServer) -> None:
    c = login(server, "alice")
    _, tagged = c.command('SETQUOTA "" (STORAGE 512)')
    assert re.fullmatch(rb"t\d+ NO \[NOPERM\] .*", tagged), tagged
    _, tagged = c.command('GETQUOTA "!partition.sda4"')
    assert b" NO " in tagged
    _, tagged = c.command("GETQUOTAROOT nosuchbox")
    assert b"NO [NONEXISTENT]" in tagged
    c.close()


def test_a_user_without_limits_has_no_quota_root(server: RunningServer) -> None:
    c = login(server, "bob")
    assert c.ok("GETQUOTAROOT INBOX") == [b'* QUOTAROOT "INBOX"']
    _, tagged = c.command('GETQUOTA ""')
    assert b"NO [NONEXISTENT]" in tagged
    c.close()


def test_the_default_from_settings_and_a_delivery_share_the_usage(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", "-o", "quota.messages=2")
    try:
        srv.add_user("dora", "pw")
        imapd_cli("deliver", "dora", "--data-dir", str(srv.data_dir), "-o", "quota.messages=2", stdin=MESSAGE)
        c = login(srv, "dora")
        assert c.ok("GETQUOTAROOT INBOX")[1] == b'* QUOTA "" (MESSAGE 1 2)'
        assert b"OK" in append(c)[1]
        assert b"NO [OVERQUOTA]" in append(c)[1]
        late = imapd_cli("deliver", "dora", "--data-dir", str(srv.data_dir), "-o", "quota.messages=2",
                         stdin=MESSAGE, check=False)
        assert late.returncode == 75
        c.close()
    finally:
        stop_server(srv)


# -- METADATA ------------------------------------------------------------------------------------------------
def test_rfc5464_set_get_and_remove(server: RunningServer) -> None:
    c = login(server, "carol")
    value = b"My new comment across\r\ntwo lines."
    c.ok(b"SETMETADATA INBOX (/private/comment {%d+}\r\n" % len(value) + value + b")")
    assert c.ok('GETMETADATA "INBOX" /private/comment') == [
        b'* METADATA "INBOX" (/private/comment {33}\r\n' + value + b")"]
    c.ok("SETMETADATA INBOX (/private/comment NIL)")
    assert c.ok('GETMETADATA "INBOX" /private/comment') == []
    c.ok('SETMETADATA INBOX (/shared/comment "Shared comment" /private/comment "My comment")')
    assert c.ok('GETMETADATA "INBOX" (/shared/comment /private/comment)') == [
        b'* METADATA "INBOX" (/private/comment "My comment" /shared/comment "Shared comment")']
    # Names are case-insensitive; /private and /shared are separate entries.
    assert c.ok('GETMETADATA "INBOX" /SHARED/Comment') == [b'* METADATA "INBOX" (/shared/comment "Shared comment")']
    # MAXSIZE leaves out bigger values and says how big the biggest was.
    untagged, tagged = c.command('GETMETADATA (MAXSIZE 10) "INBOX" (/shared/comment /private/comment)')
    assert untagged == [b'* METADATA "INBOX" (/private/comment "My comment")']
    assert b"OK [METADATA LONGENTRIES 14]" in tagged
    c.close()


def test_rfc5464_depth_and_server_entries(server: RunningServer) -> None:
    c = login(server, "carol")
    c.ok('SETMETADATA INBOX (/private/filters/values/small "SMALLER 5000" '
         '/private/filters/values/boss "FROM \\"boss@example.com\\"" /private/filters/values/boss/x "deep")')
    assert c.ok('GETMETADATA "INBOX" (DEPTH 1) (/private/filters/values)') == [
        b'* METADATA "INBOX" (/private/filters/values/boss "FROM \\"boss@example.com\\"" '
        b'/private/filters/values/small "SMALLER 5000")']
    assert c.ok('GETMETADATA (DEPTH infinity) "INBOX" /private/filters')[0].count(b"/private/filters/") == 3
    assert c.ok('GETMETADATA "INBOX" /private/filters/values') == []  # DEPTH 0 and no value of its own
    c.ok('SETMETADATA "" (/shared/comment "Ye Olde Server" /private/vendor/vendor.foo/comment "My comment")')
    assert c.ok('GETMETADATA "" /private/vendor/vendor.foo/comment') == [
        b'* METADATA "" (/private/vendor/vendor.foo/comment "My comment")']
    assert c.ok('GETMETADATA "" /shared/comment') == [b'* METADATA "" (/shared/comment "Ye Olde Server")']
    assert c.ok('GETMETADATA "INBOX" /private/vendor/vendor.foo/comment') == []  # server and INBOX are apart
    c.ok('SETMETADATA "" (/shared/comment NIL /private/vendor/vendor.foo/comment NIL)')
    c.close()


def test_rfc5464_limits_and_errors(server: RunningServer) -> None:
    c = login(server, "carol")
    c.ok("CREATE Limits")
    big = b"z" * 1025
    _, tagged = c.command(b"SETMETADATA Limits (/private/comment {1025+}\r\n" + big + b")")
    assert re.fullmatch(rb"t\d+ NO \[METADATA MAXSIZE 1024\] .*", tagged), tagged
    entries = " ".join(f'/private/e{i} "v"' for i in range(6))
    c.ok(f"SETMETADATA Limits ({entries})")
    _, tagged = c.command('SETMETADATA Limits (/private/one-more "v")')
    assert re.fullmatch(rb"t\d+ NO \[METADATA TOOMANY\] .*", tagged), tagged
    c.ok('SETMETADATA Limits (/private/e0 "replaced")')  # replacing adds no entry
    assert c.ok("GETMETADATA Limits /private/e0") == [b'* METADATA "Limits" (/private/e0 "replaced")']
    _, tagged = c.command('SETMETADATA Limits (/private/e1 NIL /private/e2 "x" /private/e9 {1025+}\r\n'
                          + "z" * 1025 + ")")
    assert b"NO [METADATA MAXSIZE" in tagged
    assert c.ok("GETMETADATA Limits /private/e1") != []  # all or nothing: e1 is still there
    for bad in ('SETMETADATA Limits (/public/x "v")', 'SETMETADATA Limits (/private/a* "v")',
                'SETMETADATA Limits (/private "v")', 'GETMETADATA Limits /private//x'):
        _, tagged = c.command(bad)
        assert b" BAD " in tagged, (bad, tagged)
    _, tagged = c.command("GETMETADATA NoSuchBox /private/comment")
    assert b"NO [NONEXISTENT]" in tagged
    _, tagged = c.command('SETMETADATA NoSuchBox (/private/comment "x")')
    assert b"NO [NONEXISTENT]" in tagged
    c.close()


def test_entries_follow_rename_and_vanish_with_delete(server: RunningServer) -> None:
    c = login(server, "carol")
    c.ok("CREATE Projects")
    c.ok('SETMETADATA Projects (/private/comment "mine" /shared/comment "ours")')
    c.ok("RENAME Projects Archive/Projects")
    assert c.ok("GETMETADATA Archive/Projects (/private/comment /shared/comment)") == [
        b'* METADATA "Archive/Projects" (/private/comment "mine" /shared/comment "ours")']
    c.ok("DELETE Archive/Projects")
    c.ok("CREATE Archive/Projects")
    assert c.ok("GETMETADATA Archive/Projects (/private/comment /shared/comment)") == []
    c.close()
