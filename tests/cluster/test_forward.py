"""Forwarding a copy to the owner's LMTP: unreachable before the message went out means "store it here";
no answer after it went out means a temporary failure (the owner may have stored it: no second copy)."""

from __future__ import annotations

import asyncio

from imapd.cluster.forward import forward_copy
from imapd.delivery.agent import Envelope
from imapd.delivery.recipients import Recipient

ENVELOPE = Envelope(mail_from="a@example.org", recipient=Recipient("alice@example.org", "alice"))
MESSAGE = b"Subject: hi\r\n\r\nbody\r\n"


async def _owner(answer_the_dot: bool) -> tuple[asyncio.Server, list[bytes]]:
    """A real LMTP peer on loopback that takes the whole transaction and answers its end or stays silent."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 owner LMTP\r\n")
        in_data = False
        while line := await reader.readline():
            seen.append(line)
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    if answer_the_dot:
                        writer.write(b"250 2.0.0 stored\r\n")
                continue
            verb = line.split()[0].upper() if line.strip() else b""
            if verb == b"DATA":
                in_data = True
                writer.write(b"354 go on\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0), seen


async def test_answered_copy_is_stored_by_the_owner() -> None:
    server, seen = await _owner(answer_the_dot=True)
    port = server.sockets[0].getsockname()[1]
    got = await forward_copy(f"127.0.0.1:{port}", "n1", ENVELOPE, MESSAGE, timeout=2.0)
    server.close()
    assert got is not None and got.kind == "stored"
    assert seen[0].startswith(b"LHLO cluster-forward.n1")


async def test_silence_after_the_message_is_a_temporary_failure_not_a_second_copy() -> None:
    server, seen = await _owner(answer_the_dot=False)
    port = server.sockets[0].getsockname()[1]
    got = await forward_copy(f"127.0.0.1:{port}", "n1", ENVELOPE, MESSAGE, timeout=0.5)
    server.close()
    assert b".\r\n" in seen  # the owner got the whole message
    assert got is not None and got.kind == "failed" and got.failure == "tempfail"


async def test_unreachable_owner_leaves_the_copy_to_this_node() -> None:
    server, _ = await _owner(answer_the_dot=True)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    assert await forward_copy(f"127.0.0.1:{port}", "n1", ENVELOPE, MESSAGE, timeout=0.5) is None
