"""Fixtures for the webmail tests: a real imapd process, mailboxes filled over IMAP and `imapd deliver`."""

from __future__ import annotations

import imaplib
import itertools
import re
import signal
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server

REMOTE_IMG = "https://tracker.example.net/pixel.png"
_counter = itertools.count(1)


def text_mail(subject: str, sender: str = "Ann Smith <ann@example.org>", body: str = "Hello.\n",
              date: str = "Mon, 02 Nov 2026 10:00:00 +0000", msgid: str | None = None,
              refs: str | None = None) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = "user@example.org"
    m["Subject"] = subject
    m["Date"] = date
    m["Message-ID"] = msgid or f"<m{next(_counter)}@example.org>"
    if refs:
        m["In-Reply-To"] = refs.split()[-1]
        m["References"] = refs
    m.set_content(body)
    return m.as_bytes(policy=SMTP)


def html_mail(subject: str = "Newsletter", date: str = "Tue, 03 Nov 2026 09:00:00 +0000") -> bytes:
    m = EmailMessage()
    m["From"] = "News <news@example.com>"
    m["To"] = "user@example.org"
    m["Subject"] = subject
    m["Date"] = date
    m.set_content("plain version\n")
    m.add_alternative(
        "<html><body><h2 onclick=\"steal()\">Big news</h2><script>alert('pwned')</script>"
        f"<p style=\"background:url({REMOTE_IMG})\">Read <a href=\"https://example.com/x\">more</a></p>"
        f"<img src=\"{REMOTE_IMG}\" alt=\"tracker\"><iframe src=\"https://evil.example/\"></iframe>"
        "<a href=\"javascript:alert(1)\">click</a></body></html>",
        subtype="html",
    )
    return m.as_bytes(policy=SMTP)


ATTACHMENT = bytes(range(256)) * 8


def attachment_mail() -> bytes:
    m = EmailMessage()
    m["From"] = "Bob <bob@example.org>"
    m["To"] = "user@example.org"
    m["Subject"] = "Quarterly report"
    m["Date"] = "Wed, 04 Nov 2026 11:00:00 +0000"
    m.set_content("See the attached file.\n")
    m.add_attachment(ATTACHMENT, maintype="application", subtype="octet-stream", filename="report Q3.bin")
    return m.as_bytes(policy=SMTP)


def thread_mails() -> list[bytes]:
    root = "<root-thread@example.org>"
    a = text_mail("Lunch plans", "Carol <carol@example.org>", msgid=root, date="Thu, 05 Nov 2026 08:00:00 +0000")
    b = text_mail("Re: Lunch plans", "Dan <dan@example.org>", msgid="<reply1@example.org>", refs=root,
                  date="Thu, 05 Nov 2026 08:30:00 +0000")
    c = text_mail("Re: Lunch plans", "Carol <carol@example.org>", msgid="<reply2@example.org>",
                  refs=f"{root} <reply1@example.org>", date="Thu, 05 Nov 2026 09:00:00 +0000")
    return [a, b, c]


class Account:
    def __init__(self, server: RunningServer, user: str, password: str) -> None:
        self.server, self.user, self.password = server, user, password

    def imap(self) -> imaplib.IMAP4:
        c = imaplib.IMAP4(self.server.host, self.server.port)
        c.login(self.user, self.password)
        return c

    def _checker(self) -> imaplib.IMAP4:
        """One long-lived connection for the checks (each LOGIN costs a password hash)."""
        if getattr(self, "_conn", None) is None:
            self._conn: imaplib.IMAP4 | None = self.imap()
        assert self._conn is not None
        return self._conn

    def append(self, mailbox: str, *messages: bytes, flags: str = "") -> None:
        c = self._checker()
        for data in messages:
            typ, info = c.append(mailbox, flags or None, None, data)
            assert typ == "OK", info

    def deliver(self, data: bytes, mailbox: str | None = None) -> None:
        args = ["deliver", self.user, "--data-dir", str(self.server.data_dir)]
        if mailbox:
            args += ["--mailbox", mailbox]
        imapd_cli(*args, stdin=data)

    def uids(self, mailbox: str, criteria: str = "ALL") -> list[int]:
        c = self._checker()
        typ, _ = c.select(mailbox)
        if typ != "OK":
            return []
        typ, data = c.uid("SEARCH", criteria)
        return [int(x) for x in data[0].split()] if data and data[0] else []

    def flags(self, mailbox: str, uid: int) -> str:
        c = self._checker()
        c.select(mailbox)
        _, data = c.uid("FETCH", str(uid), "(FLAGS)")
        return str(data[0])

    def folders(self) -> list[str]:
        _, data = self._checker().list()
        return [re.sub(r'^.*"/" "?([^"]*)"?$', r"\1", d.decode()) for d in data if isinstance(d, bytes)]

    def passwd(self, new: str) -> None:
        imapd_cli("user", "passwd", self.user, "--password-stdin", "--data-dir", str(self.server.data_dir),
                  stdin=new)
        self.password = new


@pytest.fixture(scope="module")
def mailserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("webmail") / "data"
    srv = start_server(data_dir, "-o", "store.fsync=false")
    try:
        yield srv
    finally:
        stop_server(srv)
        if srv.proc.returncode not in (0, -signal.SIGTERM):
            print(srv.log())


_users = itertools.count(1)


def new_account(server: RunningServer, *, seed: bool = True) -> Account:
    name = f"user{next(_users)}"
    server.add_user(name, f"pw-{name}")
    acct = Account(server, name, f"pw-{name}")
    if seed:
        c = acct._checker()
        for box, use in (("Trash", "\\Trash"), ("Drafts", "\\Drafts"), ("Archive", "\\Archive")):
            c._simple_command("CREATE", box, f"(USE ({use}))")
        acct.append("INBOX", *[text_mail(f"Plain message {i:02d}", f"Sender {i:02d} <s{i}@example.org>",
                                         body=f"number {i} body\n",
                                         date=f"Sun, 01 Nov 2026 {i % 24:02d}:{i % 60:02d}:00 +0000")
                               for i in range(1, 6)])
        acct.append("INBOX", *thread_mails())
        acct.deliver(html_mail())
        acct.deliver(attachment_mail())
    return acct


@pytest.fixture
def account(mailserver: RunningServer) -> Account:
    return new_account(mailserver)


def seed_many(acct: Account, n: int) -> None:
    acct.append("INBOX", *[text_mail(f"Bulk {i:03d}", f"Bulk Sender <bulk{i}@example.org>",
                                     date=f"Sat, 31 Oct 2026 {i % 24:02d}:{i % 60:02d}:00 +0000")
                           for i in range(n)])


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shared(mailserver: RunningServer) -> Account:
    """One seeded account (10 messages + 52 bulk ones) for the tests that only read or flag."""
    acct = new_account(mailserver)
    seed_many(acct, 52)
    return acct
