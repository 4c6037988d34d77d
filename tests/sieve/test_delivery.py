"""``imapd deliver`` through the user's active Sieve script, end to end: a real server and imaplib see
where the message went, and a real SMTP server (aiosmtpd) receives redirects and vacation replies."""

from __future__ import annotations

import imaplib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from imapd.sieve.scripts import ScriptStore
from tests.conftest import RunningServer, imapd_cli


@dataclass
class Inbox:
    """What the SMTP relay received: (MAIL FROM, RCPT TOs, data)."""

    mails: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content or b"")))
        return "250 OK"

    def wait(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.mails) < count and time.monotonic() < deadline:
            time.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def relay() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def activate(server: RunningServer, user: str, script: str) -> None:
    scripts = ScriptStore(str(server.data_dir / "mail" / user))
    scripts.put("test", script)
    scripts.set_active("test")


def deliver(server: RunningServer, user: str, message: bytes, *extra: str, check: bool = True) -> int:
    proc = imapd_cli("deliver", user, "--data-dir", str(server.data_dir), *extra, stdin=message, check=check)
    return proc.returncode


def count(server: RunningServer, user: str, mailbox: str) -> int:
    with imaplib.IMAP4(server.host, server.port) as imap:
        imap.login(user, server.users[user])
        typ, data = imap.status(mailbox, "(MESSAGES)")
        assert typ == "OK", data
        raw = data[0]
        assert isinstance(raw, bytes)
        return int(raw.rsplit(b"MESSAGES ", 1)[1].rstrip(b")"))


MESSAGE = (b"From: Coyote <coyote@desert.example.org>\nTo: alice@example.org\nSubject: daily report\n"
           b"Message-ID: <r1@desert.example.org>\n\nnumbers\n")


def test_fileinto_create_then_deliver_puts_it_in_that_folder(server: RunningServer) -> None:
    activate(server, "alice", 'require ["fileinto", "mailbox", "imap4flags"];\n'
                              'if header :contains "Subject" "report" { fileinto :create :flags "\\\\Flagged" "Reports"; }')
    before = count(server, "alice", "INBOX")
    deliver(server, "alice", MESSAGE)
    assert count(server, "alice", "Reports") == 1
    assert count(server, "alice", "INBOX") == before
    with imaplib.IMAP4(server.host, server.port) as imap:
        imap.login("alice", server.users["alice"])
        imap.select("Reports")
        typ, data = imap.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        assert b"\\Flagged" in data[0][0] and b"daily report" in data[0][1]  # type: ignore[index]
    # a message the script does not file is kept
    deliver(server, "alice", MESSAGE.replace(b"daily report", b"lunch"))
    assert count(server, "alice", "INBOX") == before + 1
    # --no-sieve ignores the script
    deliver(server, "alice", MESSAGE, "--no-sieve")
    assert count(server, "alice", "Reports") == 1


def test_reject_exits_77_with_the_reason(server: RunningServer) -> None:
    activate(server, "bob", 'require "reject"; reject "No reports, please";')
    proc = imapd_cli("deliver", "bob", "--data-dir", str(server.data_dir), stdin=MESSAGE, check=False)
    assert proc.returncode == 77
    assert b"No reports, please" in proc.stderr
    assert count(server, "bob", "INBOX") == 0


def test_vacation_reply_reaches_the_relay_once(server: RunningServer, relay: tuple[Inbox, int]) -> None:
    inbox, port = relay
    activate(server, "alice", 'require "vacation";\nvacation :days 3 :subject "Away" "Back on Monday.";')
    opts = ("-o", f"sieve.smtp_relay=127.0.0.1:{port}", "--sender", "coyote@desert.example.org",
            "--recipient", "alice@example.org")
    before = count(server, "alice", "INBOX")
    deliver(server, "alice", MESSAGE, *opts)
    inbox.wait(1)
    assert len(inbox.mails) == 1
    mail_from, rcpts, data = inbox.mails[0]
    assert mail_from == "<>" and rcpts == ["coyote@desert.example.org"]  # the null return path
    assert b"Subject: Away" in data and b"Back on Monday." in data and b"Auto-Submitted: auto-replied" in data
    assert b"In-Reply-To: <r1@desert.example.org>" in data
    assert count(server, "alice", "INBOX") == before + 1  # vacation keeps the message too
    # the same sender again: no second reply (the state is on disk, per user)
    deliver(server, "alice", MESSAGE, *opts)
    # a mailing list: never
    deliver(server, "alice", b"List-Id: <list.example.org>\n" + MESSAGE,
            *opts[:2], "--sender", "wile@desert.example.org", "--recipient", "alice@example.org")
    # another sender: answered
    deliver(server, "alice", MESSAGE, *opts[:2], "--sender", "road@desert.example.org",
            "--recipient", "alice@example.org")
    inbox.wait(2)
    time.sleep(0.2)
    assert [m[1] for m in inbox.mails] == [["coyote@desert.example.org"], ["road@desert.example.org"]]
    assert count(server, "alice", "INBOX") == before + 4


def test_redirect_goes_out_with_the_original_return_path(server: RunningServer, relay: tuple[Inbox, int]) -> None:
    inbox, port = relay
    activate(server, "bob", 'redirect "carol@elsewhere.example";')
    before = count(server, "bob", "INBOX")
    deliver(server, "bob", MESSAGE, "-o", f"sieve.smtp_relay=127.0.0.1:{port}", "--sender", "coyote@desert.example.org")
    inbox.wait(1)
    assert [(m[0], m[1]) for m in inbox.mails] == [("coyote@desert.example.org", ["carol@elsewhere.example"])]
    assert b"Subject: daily report" in inbox.mails[0][2]
    assert inbox.mails[0][2].startswith(b"X-Sieve-Redirected-To: carol@elsewhere.example\r\n")  # loop control
    assert count(server, "bob", "INBOX") == before
    # no relay reachable: the message is kept rather than lost
    deliver(server, "bob", MESSAGE, "-o", f"sieve.smtp_relay=127.0.0.1:{_free_port()}")
    assert count(server, "bob", "INBOX") == before + 1
