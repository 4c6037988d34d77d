"""``imapd demo`` / ``make demo``: seed demo users and mail into a data dir, then serve them.

Seeding is idempotent: users that already exist keep their mail, so restarting the demo keeps
whatever was changed through a client.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from imapd.config import load_settings
from imapd.demo_mail import DEMO_USERS, demo_messages

log = logging.getLogger("imapd.demo")

__all__ = ["run_demo", "seed_demo"]


def seed_demo(data_dir: str | os.PathLike[str]) -> list[str]:
    """Create the demo users with their mail; return the users created now."""
    from imapd.store.mailbox import AppendItem
    from imapd.store.store import Store
    from imapd.store.users import PasswdFile

    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True)
    passwd = PasswdFile(data / "passwd")
    store = Store(data)
    created: list[str] = []
    try:
        for user, password in DEMO_USERS:
            if passwd.get(user) is not None:
                continue
            passwd.add(user, password)
            ustore = store.create_user(user)
            by_folder: dict[str, list[AppendItem]] = {}
            for msg in demo_messages(user):
                by_folder.setdefault(msg.folder, []).append(
                    AppendItem(msg.raw, msg.flags, msg.internaldate.timestamp())
                )
            for folder, items in by_folder.items():
                if not ustore.exists(folder):
                    ustore.create_mailbox(folder)
                mailbox = ustore.open(folder)
                try:
                    mailbox.append_many(items)
                finally:
                    mailbox.release()
            log.info("seeded demo user %s with %d messages", user, sum(len(v) for v in by_folder.values()))
            created.append(user)
    finally:
        store.close()
    return created


def ensure_self_signed(data_dir: Path) -> tuple[str, str] | None:
    """A self-signed certificate for localhost, made once with openssl (None when openssl is missing)."""
    cert = data_dir / "tls" / "localhost.crt"
    key = data_dir / "tls" / "localhost.key"
    if cert.exists() and key.exists():
        return str(cert), str(key)
    if shutil.which("openssl") is None:
        log.warning("openssl not found: the demo runs without TLS")
        return None
    cert.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    os.chmod(key, 0o600)
    return str(cert), str(key)


def run_demo(data_dir: str, listen: str, tls_listen: str, web_listen: str, *, serve: bool = True) -> int:
    from imapd.server.main import run_server

    data = Path(data_dir)
    created = seed_demo(data)
    tls = ensure_self_signed(data)
    overrides = [f'server.data_dir="{data}"', f'server.listen=["{listen}"]']
    if tls is not None:
        overrides += [f'tls.cert="{tls[0]}"', f'tls.key="{tls[1]}"', f'server.tls_listen=["{tls_listen}"]']
    settings = load_settings(None, overrides)
    users = ", ".join(f"{u} / {p}" for u, p in DEMO_USERS)
    print(f"imapd demo: data in {data} ({'seeded ' + ', '.join(created) if created else 'already seeded'})")
    print(f"  IMAP      {listen} (STARTTLS)" + (f" and {tls_listen} (implicit TLS)" if tls else ""))
    print(f"  webmail   http://{web_listen}/ (reattaches with X-STATE on every request)")
    print(f"  users     {users}")
    if not serve:
        return 0
    # The webmail is an IMAP client of the server, so it runs as its own process next to it.
    webmail = subprocess.Popen(
        [sys.executable, "-m", "webmail_demo", "--imap", listen, "--listen", web_listen, "--reattach", "xstate"]
    )
    try:
        return run_server(settings)
    finally:
        webmail.terminate()
        try:
            webmail.wait(timeout=5)
        except subprocess.TimeoutExpired:
            webmail.kill()
