"""Outcomes -> LMTP replies, and store errors -> outcomes: the mapping the quota work hooks into."""

from __future__ import annotations

import errno

import pytest

from imapd.delivery.agent import Outcome, failure_outcome
from imapd.server.lmtp import reply_for, with_enhanced_code
from imapd.store.errors import NoSuchUser, OverQuota, StorageIOError, StoreError


@pytest.mark.parametrize(("error", "reply"), [
    (OverQuota("MESSAGE", 10, 10, "over quota"), "552 5.2.2 <a@b.test> Quota exceeded (mailbox for user is full)"),
    (StorageIOError("a", "INBOX", "append", OSError(errno.ENOSPC, "No space left on device")),
     "452 4.3.1 <a@b.test> Insufficient system storage"),
    (StorageIOError("a", "INBOX", "append", OSError(errno.EIO, "I/O error")),
     "451 4.3.0 <a@b.test> Temporary internal error"),
    (NoSuchUser("gone"), "550 5.1.1 <a@b.test> User doesn't exist"),
])
def test_store_errors(error: StoreError, reply: str) -> None:
    assert reply_for(failure_outcome(error), "a@b.test") == reply


def test_quota_tempfail() -> None:
    outcome = failure_outcome(OverQuota("STORAGE", 1024, 1000, "over quota"))
    assert reply_for(outcome, "a@b.test", quota_tempfail=True).startswith("452 4.2.2 <a@b.test> ")


def test_other_outcomes() -> None:
    stored = Outcome(kind="stored", stored=(("INBOX", 7), ("Lists", 3)))
    assert reply_for(stored, "a@b.test") == "250 2.0.0 <a@b.test> Saved (INBOX UID 7, Lists UID 3)"
    assert reply_for(Outcome(kind="discarded"), "x").startswith("250 2.0.0 <x> ")
    assert reply_for(Outcome(kind="rejected", reason="no\r\nthanks"), "x") == "550 5.7.1 <x> no thanks"


@pytest.mark.parametrize(("plain", "enhanced"), [
    ("250 OK", "250 2.0.0 OK"),
    ("501 Syntax: MAIL FROM: <address>", "501 5.5.4 Syntax: MAIL FROM: <address>"),
    ('500 Error: command "X" not recognized', '500 5.5.2 Error: command "X" not recognized'),
    ("552 Error: message size exceeds fixed maximum message size",
     "552 5.3.4 Error: message size exceeds fixed maximum message size"),
    ("553 5.1.3 Error: malformed address", "553 5.1.3 Error: malformed address"),
    ("220 host imapd LMTP ready", "220 host imapd LMTP ready"),
    ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
    ("250 2.0.0 <a> Saved\r\n451 4.3.0 <b> Temporary", "250 2.0.0 <a> Saved\r\n451 4.3.0 <b> Temporary"),
])
def test_enhanced_codes(plain: str, enhanced: str) -> None:
    assert with_enhanced_code(plain) == enhanced


@pytest.mark.parametrize("arg", [
    "<alice@example.org>", " <alice@example.org> SIZE=100 BODY=8BITMIME", "<a.b+c@sub.example.org>",
    "<o'hara@example.org> NOTIFY=NEVER", "<>", "<> SIZE=1", '<"quoted local"@example.org>', "alice@example.org",
    "<alice@[127.0.0.1]>", "<alice@example.org", "<@relay.test:alice@example.org>", "<al ice@example.org>",
    "<alice@exa_mple.org>", "<Ünïcode@example.org> SMTPUTF8", "<a..b@example.org>", "",
])
def test_address_fast_path_agrees_with_aiosmtpd(arg: str) -> None:
    """MAIL/RCPT addresses: the plain-address shortcut gives what aiosmtpd's RFC 5322 parser gives."""
    from aiosmtpd.smtp import SMTP

    from imapd.server.lmtp import LMTPConnection

    conn = object.__new__(LMTPConnection)
    conn.local_part_limit = 0
    ours, theirs = conn._getaddr(arg), SMTP._getaddr(conn, arg)
    assert ours[0] == theirs[0]
    assert (ours[1] or "").split() == (theirs[1] or "").split()
