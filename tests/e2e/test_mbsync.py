"""End-to-end with isync's mbsync: a two-way sync between the server and a local Maildir."""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import subprocess
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from tests.conftest import RunningServer

USER, PASSWORD = "mbuser", "mbsync-pass"


def ensure_mbsync() -> str:
    path = shutil.which("mbsync")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "isync"], capture_output=True, timeout=300,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        path = shutil.which("mbsync")
    if path is None:
        pytest.skip("mbsync (isync) is not installed; run scripts/install-sysdeps.sh as root")
    return path


def mbsync_version(mbsync: str) -> tuple[int, ...]:
    out = subprocess.run([mbsync, "--version"], capture_output=True, text=True, timeout=10).stdout
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    assert m, out
    return tuple(int(x or 0) for x in m.groups())


def make_message(subject: str, body: str = "Hello there.\n") -> bytes:
    msg = EmailMessage()
    msg["From"] = "carol@example.org"
    msg["To"] = "mbuser@example.org"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<{abs(hash(subject))}.mbsync@example.org>"
    msg.set_content(body)
    return msg.as_bytes(policy=SMTP)


def write_config(tmp: Path, server: RunningServer, version: tuple[int, ...]) -> Path:
    tls = "TLSType None" if version >= (1, 5) else "SSLType None"
    far, near = ("Far", "Near") if version >= (1, 4) else ("Master", "Slave")
    local = tmp / "mail"
    local.mkdir()
    rc = tmp / "mbsyncrc"
    rc.write_text(f"""\
IMAPAccount test
Host {server.host}
Port {server.port}
User {USER}
Pass {PASSWORD}
{tls}
AuthMechs LOGIN
Timeout 15

IMAPStore remote
Account test

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel test
{far} :remote:
{near} :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")
    return rc


def run_mbsync(mbsync: str, rc: Path, server: RunningServer) -> str:
    try:
        proc = subprocess.run([mbsync, "-c", str(rc), "-a"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mbsync timed out\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}\nserver log:\n{server.log()}")
    output = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, f"mbsync failed: {output}\nserver log:\n{server.log()[-4000:]}"
    return output


def local_messages(folder: Path) -> dict[str, Path]:
    """Subject -> file, for the messages of a local Maildir folder."""
    out: dict[str, Path] = {}
    for sub in ("cur", "new"):
        for f in (folder / sub).iterdir():
            m = re.search(rb"^Subject: (.*?)\r?$", f.read_bytes(), re.M)
            assert m, f
            out[m.group(1).decode()] = f
    return out


def server_view(imap: imaplib.IMAP4, mailbox: str) -> dict[str, bytes]:
    """Subject -> FLAGS, for the messages in a mailbox on the server."""
    typ, _ = imap.select(mailbox)
    assert typ == "OK", mailbox
    typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    if data == [None]:
        return {}
    out = {}
    for item in data:
        if isinstance(item, tuple):
            subject = re.search(rb"Subject: (.*?)\r\n", item[1]).group(1).decode()  # type: ignore[union-attr]
            out[subject] = re.search(rb"FLAGS \((.*?)\)", item[0]).group(1)  # type: ignore[union-attr]
    return out


def test_mbsync_two_way(server: RunningServer, tmp_path: Path) -> None:
    mbsync = ensure_mbsync()
    version = mbsync_version(mbsync)
    server.add_user(USER, PASSWORD)
    imap = imaplib.IMAP4(server.host, server.port, timeout=15)
    imap.login(USER, PASSWORD)
    try:
        imap.create("Projects")
        imap.create("Projects/Alpha")
        imap.append("INBOX", None, None, make_message("inbox one"))
        imap.append("INBOX", "(\\Seen)", None, make_message("inbox two"))
        imap.append("Projects", None, None, make_message("project one"))
        imap.append("Projects", None, None, make_message("project two"))
        imap.append("Projects/Alpha", "(\\Flagged)", None, make_message("alpha one"))

        rc = write_config(tmp_path, server, version)
        run_mbsync(mbsync, rc, server)
        local = tmp_path / "mail"
        inbox = local_messages(local / "INBOX")
        projects = local_messages(local / "Projects")
        alpha = local_messages(local / "Projects" / "Alpha")
        assert set(inbox) == {"inbox one", "inbox two"}
        assert set(projects) == {"project one", "project two"}
        assert set(alpha) == {"alpha one"}
        for name in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
            assert (local / name / "cur").is_dir(), name
        # flags came down: Maildir info ":2,<flags>"
        assert inbox["inbox two"].name.endswith(("S", ",S")) and ":2," in inbox["inbox two"].name
        assert "F" in alpha["alpha one"].name.split(":2,")[1]
        # the body came down intact (mbsync adds its own X-TUID header while it syncs)
        body = re.sub(rb"(?m)^X-TUID: .*\n", b"", inbox["inbox one"].read_bytes().replace(b"\r\n", b"\n"))
        assert body == make_message("inbox one").replace(b"\r\n", b"\n")

        # local changes: a new message, a flag, a deletion
        new_file = local / "INBOX" / "new" / f"{int(time.time())}.{os.getpid()}_1.testhost"
        new_file.write_bytes(make_message("written locally"))
        p1 = projects["project one"]
        flagged = p1.with_name(p1.name.split(":2,")[0] + ":2,F" + p1.name.split(":2,")[1])
        p1.rename(flagged)
        inbox["inbox one"].unlink()
        (local / "NewLocal" / "cur").mkdir(parents=True)
        (local / "NewLocal" / "new").mkdir()
        (local / "NewLocal" / "tmp").mkdir()
        (local / "NewLocal" / "new" / f"{int(time.time())}.{os.getpid()}_2.testhost").write_bytes(
            make_message("in a new local folder"))
        # and a server-side change made meanwhile
        imap.select("Projects")
        imap.store("2", "+FLAGS", "(\\Answered)")
        imap.append("INBOX", None, None, make_message("server side new"))

        run_mbsync(mbsync, rc, server)

        on_server = server_view(imap, "INBOX")
        assert set(on_server) == {"inbox two", "written locally", "server side new"}, on_server
        on_server = server_view(imap, "Projects")
        assert set(on_server) == {"project one", "project two"}
        assert b"\\Flagged" in on_server["project one"]
        on_server = server_view(imap, "NewLocal")
        assert set(on_server) == {"in a new local folder"}
        inbox = local_messages(local / "INBOX")
        assert set(inbox) == {"inbox two", "written locally", "server side new"}
        projects = local_messages(local / "Projects")
        assert "R" in projects["project two"].name.split(":2,")[1]  # \Answered came down

        # a third run changes nothing
        run_mbsync(mbsync, rc, server)
        assert set(server_view(imap, "INBOX")) == {"inbox two", "written locally", "server side new"}
        assert set(local_messages(local / "INBOX")) == {"inbox two", "written locally", "server side new"}
    finally:
        imap.logout()
