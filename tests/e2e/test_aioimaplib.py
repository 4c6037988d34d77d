"""End-to-end with aioimaplib (asyncio client) against a real server process."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import SMTP

import aioimaplib
import pytest

from tests.conftest import RunningServer, imapd_cli


def make_message(subject: str, body: str = "Hello there.\n") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Carol <carol@example.org>"
    msg["To"] = "bob@example.org"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<{abs(hash(subject))}@example.org>"
    msg.set_content(body)
    return msg.as_bytes(policy=SMTP)


async def connect(server: RunningServer, user: str = "bob") -> aioimaplib.IMAP4:
    client = aioimaplib.IMAP4(host=server.host, port=server.port, timeout=10)
    await client.wait_hello_from_server()
    resp = await client.login(user, server.users[user])
    assert resp.result == "OK", resp
    return client


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[aioimaplib.IMAP4]:
    c = await connect(server)
    try:
        yield c
    finally:
        with contextlib.suppress(asyncio.TimeoutError, aioimaplib.Abort, OSError):
            await c.logout()


def flatten(lines: list[bytes | bytearray | str]) -> bytes:
    return b"\n".join(x.encode() if isinstance(x, str) else bytes(x) for x in lines)


async def wait_for_push(c: aioimaplib.IMAP4, pattern: bytes, timeout: float = 10) -> bytes:
    got = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not re.search(pattern, got):
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"no {pattern!r} pushed within {timeout}s; got {got!r}")
        try:
            lines = await c.wait_server_push(timeout=remaining)
        except TimeoutError as exc:
            raise AssertionError(f"no {pattern!r} pushed within {timeout}s; got {got!r}") from exc
        if isinstance(lines, (bytes, str)):
            lines = [lines]
        got += flatten(lines) + b"\n"
    return got


async def test_login_failure_and_capabilities(server: RunningServer) -> None:
    c = aioimaplib.IMAP4(host=server.host, port=server.port, timeout=10)
    await c.wait_hello_from_server()
    assert c.has_capability("IDLE")
    resp = await c.login("bob", "wrong")
    assert resp.result == "NO"
    assert b"AUTHENTICATIONFAILED" in flatten(resp.lines)
    resp = await c.login("bob", "secret2")
    assert resp.result == "OK"
    assert c.protocol.state == "AUTH"
    resp = await c.namespace()
    assert resp.result == "OK" and b'(("" "/"))' in flatten(resp.lines)
    resp = await c.id()  # sends ID NIL
    assert resp.result == "OK" and b'"name" "imapd"' in flatten(resp.lines)
    await c.logout()


# aioimaplib sends 'ID ( "name" "x" )', with spaces RFC 2971 does not allow; we accept them as Dovecot does.
async def test_id_with_parameters_as_aioimaplib_sends_it(client: aioimaplib.IMAP4) -> None:
    resp = await client.id(name="pytest-aioimaplib", version="2")
    assert resp.result == "OK", resp


async def test_append_select_search_fetch(client: aioimaplib.IMAP4) -> None:
    assert (await client.create("AioBox")).result == "OK"
    for i in range(3):
        resp = await client.append(make_message(f"aio {i}", f"body number {i}\n"), mailbox="AioBox",
                                   flags="\\Flagged" if i == 2 else None)
        assert resp.result == "OK", resp
        assert b"APPENDUID" in flatten(resp.lines)
    resp = await client.select("AioBox")
    assert resp.result == "OK"
    assert b"3 EXISTS" in flatten(resp.lines)
    resp = await client.search("ALL")
    assert resp.result == "OK" and resp.lines[0] == b"1 2 3"
    resp = await client.search("FLAGGED")
    assert resp.lines[0] == b"3"
    resp = await client.search("BODY", '"number 1"')
    assert resp.lines[0] == b"2"
    resp = await client.uid_search("ALL")
    assert resp.result == "OK" and len(resp.lines[0].split()) == 3
    resp = await client.fetch("1:3", "(FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert resp.result == "OK"
    text = flatten(resp.lines)
    for i in range(3):
        assert f"Subject: aio {i}".encode() in text
    assert text.count(b"RFC822.SIZE") == 3
    resp = await client.fetch("2", "(BODY[])")
    assert resp.result == "OK"
    literal = next(x for x in resp.lines if isinstance(x, bytearray))
    assert bytes(literal) == make_message("aio 1", "body number 1\n")
    resp = await client.store("2", "+FLAGS", "(\\Deleted)")
    assert resp.result == "OK"
    resp = await client.expunge()
    assert resp.result == "OK" and b"2 EXPUNGE" in flatten(resp.lines)


async def test_idle_push_from_other_client(server: RunningServer, client: aioimaplib.IMAP4) -> None:
    await client.create("AioIdle")
    await client.select("AioIdle")
    idle = await client.idle_start(timeout=20)
    other = await connect(server)
    try:
        assert (await other.append(make_message("while idling"), mailbox="AioIdle")).result == "OK"
        pushed = await wait_for_push(client, rb"\b1 EXISTS")
        assert b"1 EXISTS" in pushed
    finally:
        client.idle_done()
        await asyncio.wait_for(idle, 10)
        await other.logout()
    assert idle.result().result == "OK"
    resp = await client.search("ALL")
    assert resp.lines[0] == b"1"


async def test_idle_push_from_imapd_deliver(server: RunningServer, client: aioimaplib.IMAP4) -> None:
    resp = await client.select("INBOX")
    exists = int(re.search(rb"(\d+) EXISTS", flatten(resp.lines)).group(1))  # type: ignore[union-attr]
    idle = await client.idle_start(timeout=20)
    try:
        proc = await asyncio.to_thread(imapd_cli, "deliver", "bob", "--data-dir", str(server.data_dir),
                                       stdin=make_message("delivered by the MDA"))
        assert proc.returncode == 0
        pushed = await wait_for_push(client, rb"\b%d EXISTS" % (exists + 1))
        assert b"%d EXISTS" % (exists + 1) in pushed
    finally:
        client.idle_done()
        await asyncio.wait_for(idle, 10)
    resp = await client.fetch(str(exists + 1), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: delivered by the MDA" in flatten(resp.lines)
