"""MULTIAPPEND, CATENATE and REPLACE from real client libraries: IMAPClient's ``multiappend`` (LITERAL+),
and imaplib, which sends any command with synchronizing literals and waits for each ``+``."""

from __future__ import annotations

import contextlib
import datetime as dt
import imaplib
import re
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP

import pytest
from imapclient import IMAPClient

from tests.conftest import RunningServer


def make_message(subject: str, body: str = "Hello there.\n") -> bytes:
    msg = EmailMessage()
    msg["From"] = "carol@example.org"
    msg["To"] = "alice@example.org"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Nov 2026 10:00:00 +0000"
    msg.set_content(body)
    return msg.as_bytes(policy=SMTP)


@pytest.fixture
def imap(server: RunningServer) -> Iterator[imaplib.IMAP4]:
    c = imaplib.IMAP4(server.host, server.port, timeout=15)
    c.login("alice", server.users["alice"])
    try:
        yield c
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            c.logout()


@pytest.fixture
def replace_command() -> Iterator[None]:
    """imaplib refuses commands it does not know; REPLACE is valid in the SELECTED state."""
    imaplib.Commands["REPLACE"] = ("SELECTED",)
    try:
        yield
    finally:
        del imaplib.Commands["REPLACE"]


class Pieces:
    """What imaplib sends after each continuation request of one command."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = iter(pieces)
        self.continuations = 0

    def next(self, continuation: bytes) -> bytes:
        self.continuations += 1
        return next(self._pieces)


def contents(imap: imaplib.IMAP4, mailbox: str) -> list[bytes]:
    imap.select(mailbox, readonly=True)
    typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
    assert typ == "OK"
    return [item[1] for item in data if isinstance(item, tuple)]


def test_imapclient_multiappend(server: RunningServer) -> None:
    c = IMAPClient(server.host, port=server.port, ssl=False, timeout=15)
    c.login("alice", server.users["alice"])
    try:
        assert {b"MULTIAPPEND", b"CATENATE", b"URL-PARTIAL", b"REPLACE"} <= set(c.capabilities())
        c.create_folder("ClientMulti")
        when = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)
        msgs = [make_message("one"), {"msg": make_message("two"), "flags": [b"\\Seen"], "date": when},
                make_message("three")]
        typ, reply = c.multiappend("ClientMulti", msgs)
        m = re.match(rb"\[APPENDUID (\d+) 1:3\]", reply[0])
        assert typ == "OK" and m, reply
        assert int(m.group(1)) == c.folder_status("ClientMulti", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
        c.select_folder("ClientMulti", readonly=True)
        fetched = c.fetch(c.search(), ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
        assert sorted(fetched) == [1, 2, 3]
        assert [fetched[u][b"BODY[]"] for u in sorted(fetched)] == [make_message("one"), make_message("two"),
                                                                      make_message("three")]
        assert b"\\Seen" in fetched[2][b"FLAGS"]
        assert fetched[2][b"INTERNALDATE"].replace(tzinfo=None) == when.astimezone().replace(tzinfo=None)
    finally:
        c.logout()


def test_imaplib_multiappend_with_synchronizing_literals(imap: imaplib.IMAP4) -> None:
    imap.create("LibMulti")
    one, two, three = make_message("a"), make_message("b"), make_message("c")
    # After the command line, each "+" gets the next piece; each piece ends announcing the next literal.
    pieces = Pieces([one + b" (\\Flagged) {%d}" % len(two), two + b" {%d}" % len(three), three])
    imap.literal = pieces.next  # a bound method: imaplib calls it once per continuation
    typ, data = imap._simple_command("APPEND", "LibMulti", f"{{{len(one)}}}")
    assert typ == "OK" and pieces.continuations == 3, (typ, data)
    assert re.match(rb"\[APPENDUID \d+ 1:3\]", data[0]), data
    assert contents(imap, "LibMulti") == [one, two, three]


def test_imaplib_catenate_and_badurl(imap: imaplib.IMAP4) -> None:
    imap.create("LibCat")
    original = make_message("original", "first body\n")
    assert imap.append("LibCat", "", None, original)[0] == "OK"
    body = b"a new body\r\n"
    header = original[: original.index(b"\r\n\r\n") + 4]
    typ, data = imap._simple_command("APPEND", "LibCat", "CATENATE", b'(URL "/LibCat/;UID=1/;SECTION=HEADER" TEXT {%d+}\r\n'
                                     % len(body) + body + b' URL "/LibCat/;UID=1/;SECTION=TEXT/;PARTIAL=0.6")')
    assert typ == "OK" and re.match(rb"\[APPENDUID \d+ 2\]", data[0]), data
    assert contents(imap, "LibCat")[1] == header + body + b"first "
    imap.unselect()
    typ, data = imap._simple_command("APPEND", "LibCat", "CATENATE", '(URL "imap://bob@localhost/INBOX/;UID=1")')
    assert typ == "NO" and data[0].startswith(b"[BADURL imap://bob@localhost/INBOX/;UID=1]"), data


def test_imaplib_replace_and_uid_replace(imap: imaplib.IMAP4, replace_command: None) -> None:
    imap.create("LibDrafts")
    for n in range(3):
        imap.append("LibDrafts", "(\\Draft)", None, make_message(f"draft {n}"))
    imap.select("LibDrafts")
    v2 = make_message("draft 1, second version")
    imap.literal = v2
    typ, data = imap._simple_command("REPLACE", "2", "LibDrafts", "(\\Draft)")
    assert typ == "OK", data
    typ, uid = imap.response("APPENDUID")
    assert uid and re.fullmatch(rb"\d+ 4", uid[0]), uid
    typ, expunged = imap.response("EXPUNGE")
    assert expunged == [b"2"]
    v3 = make_message("draft 1, third version")
    imap.literal = v3
    typ, data = imap.uid("REPLACE", "4", "LibDrafts", "(\\Draft \\Seen)")
    assert typ == "OK", data
    assert imap.response("APPENDUID")[1][0].endswith(b" 5")
    typ, data = imap.uid("SEARCH", "ALL")
    assert data == [b"1 3 5"]
    assert contents(imap, "LibDrafts") == [make_message("draft 0"), make_message("draft 2"), v3]
    # The old message must exist: nothing is appended when it does not.
    imap.select("LibDrafts")
    imap.literal = v3
    typ, data = imap.uid("REPLACE", "4", "LibDrafts", "(\\Draft)")
    assert typ == "NO", data
    assert imap.uid("SEARCH", "ALL")[1] == [b"1 3 5"]
