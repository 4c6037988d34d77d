"""One connection from the proxy to a backend: opened, told the client's address, logged in with a token.

While the proxy drives it (greeting, ID, X-STATE RESTORE/SAVE, IDLE), :meth:`BackendLink.response`
returns whole responses (a line plus its literals, raw bytes, so they can be passed on verbatim); once
the session relays, every byte goes straight to the session's ``backend_data``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from imapd.protocol.framing import literal_marker
from imapd.protocol.proxyproto import encode_v2
from imapd.proxy.backends import Backend

__all__ = ["BackendClosed", "BackendLink", "connect", "open_link", "read_greeting"]

_MAX_RESPONSE = 16 << 20


class BackendClosed(ConnectionError):
    """The backend closed the connection or could not be reached."""


class BackendLink(asyncio.Protocol):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._scan = 0
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.on_data: Callable[[bytes], None] | None = None
        self.on_lost: Callable[[BackendLink], None] | None = None
        self._tags = 0
        self.peer: asyncio.Protocol | None = None
        """The client session: its transport stops being read while this backend cannot keep up."""

    # -- asyncio.Protocol ------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        if self.on_data is not None:
            self.on_data(data)
            return
        self._buf += data
        if len(self._buf) > _MAX_RESPONSE:
            self.abort()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:
        transport = getattr(self.peer, "transport", None)
        if transport is not None:
            transport.pause_reading()

    def resume_writing(self) -> None:
        transport = getattr(self.peer, "transport", None)
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- driving it ------------------------------------------------------------------------------------------
    def next_tag(self) -> str:
        self._tags += 1
        return f"PXY{self._tags}"

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def relay(self, on_data: Callable[[bytes], None]) -> bytes:
        """Hand every further byte to ``on_data``; returns what was received but not read yet."""
        self.on_data = on_data
        rest, self._buf, self._scan = bytes(self._buf), bytearray(), 0
        return rest

    def control(self) -> None:
        """Stop relaying: responses are read with :meth:`response` again."""
        self.on_data = None

    async def response(self, timeout: float = 30.0) -> bytes:
        """The next whole response (first line, literals and continuation lines, CRLFs included)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            end = self._frame()
            if end:
                out = bytes(self._buf[:end])
                del self._buf[:end]
                self._scan = 0
                return out
            if self.closed:
                raise BackendClosed(f"backend {self.backend.node} closed the connection")
            # A timer on the waiter, not asyncio.wait_for (a task and two callbacks per response).
            self._waiter = waiter = loop.create_future()
            timer = loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            except TimeoutError:
                raise BackendClosed(f"backend {self.backend.node} did not answer in {timeout:.0f} s") from None
            finally:
                timer.cancel()
                self._waiter = None

    def _frame(self) -> int:
        """Length of the first complete response in the buffer, 0 if incomplete."""
        buf, pos = self._buf, self._scan
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return 0
            marker = literal_marker(bytes(buf[pos:end]))
            if marker is None:
                return end + 2
            after = end + 2 + marker[0]
            if len(buf) < after:
                return 0
            pos = after

    async def command(self, text: str, *, timeout: float = 30.0) -> tuple[list[bytes], bytes]:
        """Send one command of ours; (the untagged responses before its completion, the tagged line)."""
        tag = self.next_tag()
        self.write(f"{tag} {text}\r\n".encode())
        return await self.until_tagged(tag, timeout=timeout)

    async def until_tagged(self, tag: str, *, timeout: float = 30.0) -> tuple[list[bytes], bytes]:
        prefix = tag.encode() + b" "
        untagged: list[bytes] = []
        while True:
            resp = await self.response(timeout)
            if resp.startswith(prefix):
                return untagged, resp
            untagged.append(resp)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def connect(backend: Backend, *, timeout: float = 10.0) -> BackendLink:
    """A new TCP connection to ``backend`` (nothing sent, nothing read yet)."""
    loop = asyncio.get_running_loop()
    try:
        _, link = await asyncio.wait_for(
            loop.create_connection(lambda: BackendLink(backend), backend.host, backend.port), timeout)
    except (TimeoutError, OSError) as exc:
        raise BackendClosed(f"cannot connect to backend {backend.node} ({backend.address}): {exc}") from None
    return link


async def read_greeting(link: BackendLink, *, timeout: float = 10.0) -> None:
    greeting = await link.response(timeout)
    if not greeting.startswith(b"* OK"):
        raise BackendClosed(f"backend {link.backend.node} greeted with {greeting[:80]!r}")


async def open_link(backend: Backend, *, client: tuple[str, int], local: tuple[str, int], tls: bool,
                    forward: str, command: str, timeout: float = 10.0,
                    pooled: BackendLink | None = None) -> tuple[BackendLink, list[bytes], bytes]:
    """Connect, name the real client (PROXY v2 header, or ID x-originating-ip) and send ``command`` (the
    RESTORE), all in the first write, without waiting for the greeting: one round trip, not three. The
    backend reads its input only after greeting. ``pooled``: a connection already open and greeted
    (:mod:`imapd.proxy.link_pool`, "id" mode only), which saves the connect and the greeting. Returns the
    link and ``command``'s responses."""
    link = pooled if pooled is not None else await connect(backend, timeout=timeout)
    try:
        first = encode_v2(client, local, tls=tls) if forward == "proxy-protocol" else b""
        id_tag = None
        if forward == "id":
            id_tag = link.next_tag()
            first += (f'{id_tag} ID ("x-originating-ip" "{client[0]}" "x-originating-port" "{client[1]}")\r\n'
                      .encode())
        tag = link.next_tag()
        link.write(first + f"{tag} {command}\r\n".encode())
        if pooled is None:
            await read_greeting(link, timeout=timeout)
        if id_tag is not None:
            _, done = await link.until_tagged(id_tag, timeout=timeout)
            if b" OK" not in done[:20]:
                raise BackendClosed(f"backend {backend.node} refused ID: {done[:80]!r}")
        untagged, done = await link.until_tagged(tag, timeout=timeout)
    except BaseException:
        link.abort()
        raise
    return link, untagged, done
