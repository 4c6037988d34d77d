"""COMPRESS=DEFLATE (RFC 4978): the command's syntax and the sans-IO deflate transform."""

from __future__ import annotations

import os
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imapd.protocol import commands as c
from imapd.protocol.command_writer import write_command
from imapd.protocol.compress import WINDOW, DeflateError, DeflateStream
from imapd.protocol.events import ProtocolError

from .helpers import events_of, parse_one


def test_parse_and_write() -> None:
    assert parse_one(b"a COMPRESS DEFLATE") == c.Compress("a", "DEFLATE")  # RFC 4978 section 3's example
    assert parse_one(b"a compress deflate") == c.Compress("a", "DEFLATE")
    assert write_command(c.Compress("a", "DEFLATE")) == b"a COMPRESS DEFLATE\r\n"
    for bad in (b"a COMPRESS", b"a COMPRESS (DEFLATE)", b"a COMPRESS DEFLATE extra"):
        event = events_of(bad + b"\r\n")[0]
        assert isinstance(event, ProtocolError) and event.tag == "a", (bad, event)


def _client() -> zlib._Compress:
    return zlib.compressobj(6, zlib.DEFLATED, -15)


def test_both_directions_and_bounded_expansion() -> None:
    stream, client = DeflateStream(), _client()
    data = b"a1 APPEND INBOX {10000000+}\r\n" + b"x" * 10_000_000 + b"\r\n"
    wire = client.compress(data) + client.flush(zlib.Z_SYNC_FLUSH)
    assert len(wire) < 20_000
    out = [stream.decompress(wire, 65536)]
    assert len(out[0]) == 65536 and stream.pending and not stream.at_boundary
    while stream.pending:
        piece = stream.decompress(b"", 65536)
        assert len(piece) <= 65536
        out.append(piece)
    assert b"".join(out) == data and stream.at_boundary
    inflate = zlib.decompressobj(-15)
    assert inflate.decompress(stream.compress(b"* OK done\r\n")) == b"* OK done\r\n"  # sync-flushed


@given(st.lists(st.binary(max_size=5000), min_size=1, max_size=8), st.lists(st.binary(max_size=5000), max_size=8))
def test_resume_elsewhere_continues_both_streams(before: list[bytes], after: list[bytes]) -> None:
    """What a reload does: export at a boundary, resume in a new object; neither side notices."""
    stream, client, inflate = DeflateStream(), _client(), zlib.decompressobj(-15)
    seen, got = b"", b""
    for chunk in before:
        seen += stream.decompress(client.compress(chunk) + client.flush(zlib.Z_SYNC_FLUSH))
        got += inflate.decompress(stream.compress(chunk))
    assert seen == got == b"".join(before) and stream.at_boundary
    last, window = stream.export()
    assert len(window) <= WINDOW
    moved = DeflateStream.resume(window)
    got += inflate.decompress(last)
    for chunk in after:
        assert moved.decompress(client.compress(chunk) + client.flush(zlib.Z_SYNC_FLUSH)) == chunk
        got += inflate.decompress(moved.compress(chunk))
    assert got == b"".join(before) + b"".join(after)


def test_a_partial_flush_is_not_a_boundary() -> None:
    stream, client = DeflateStream(), _client()
    stream.decompress(client.compress(os.urandom(3000)) + client.flush(zlib.Z_PARTIAL_FLUSH))
    assert not stream.at_boundary


@pytest.mark.parametrize("wire", [b"\xff\xff\xff\xff", zlib.compress(b"zlib header, not raw deflate")])
def test_corrupt_input(wire: bytes) -> None:
    with pytest.raises(DeflateError):
        DeflateStream().decompress(wire)


def test_the_client_may_not_end_the_stream() -> None:
    client = _client()
    with pytest.raises(DeflateError):
        DeflateStream().decompress(client.compress(b"a NOOP\r\n") + client.flush(zlib.Z_FINISH))
