"""End-to-end with IMAPClient (a real client library) against a real server process."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP

import imapclient
import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from tests.conftest import RunningServer

DATE = "Mon, 02 Nov 2026 10:00:00 +0000"


def make_message(subject: str, body: str = "Hello there.\n", sender: str = "Carol Example <carol@example.org>",
                 attachment: bytes | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "alice@example.org"
    msg["Subject"] = subject
    msg["Date"] = DATE
    msg["Message-ID"] = f"<{abs(hash(subject))}@example.org>"
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="report.pdf")
    return msg.as_bytes(policy=SMTP)


@pytest.fixture
def client(server: RunningServer) -> Iterator[IMAPClient]:
    c = IMAPClient(server.host, port=server.port, ssl=False, timeout=15)
    c.login("alice", server.users["alice"])
    try:
        yield c
    finally:
        with contextlib.suppress(IMAPClientError, OSError):
            c.logout()


def test_login_capabilities_namespace_id(server: RunningServer) -> None:
    c = IMAPClient(server.host, port=server.port, ssl=False, timeout=15)
    pre = c.capabilities()
    assert b"IMAP4REV1" in pre and b"AUTH=PLAIN" in pre
    with pytest.raises(IMAPClientError):
        c.login("alice", "wrong")
    assert c.login("alice", "secret1")
    caps = c.capabilities()
    for cap in (b"IDLE", b"UIDPLUS", b"MOVE", b"NAMESPACE", b"ID", b"SPECIAL-USE", b"UNSELECT", b"LITERAL+"):
        assert c.has_capability(cap.decode()), (cap, caps)
    ns = c.namespace()
    assert ns.personal and ns.personal[0][1] == "/"
    assert ns.other is None and ns.shared is None
    server_id = c.id_({"name": "pytest-imapclient", "version": imapclient.__version__})
    assert server_id is None or isinstance(server_id, (tuple, list, dict))
    assert c.logout()


def test_list_folders_special_use_and_status(client: IMAPClient) -> None:
    folders = {name: flags for flags, delim, name in client.list_folders()}
    assert "INBOX" in folders
    for name, flag in [("Sent", b"\\Sent"), ("Drafts", b"\\Drafts"), ("Trash", b"\\Trash"),
                       ("Junk", b"\\Junk"), ("Archive", b"\\Archive")]:
        assert flag in folders[name], (name, folders[name])
    delims = {delim for _, delim, _ in client.list_folders()}
    assert delims == {b"/"}
    assert client.find_special_folder(imapclient.imapclient.SENT) == "Sent"
    assert client.find_special_folder(imapclient.imapclient.TRASH) == "Trash"
    st = client.folder_status("INBOX", [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN", b"RECENT"])
    assert set(st) == {b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN", b"RECENT"}
    assert st[b"UIDVALIDITY"] > 0 and st[b"UIDNEXT"] >= 1


def test_create_rename_delete_non_ascii(client: IMAPClient) -> None:
    client.create_folder("Entwürfe/Äpfel")
    client.create_folder("日本語")
    names = [name for _, _, name in client.list_folders()]
    assert "Entwürfe/Äpfel" in names and "日本語" in names
    assert "Entwürfe" in names  # the parent exists too
    # on the wire the names are modified UTF-7
    raw = client._imap.list('""', '"Entw*"')[1]
    assert any(b"Entw&APw-rfe/&AMQ-pfel" in r for r in raw), raw
    assert client.folder_exists("日本語")
    client.rename_folder("日本語", "Zürich ✓")
    names = [name for _, _, name in client.list_folders()]
    assert "Zürich ✓" in names and "日本語" not in names
    client.append("Zürich ✓", make_message("into unicode folder"))
    assert client.folder_status("Zürich ✓", [b"MESSAGES"])[b"MESSAGES"] == 1
    client.select_folder("Zürich ✓")
    client.unselect_folder()
    client.delete_folder("Zürich ✓")
    client.delete_folder("Entwürfe/Äpfel")
    names = [name for _, _, name in client.list_folders()]
    assert "Zürich ✓" not in names and "Entwürfe/Äpfel" not in names
    with pytest.raises(IMAPClientError):
        client.select_folder("Zürich ✓")
    with pytest.raises(IMAPClientError):
        client.create_folder("INBOX")


def test_append_select_fetch_parsed(client: IMAPClient) -> None:
    client.create_folder("ICFetch")
    when = dt.datetime(2024, 3, 5, 14, 30, 15, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    resp = client.append("ICFetch", make_message("plain one"), flags=(b"\\Flagged", b"$Label1"), msg_time=when)
    assert b"APPENDUID" in resp
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 8
    client.append("ICFetch", make_message("with attachment", "See attached.\n", attachment=pdf))
    info = client.select_folder("ICFetch")
    assert info[b"EXISTS"] == 2
    assert b"\\Flagged" in info[b"FLAGS"] and b"\\Seen" in info[b"FLAGS"]
    assert b"UIDVALIDITY" in info and b"UIDNEXT" in info
    uids = client.search("ALL")
    assert len(uids) == 2
    u1, u2 = uids
    data = client.fetch(uids, ["ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE", "INTERNALDATE", "FLAGS", "BODY.PEEK[]"])
    env = data[u1][b"ENVELOPE"]
    assert env.subject == b"plain one"
    assert env.date is not None and env.date.utctimetuple()[:6] == (2026, 11, 2, 10, 0, 0)
    frm = env.from_[0]
    assert (frm.name, frm.mailbox, frm.host) == (b"Carol Example", b"carol", b"example.org")
    assert env.to[0].mailbox == b"alice"
    assert env.message_id.startswith(b"<") and env.message_id.endswith(b"@example.org>")
    assert set(data[u1][b"FLAGS"]) >= {b"\\Flagged", b"$Label1"}
    # INTERNALDATE is the append date (imapclient converts to local naive time by default)
    idate = data[u1][b"INTERNALDATE"]
    as_utc = idate.astimezone(dt.UTC) if idate.tzinfo else idate.astimezone().astimezone(dt.UTC)
    assert as_utc == when.astimezone(dt.UTC)
    assert data[u1][b"RFC822.SIZE"] == len(data[u1][b"BODY[]"])
    assert data[u1][b"BODY[]"].replace(b"\r\n", b"\n") == make_message("plain one").replace(b"\r\n", b"\n")
    assert b"\\Seen" not in data[u1][b"FLAGS"]  # PEEK

    bs1 = data[u1][b"BODYSTRUCTURE"]
    assert not bs1.is_multipart
    assert (bs1[0].lower(), bs1[1].lower()) == (b"text", b"plain")

    bs2 = data[u2][b"BODYSTRUCTURE"]
    assert bs2.is_multipart
    parts, subtype = bs2[0], bs2[1]
    assert subtype.lower() == b"mixed"
    assert len(parts) == 2
    assert (parts[0][0].lower(), parts[0][1].lower()) == (b"text", b"plain")
    att = parts[1]
    assert (att[0].lower(), att[1].lower()) == (b"application", b"pdf")
    assert att[5].lower() == b"base64"
    # size of the encoded body part
    assert isinstance(att[6], int) and att[6] > len(pdf)
    # extension data: disposition (attachment, filename)
    dispositions = [x for x in att[7:] if isinstance(x, tuple) and x and x[0] and x[0].lower() == b"attachment"]
    assert dispositions, att
    assert b"report.pdf" in dispositions[0][1]

    # BODY[2] decoded is the attachment
    part = client.fetch([u2], ["BODY.PEEK[2]"])[u2]
    assert base64.b64decode(part[b"BODY[2]"]) == pdf


def test_search_criteria(client: IMAPClient) -> None:
    client.create_folder("ICSearch")
    client.append("ICSearch", make_message("Grüße aus Köln", "Schöne Grüße\n"), flags=(b"\\Seen",))
    client.append("ICSearch", make_message("meeting notes", "agenda item\n", sender="dave@example.net"),
                  flags=(b"\\Flagged",))
    client.append("ICSearch", make_message("big one", "x" * 5000 + "\n"))
    client.select_folder("ICSearch")
    all_uids = client.search()
    assert len(all_uids) == 3
    u1, u2, u3 = all_uids
    assert client.search(["SUBJECT", "Grüße"], charset="UTF-8") == [u1]
    assert client.search(["BODY", "Schöne"], charset="UTF-8") == [u1]
    assert client.search(["TEXT", "Köln"], charset="UTF-8") == [u1]
    assert client.search(["FROM", "dave@example.net"]) == [u2]
    assert client.search(["SEEN"]) == [u1]
    assert client.search(["UNSEEN"]) == [u2, u3]
    assert client.search(["FLAGGED"]) == [u2]
    assert client.search(["LARGER", 3000]) == [u3]
    assert client.search(["SMALLER", 3000]) == [u1, u2]
    assert client.search(["NOT", "FLAGGED", "UNSEEN"]) == [u3]
    assert client.search(["OR", "FLAGGED", "SEEN"]) == [u1, u2]
    assert client.search(["SENTON", dt.date(2026, 11, 2)]) == [u1, u2, u3]
    assert client.search(["SENTBEFORE", dt.date(2026, 11, 2)]) == []
    assert client.search(["SINCE", dt.date.today() - dt.timedelta(days=1)]) == [u1, u2, u3]
    assert client.search(["HEADER", "Message-ID", "example.org"]) == [u1, u2, u3]
    assert client.search(["UID", f"{u2}:{u3}"]) == [u2, u3]
    assert client.search(["SUBJECT", "nonexistent-term"]) == []


def test_flags_copy_move_expunge(client: IMAPClient) -> None:
    client.create_folder("ICFlags")
    client.create_folder("ICFlagsDst")
    for i in range(5):
        client.append("ICFlags", make_message(f"flag {i}"))
    client.select_folder("ICFlags")
    u = client.search()
    assert len(u) == 5
    # Appended before anyone selected the folder, so \\Recent for this first session (RFC 3501 2.3.2).
    res = client.add_flags([u[0], u[1]], [b"\\Seen", b"Custom"])
    assert set(res[u[0]]) == {b"\\Seen", b"Custom", b"\\Recent"}
    res = client.remove_flags([u[0]], [b"Custom"])
    assert set(res[u[0]]) == {b"\\Seen", b"\\Recent"}
    res = client.set_flags([u[1]], [b"\\Answered"])
    assert set(res[u[1]]) == {b"\\Answered", b"\\Recent"}
    assert client.get_flags([u[0], u[1]]) == {u[0]: (b"\\Seen", b"\\Recent"), u[1]: (b"\\Answered", b"\\Recent")}
    # imapclient sends UID COPY; imaplib's uid() drops the tagged OK text, so the COPYUID code is not seen
    client.copy([u[0]], "ICFlagsDst")
    client.move([u[1]], "ICFlagsDst")
    assert client.search() == [u[0], u[2], u[3], u[4]]
    assert client.folder_status("ICFlagsDst", [b"MESSAGES"])[b"MESSAGES"] == 2

    # plain EXPUNGE reports the expunged sequence numbers
    client.add_flags([u[2], u[3]], [b"\\Deleted"])
    _text, expunges = client.expunge()
    got = sorted(n for n, kind in expunges if kind == b"EXPUNGE")
    assert got == [2, 2] or got == [2, 3], expunges  # seq 2 then 2 again, or 3 then 2
    assert client.search() == [u[0], u[4]]

    # UID EXPUNGE only removes the listed \Deleted message
    client.add_flags([u[0], u[4]], [b"\\Deleted"])
    client.uid_expunge([u[4]])
    assert client.search() == [u[0]]
    client.expunge([u[0]])  # expunge(messages) is UID EXPUNGE too
    assert client.search() == []
    client.unselect_folder()
    with pytest.raises(IMAPClientError):
        client.search()


def test_idle_sees_append_by_other_client(server: RunningServer, client: IMAPClient) -> None:
    client.create_folder("ICIdle")
    client.select_folder("ICIdle")
    client.idle()
    other = IMAPClient(server.host, port=server.port, ssl=False, timeout=15)
    other.login("alice", server.users["alice"])

    def deliver() -> None:
        time.sleep(0.3)
        other.append("ICIdle", make_message("pushed"))

    t = threading.Thread(target=deliver)
    t.start()
    seen: list[tuple[object, ...]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(r[1:2] == (b"EXISTS",) for r in seen):
        seen += client.idle_check(timeout=1)
    t.join()
    _text, _extra = client.idle_done()
    assert (1, b"EXISTS") in seen, seen
    other.logout()
    # the session is usable after IDLE
    assert len(client.search()) == 1
