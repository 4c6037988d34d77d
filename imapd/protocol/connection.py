"""The server side of one IMAP connection, without I/O: bytes in, events out; responses in, bytes out.

Usage (the asyncio server owns the socket)::

    conn = ServerConnection()
    conn.receive_data(await reader.read(65536))
    while (event := conn.next_event()) is not NEED_DATA:
        ...  # CommandReceived / ContinuationRequest / ProtocolError / ...
    writer.write(conn.send(TaggedResponse(tag, "OK", "done")))

``next_event()`` never raises: anything it cannot make sense of becomes a :class:`ProtocolError`.
After a fatal error or EOF it keeps returning :class:`ConnectionClosed`.

Modes: after an ``Idle`` command the session calls :meth:`expect_idle_done`; the next line must be
``DONE`` (anything else gives a non-fatal ``ProtocolError`` and ends the mode). For SASL, each
:meth:`expect_sasl_response` makes the next line a base64 :class:`SaslResponse`.
"""

from __future__ import annotations

import base64
import binascii

from .command_parser import CommandParseError, parse_command
from .events import (
    NEED_DATA,
    CommandReceived,
    ConnectionClosed,
    ContinuationRequest,
    Event,
    IdleDone,
    ProtocolError,
    SaslResponse,
)
from .framing import EOF, CommandFrame, CommandFramer, FrameError, LiteralWanted
from .response_writer import ResponseWriter
from .responses import Response

__all__ = ["NEED_DATA", "ServerConnection"]

_MODE_COMMAND = 0
_MODE_IDLE = 1
_MODE_SASL = 2


class ServerConnection:
    """Parser and serializer state for one client; see the module docstring."""

    __slots__ = ("_closed", "_framer", "_last_tag", "_mode", "_writer", "max_nesting")

    def __init__(
        self, *, max_line: int = 65536, max_literal: int = 64 * 1024 * 1024, max_nesting: int = 64
    ) -> None:
        self.max_nesting = max_nesting
        # a whole command (MULTIAPPEND included) may hold at most this many bytes
        self._framer = CommandFramer(max_line, max_literal, max_command=2 * max_literal + 16 * max_line)
        self._mode = _MODE_COMMAND
        self._closed = False
        self._last_tag: str | None = None
        self._writer = ResponseWriter()

    # -- settings ---------------------------------------------------------------------------------------------
    @property
    def utf8(self) -> bool:
        """True once UTF8=ACCEPT is enabled: names are UTF-8 both ways, quoted strings may hold UTF-8."""
        return self._writer.utf8

    @utf8.setter
    def utf8(self, value: bool) -> None:
        self._writer.utf8 = value

    @property
    def pending_bytes(self) -> int:
        """Bytes received but not consumed yet (a server can stop reading above its budget)."""
        return self._framer.pending_bytes

    # -- input --------------------------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the client; ``b""`` means the client closed its side."""
        if not self._closed:
            self._framer.feed(bytes(data))

    def take_unread(self) -> bytes:
        """The bytes received after the last event, removed: they go with a connection that moves to
        another process, to be fed to its parser there. Only between commands."""
        if self._framer.in_command():
            raise RuntimeError("take_unread() in the middle of a command")
        return self._framer.take_pending()

    def expect_idle_done(self) -> None:
        self._mode = _MODE_IDLE

    def expect_sasl_response(self) -> None:
        self._mode = _MODE_SASL

    def next_event(self) -> Event | type[NEED_DATA]:
        """The next event, or ``NEED_DATA``."""
        if self._closed:
            return ConnectionClosed()
        try:
            event = self._next_line_event() if self._mode != _MODE_COMMAND else self._next_command_event()
            if event is NEED_DATA:
                self._framer.release_if_consumed()
            return event
        except Exception as exc:  # a parser bug must not take the server down
            return ProtocolError(self._last_tag, "SERVERBUG", f"Internal parser error: {type(exc).__name__}")

    def _next_line_event(self) -> Event | type[NEED_DATA]:
        line = self._framer.next_raw_line()
        if line is None:
            if self._framer.eof:
                self._closed = True
                return ConnectionClosed()
            return NEED_DATA
        mode, self._mode = self._mode, _MODE_COMMAND
        tag = self._last_tag
        if isinstance(line, FrameError):
            return ProtocolError(tag, line.code, line.text, line.fatal)
        if mode == _MODE_IDLE:
            if line.upper() == b"DONE":
                return IdleDone()
            return ProtocolError(tag, None, "Expected DONE")
        if line == b"*":
            return SaslResponse(b"", cancelled=True)
        try:
            data = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            return ProtocolError(tag, None, "Invalid base64 in SASL response")
        return SaslResponse(data)

    def _next_command_event(self) -> Event | type[NEED_DATA]:
        frame = self._framer.next_frame()
        if frame is None:
            return NEED_DATA
        if frame is EOF:
            self._closed = True
            return ConnectionClosed()
        if isinstance(frame, LiteralWanted):
            return ContinuationRequest()
        if isinstance(frame, FrameError):
            if frame.fatal:
                self._closed = True
            return ProtocolError(frame.tag, frame.code, frame.text, frame.fatal)
        assert isinstance(frame, CommandFrame)
        self._last_tag = frame.tag
        try:
            command = parse_command(frame.parts, utf8=self.utf8, max_nesting=self.max_nesting)
        except CommandParseError as exc:
            return ProtocolError(exc.tag, exc.code, exc.text)
        return CommandReceived(command)

    # -- output -------------------------------------------------------------------------------------------------
    def send(self, response: Response) -> bytes:
        """Serialize one response (mailbox names in mUTF-7 unless ``utf8``)."""
        return self._writer.write(response)
