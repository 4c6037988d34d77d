"""A real Postfix in front of our LMTP listener: mail submitted by SMTP ends up in the Maildir over LMTP.

Postfix runs as a private instance (its own config_directory, queue_directory and data_directory in a
temporary directory, ``postfix -c DIR start``), listening only on a loopback port, with
``virtual_transport = lmtp:inet:127.0.0.1:<our port>`` as in docs/operations.md. Anything not for
example.org goes to the ``error`` transport, so the instance never looks anything up or sends mail out.
Debian's ``postfix`` package is installed by scripts/install-sysdeps.sh (as root; Postfix's master
must start as root and drop to the ``postfix`` user).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server

POSTFIX = shutil.which("postfix") or ("/usr/sbin/postfix" if os.path.exists("/usr/sbin/postfix") else None)
pytestmark = [
    pytest.mark.skipif(POSTFIX is None, reason="Postfix is not installed (scripts/install-sysdeps.sh installs it)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="Postfix's master daemon starts as root"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_postfix(lmtp_port: int) -> Iterator[tuple[int, Path]]:
    """A Postfix of its own; yields (SMTP port, its mail log)."""
    assert POSTFIX is not None
    # Not under pytest's tmp_path: Postfix's daemons run as "postfix" and must reach the queue directory.
    base = Path(tempfile.mkdtemp(prefix="imapd-postfix-", dir="/tmp"))
    base.chmod(0o755)
    etc, queue, data = base / "etc", base / "queue", base / "data"
    for d in (etc, queue, data):
        d.mkdir()
    postfix_user = pwd.getpwnam("postfix")
    os.chown(data, postfix_user.pw_uid, postfix_user.pw_gid)
    smtp_port = _free_port()
    maillog = base / "maillog"
    shutil.copy("/etc/postfix/master.cf", etc / "master.cf")
    (etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {maillog}
maillog_file_prefixes = {base}
myhostname = mx.example.org
mydomain = example.org
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
relayhost =
default_transport = error:this test sends no mail out
relay_transport = error:this test sends no mail out
virtual_mailbox_domains = example.org
virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}
biff = no
""")
    postconf = ["postconf", "-c", str(etc)]
    # The smtpd entry of Debian's master.cf, moved to our loopback port; no daemon chroots.
    subprocess.run([*postconf, "-M", f"smtp/inet=127.0.0.1:{smtp_port} inet n - n - - smtpd"], check=True)
    subprocess.run([*postconf, "-F", "*/*/chroot = n"], check=True)
    started = subprocess.run([POSTFIX, "-c", str(etc), "start"], capture_output=True, text=True, timeout=60)
    try:
        if started.returncode != 0:
            log = maillog.read_text() if maillog.exists() else ""
            raise AssertionError(f"postfix start failed ({started.returncode}): {started.stderr}\n{log}")
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", smtp_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"Postfix did not listen:\n{maillog.read_text()}") from None
                time.sleep(0.1)
        yield smtp_port, maillog
    finally:
        subprocess.run([POSTFIX, "-c", str(etc), "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    data = tmp_path / "data"
    users = {"alice": "secret1", "bob": "secret2"}
    for user, password in users.items():
        imapd_cli("user", "add", user, "--password-stdin", "--data-dir", str(data), stdin=password)
    srv = start_server(data, "-o", "lmtp.listen=127.0.0.1:0", "-o", 'lmtp.domains=["example.org"]')
    srv.users.update(users)
    try:
        yield srv
    finally:
        stop_server(srv)


def _wait_for(srv: RunningServer, user: str, mailbox: str, subject: bytes, maillog: Path) -> bytes:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conn = imaplib.IMAP4(srv.host, srv.port)
        try:
            conn.login(user, srv.users[user])
            conn.select(mailbox, readonly=True)
            _, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[])")
        finally:
            conn.logout()
        for item in data:
            if isinstance(item, tuple) and subject in item[1]:
                return item[1]
        time.sleep(0.2)
    raise AssertionError(f"no {subject!r} for {user}/{mailbox}:\n{maillog.read_text()}\n{srv.log()}")


def test_postfix_delivers_over_lmtp(server: RunningServer) -> None:
    lmtp_port = int((server.data_dir / "run" / "lmtp").read_text().strip().rpartition(":")[2])
    with private_postfix(lmtp_port) as (smtp_port, maillog):
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
            refused = smtp.sendmail("sender@example.org",
                                    ["alice@example.org", "bob+Sent@example.org", "nobody@example.org"],
                                    b"Subject: through Postfix\r\nFrom: sender@example.org\r\n\r\nHello.\r\n")
        assert refused == {}  # Postfix queues first; the LMTP server decides per recipient
        alice = _wait_for(server, "alice", "INBOX", b"Subject: through Postfix", maillog)
        bob = _wait_for(server, "bob", "Sent", b"Subject: through Postfix", maillog)
        assert alice.startswith(b"Return-Path: <sender@example.org>\r\nDelivered-To: alice@example.org\r\n")
        assert b"by mx.example.org" in alice  # Postfix's own Received: line is below ours
        assert b"Delivered-To: bob+Sent@example.org\r\n" in bob
        deadline = time.monotonic() + 30
        while b"550 5.1.1 <nobody@example.org>" not in maillog.read_bytes():
            assert time.monotonic() < deadline, maillog.read_text()
            time.sleep(0.2)
        log = maillog.read_text()
        assert "to=<alice@example.org>, relay=127.0.0.1[127.0.0.1]" in log and "status=sent (250 2.0.0" in log
