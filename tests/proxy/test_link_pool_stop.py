"""The backend-connection pool stops for good: closing its idle connections on the way out opens no new ones."""

from __future__ import annotations

import asyncio
import contextlib

from imapd.proxy.backends import BackendPool
from imapd.proxy.link_pool import LinkPool


async def test_stop_opens_no_replacement_connections() -> None:
    accepted = 0

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.write(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = LinkPool(BackendPool([f"n1=127.0.0.1:{port}"], None, health_interval=5.0), size=3, max_age=30.0)
    pool.start()
    for _ in range(100):
        if pool.idle("n1") == 3:
            break
        await asyncio.sleep(0.02)
    assert pool.idle("n1") == 3 and accepted == 3
    await pool.stop()
    await asyncio.sleep(0.5)  # the closes land; before the fix each asked for a refill
    assert accepted == 3 and pool.idle("n1") == 0
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    server.close()
    await server.wait_closed()
