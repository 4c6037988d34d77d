"""QUOTA and METADATA with real clients: imapclient's and imaplib's quota calls, METADATA through
imaplib's generic command path (neither library has METADATA helpers)."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from tests.conftest import RunningServer, imapd_cli

MESSAGE = b"From: a@example.org\r\nTo: alice@example.org\r\nSubject: quota\r\n\r\n" + b"q" * 1500 + b"\r\n"


@pytest.fixture
def limited(server: RunningServer) -> Iterator[RunningServer]:
    """alice (whose mailboxes start empty) with 2 messages and 64 KiB; the limits go again afterwards."""
    imapd_cli("user", "quota", "alice", "--messages", "2", "--storage", "64", "--data-dir", str(server.data_dir))
    try:
        yield server
    finally:
        imapd_cli("user", "quota", "alice", "--messages", "default", "--storage", "default",
                  "--data-dir", str(server.data_dir))


def test_imapclient_quota_root_usage_and_overquota(limited: RunningServer) -> None:
    with IMAPClient(limited.host, port=limited.port, ssl=False) as client:
        client.login("alice", "secret1")
        assert client.has_capability("QUOTA") and client.has_capability("QUOTA=RES-MESSAGE")
        client.create_folder("QuotaTest")
        roots, quotas = client.get_quota_root("INBOX")
        assert roots.mailbox == "INBOX" and roots.quota_roots == [""]
        assert {(q.quota_root, q.resource, q.usage, q.limit) for q in quotas} == {
            ("", "STORAGE", 0, 64), ("", "MESSAGE", 0, 2)}
        client.append("INBOX", MESSAGE)
        client.append("INBOX", MESSAGE)
        with pytest.raises(IMAPClientError, match="OVERQUOTA"):
            client.append("INBOX", MESSAGE)
        usage = {q.resource: q.usage for q in client.get_quota("INBOX")}
        assert usage == {"STORAGE": (2 * len(MESSAGE) + 1023) // 1024, "MESSAGE": 2}
        client.select_folder("INBOX")
        uids = client.search("ALL")
        with pytest.raises(IMAPClientError, match="OVERQUOTA"):
            client.copy(uids, "QuotaTest")
        client.move(uids[:1], "QuotaTest")  # inside the one quota root: allowed at the limit
        assert {q.resource: q.usage for q in client.get_quota("INBOX")}["MESSAGE"] == 2
        client.delete_messages(client.search("ALL"))
        client.expunge()
        client.delete_folder("QuotaTest")
        assert {q.resource: q.usage for q in client.get_quota("INBOX")}["MESSAGE"] == 0


def test_imaplib_getquota_getquotaroot_setquota(limited: RunningServer) -> None:
    imap = imaplib.IMAP4(limited.host, limited.port)
    imap.login("alice", "secret1")
    typ, data = imap.getquotaroot("INBOX")
    assert typ == "OK"
    roots, quota = data
    assert roots == [b'"INBOX" ""']
    assert quota[0].startswith(b'"" (STORAGE ') and b" 64 MESSAGE " in quota[0] and quota[0].endswith(b" 2)")
    typ, data = imap.getquota('""')
    assert typ == "OK" and data == quota
    typ, data = imap.setquota('""', "(STORAGE 512)")
    assert typ == "NO" and b"[NOPERM]" in data[0]
    typ, data = imap.getquota('""')
    assert data == quota  # unchanged
    imap.logout()


def _meta(imap: imaplib.IMAP4, *args: str) -> tuple[str, list[bytes], list[bytes | None]]:
    """(status, tagged text, untagged METADATA data) of one command through imaplib's generic path."""
    typ, tagged = imap._simple_command(*args)
    _, untagged = imap._untagged_response(typ, [None], "METADATA")
    return typ, tagged, untagged


def test_imaplib_metadata_server_and_mailbox_entries(server: RunningServer) -> None:
    imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
    imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
    imap = imaplib.IMAP4(server.host, server.port)
    imap.login("bob", "secret2")
    assert "METADATA" in imap.capabilities and "METADATA-SERVER" in imap.capabilities
    typ, _, _ = _meta(imap, "SETMETADATA", '""', '(/private/vendor/vendor.webmail/theme "dark")')
    assert typ == "OK"
    typ, _, _ = _meta(imap, "SETMETADATA", "INBOX", '(/shared/comment "Bob\'s inbox" /private/comment "mine")')
    assert typ == "OK"
    typ, _, data = _meta(imap, "GETMETADATA", '""', "/private/vendor/vendor.webmail/theme")
    assert typ == "OK" and data == [b'"" (/private/vendor/vendor.webmail/theme "dark")']
    typ, _, data = _meta(imap, "GETMETADATA", "(DEPTH infinity)", "INBOX", '"/shared"')
    assert data == [b'"INBOX" (/shared/comment "Bob\'s inbox")']
    typ, tagged, data = _meta(imap, "GETMETADATA", "INBOX", "(MAXSIZE 3)", "(/shared/comment /private/comment)")
    # Both values are longer than 3 octets: no METADATA response, only the code (which imaplib files
    # under the same name) with the size of the longest one left out.
    assert typ == "OK" and data == [b"LONGENTRIES 11"]
    assert tagged[0].startswith(b"[METADATA LONGENTRIES 11]")
    typ, _, _ = _meta(imap, "SETMETADATA", "INBOX", "(/shared/comment NIL)")
    typ, _, data = _meta(imap, "GETMETADATA", "INBOX", "(/shared/comment /private/comment)")
    assert typ == "OK" and data == [b'"INBOX" (/private/comment "mine")']
    imap.logout()
