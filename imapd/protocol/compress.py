"""COMPRESS=DEFLATE (RFC 4978) as a sans-IO transform: compressed bytes in, plain bytes out, and back.

Both directions are raw deflate (RFC 1951, no zlib header). Every write ends with a sync flush, so what
the client has received is always decodable; the client does the same after each of its commands.

A compressed session can move to another process (a reload): :meth:`DeflateStream.export` gives what the
new process needs and :meth:`DeflateStream.resume` takes it up there.
- Server to client: the old side ends its output with a full flush, which empties the deflate dictionary,
  so a fresh compressor's blocks continue the same stream validly.
- Client to server: the client's next blocks may refer back up to 32 KiB into what it sent before, so the
  inflater here keeps the last 32 KiB of decompressed input (the window) and the new side starts its
  inflater with that window as its dictionary. That is exact only at a block boundary, which is where
  the client's last sync flush left the stream (its input ended with the empty stored block
  ``00 00 ff ff``); :attr:`DeflateStream.at_boundary` says whether it did.
"""

from __future__ import annotations

import zlib

__all__ = ["DeflateError", "DeflateStream", "WINDOW"]

WINDOW = 32768
"""Deflate's largest back-reference distance: what the inflater must remember."""

_SYNC_MARK = b"\x00\x00\xff\xff"


class DeflateError(Exception):
    """The client's compressed stream is corrupt."""


class DeflateStream:
    __slots__ = ("_deflate", "_inflate", "_tail", "_window")

    def __init__(self, window: bytes = b"") -> None:
        # Level 6 and memLevel 8 are zlib's defaults, as Dovecot uses; wbits -15: raw deflate, 32 KiB window.
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15, zdict=window) if window else zlib.decompressobj(-15)
        self._window = bytearray(window[-WINDOW:])
        self._tail = _SYNC_MARK  # the last compressed bytes received: a fresh stream is at a boundary

    @classmethod
    def resume(cls, window: bytes) -> DeflateStream:
        """The stream of a session handed over with :meth:`export`'s window."""
        return cls(window)

    # -- client to server -----------------------------------------------------------------------------------
    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        """Plain bytes of ``data`` (up to ``max_length`` of them when non-zero: the rest waits in
        :attr:`pending`, taken by calling again with ``b""``)."""
        if data:
            self._tail = (self._tail + data)[-4:]
            source = self._inflate.unconsumed_tail + data if self._inflate.unconsumed_tail else data
        else:
            source = self._inflate.unconsumed_tail
        try:
            out = self._inflate.decompress(source, max_length)
        except zlib.error as exc:
            raise DeflateError(str(exc)) from None
        if self._inflate.eof:  # a final block: the client may not end the stream (RFC 4978 section 4)
            raise DeflateError("the compressed stream ended")
        if out:
            window = self._window
            window += out
            if len(window) > 2 * WINDOW:
                del window[:-WINDOW]
        return out

    @property
    def pending(self) -> bool:
        """Compressed input is waiting that a bounded :meth:`decompress` has not expanded yet."""
        return bool(self._inflate.unconsumed_tail)

    @property
    def at_boundary(self) -> bool:
        """All input so far is decoded and ended with a flush: the stream can be resumed elsewhere."""
        return not self.pending and self._tail == _SYNC_MARK

    # -- server to client -----------------------------------------------------------------------------------
    def compress(self, data: bytes) -> bytes:
        """``data`` compressed and sync-flushed: the client can decode all of it on arrival."""
        return self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def export(self) -> tuple[bytes, bytes]:
        """End this side's part of the stream for a hand-over: the bytes to write last (a full flush), and
        the window :meth:`resume` needs. Only at :attr:`at_boundary`."""
        return self._deflate.flush(zlib.Z_FULL_FLUSH), bytes(self._window[-WINDOW:])
