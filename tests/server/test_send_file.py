"""send_file: exactly the octets a literal announced, over a real socket pair, also when the file changed."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from imapd.server.connection import send_file
from imapd.store.content import MessageFile


def _open(path: Path, uid: int = 1) -> MessageFile:
    fd = os.open(path, os.O_RDONLY)
    return MessageFile(uid, fd, os.fstat(fd).st_size)


async def _send_and_read(file: MessageFile) -> tuple[bool, bytes]:
    """Send ``file`` through a non-blocking socket pair with a small send buffer (so sendfile must wait
    for the reader), reading the other end concurrently."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    ours.setblocking(False)
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    got = bytearray()

    async def read() -> None:
        while len(got) < file.size:
            got.extend(await loop.sock_recv(theirs, 65536))

    reader = asyncio.ensure_future(read())
    try:
        complete = await send_file(loop, ours.fileno(), file)
        await asyncio.wait_for(reader, 10)
    finally:
        file.close()
        ours.close()
        theirs.close()
    return complete, bytes(got)


async def test_sends_the_whole_file(tmp_path: Path) -> None:
    data = os.urandom(3_000_000)
    path = tmp_path / "msg"
    path.write_bytes(data)
    complete, got = await _send_and_read(_open(path))
    assert complete and got == data


async def test_a_file_removed_after_open_is_still_sent(tmp_path: Path) -> None:
    data = b"x" * 500_000
    path = tmp_path / "msg"
    path.write_bytes(data)
    file = _open(path)
    path.unlink()  # an expunge by another process: the open file keeps its octets
    complete, got = await _send_and_read(file)
    assert complete and got == data


async def test_a_file_that_shrank_is_padded_to_the_announced_length(tmp_path: Path) -> None:
    path = tmp_path / "msg"
    path.write_bytes(b"a" * 300_000)
    file = _open(path)  # size 300,000 is what the literal announced
    os.truncate(path, 100_000)  # rewritten in place after the open
    complete, got = await _send_and_read(file)
    assert not complete
    assert len(got) == 300_000  # never a wrong length
    assert got[:100_000] == b"a" * 100_000 and got[100_000:] == b" " * 200_000
