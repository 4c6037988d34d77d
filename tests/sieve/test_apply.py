"""apply() and deliver() against a real Store in a temporary data directory."""

from __future__ import annotations

from pathlib import Path

from imapd.config import SieveSettings
from imapd.sieve import Envelope, FileInto, Keep, SieveResult
from imapd.sieve.delivery import apply, deliver
from imapd.sieve.scripts import ScriptStore
from imapd.store.store import Store

MSG = b"From: a@b.example\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
ENV = Envelope("a@b.example", "alice@example.org")


def _messages(store: Store, user: str, mailbox: str) -> int:
    return store.user(user).status(mailbox).messages


def test_fileinto_missing_folder_keeps_in_the_default_mailbox(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        us = store.create_user("alice")
        report = apply(SieveResult([FileInto("Nowhere"), FileInto("Café/Été", ("\\Seen",), create=True)]),
                       us, MSG, ENV)
        assert [name for name, _ in report.stored] == ["INBOX", "Café/Été"]
        assert not us.exists("Nowhere")
        assert _messages(store, "alice", "Café/Été") == 1
        names = {info.name for info in us.list_mailboxes()}
        assert "Café/Été" in names and "Café" in names  # the parent too, as CREATE does
        # keep + fileinto INBOX are one delivery
        report = apply(SieveResult([Keep(), FileInto("INBOX")]), us, MSG, ENV)
        assert len(report.stored) == 1
    finally:
        store.close()


def test_deliver_without_active_script_or_disabled(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        us = store.create_user("alice")
        scripts = ScriptStore(us.root)
        scripts.put("main", 'require "fileinto"; fileinto :copy "Copy";')  # :copy not required: a bad script
        scripts.set_active("main")
        report = deliver(store, "alice", ENV, MSG, SieveSettings())
        assert [n for n, _ in report.stored] == ["INBOX"] and report.error  # run-time failure: implicit keep
        scripts.put("main", 'require "fileinto"; fileinto "Work";')
        us.create_mailbox("Work")
        assert [n for n, _ in deliver(store, "alice", ENV, MSG, SieveSettings()).stored] == ["Work"]
        off = SieveSettings(enabled=False)
        assert [n for n, _ in deliver(store, "alice", ENV, MSG, off).stored] == ["INBOX"]
        tiny = SieveSettings(max_script_size=10)
        assert [n for n, _ in deliver(store, "alice", ENV, MSG, tiny).stored] == ["INBOX"]
        scripts.set_active("")
        assert [n for n, _ in deliver(store, "alice", ENV, MSG, SieveSettings(), mailbox="Work").stored] == ["Work"]
    finally:
        store.close()


async def test_deliver_on_lane_in_a_running_server(tmp_path: Path) -> None:
    """The call an LMTP server makes: stored on the user's lane, seen at once by an IMAP client of the same
    process; the vacation reply goes to a real SMTP server from a thread."""
    import asyncio
    import imaplib

    from aiosmtpd.controller import Controller

    from imapd.config import load_settings
    from imapd.server.main import ServerHandle
    from imapd.sieve.delivery import deliver_on_lane
    from imapd.store.users import PasswdFile
    from tests.sieve.test_delivery import Inbox, _free_port

    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    data = tmp_path / "data"
    data.mkdir()
    PasswdFile(str(data / "passwd")).add("alice", "secret1")
    setup = Store(data)
    us = setup.create_user("alice")
    scripts = ScriptStore(us.root)
    scripts.put("main", 'require ["fileinto", "mailbox", "vacation"];\n'
                        'fileinto :create "Lists";\nvacation "away";\n')
    scripts.set_active("main")
    setup.close()
    settings = load_settings(None, [f'server.data_dir="{data}"', 'server.listen=["127.0.0.1:0"]',
                                    "server.workers=1", f'sieve.smtp_relay="127.0.0.1:{port}"'])
    handle = ServerHandle(settings)
    await handle.start()
    try:
        host, imap_port = handle.addresses[0]
        report = await deliver_on_lane(handle.ctx, "alice", ENV, MSG)
        assert [n for n, _ in report.stored] == ["Lists"] and report.sent == 1

        def select_lists() -> list[bytes | None]:
            with imaplib.IMAP4(host, imap_port) as imap:
                imap.login("alice", "secret1")
                return imap.select("Lists")[1]

        assert await asyncio.to_thread(select_lists) == [b"1"]
        assert [m[1] for m in inbox.mails] == [["a@b.example"]]
        # the memo was recorded from that thread: no second reply
        again = await deliver_on_lane(handle.ctx, "alice", ENV, MSG)
        assert again.sent == 0 and len(inbox.mails) == 1
    finally:
        await handle.stop()
        controller.stop()
