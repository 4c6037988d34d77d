"""The DATA reader of the LMTP server, on a real asyncio.StreamReader fed in random pieces: it returns
exactly the lines sent (dot-unstuffed), stops at the lone dot, and leaves what follows for the next command."""

from __future__ import annotations

import asyncio
import itertools
import types

from hypothesis import given, settings
from hypothesis import strategies as st

from imapd.server.lmtp import LMTPConnection

line = st.one_of(st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"x").replace(b"\n", b"y")),
                 st.sampled_from([b"", b".", b"..", b".x", b"\r", b"a\rb", b". ", b"\n."]))


def stuffed(lines: list[bytes]) -> bytes:
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines) + b".\r\n"


async def read(wire: bytes, cuts: list[int], limit: int, max_size: int) -> tuple[bytes | None, bytes]:
    reader = asyncio.StreamReader(limit=limit)
    conn = types.SimpleNamespace(_reader=reader, _reset_timeout=lambda: None)
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})

    async def feed() -> None:
        for a, b in itertools.pairwise(points):
            reader.feed_data(wire[a:b])
            await asyncio.sleep(0)
        reader.feed_eof()

    feeder = asyncio.create_task(feed())
    data = await LMTPConnection._read_dot_data(conn, max_size)  # type: ignore[arg-type]
    await feeder
    return data, await reader.read()


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(line, max_size=30), cuts=st.lists(st.integers(min_value=0), max_size=12),
       limit=st.sampled_from([4, 16, 64 * 1024]))
def test_round_trip(lines: list[bytes], cuts: list[int], limit: int) -> None:
    expected = b"".join(ln + b"\r\n" for ln in lines)
    data, rest = asyncio.run(read(stuffed(lines) + b"QUIT\r\n", cuts, limit, 1 << 20))
    assert data == expected
    assert rest == b"QUIT\r\n"


def test_too_big_is_read_to_the_end() -> None:
    lines = [b"x" * 100] * 50
    data, rest = asyncio.run(read(stuffed(lines) + b"RSET\r\n", [7, 300, 2000], 16, 1000))
    assert data is None
    assert rest == b"RSET\r\n"


def test_empty_message() -> None:
    assert asyncio.run(read(b".\r\nNOOP\r\n", [1, 2], 16, 100)) == (b"", b"NOOP\r\n")
