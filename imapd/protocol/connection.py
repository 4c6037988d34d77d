"""The server side of one IMAP connection, without I/O: bytes in, events out; responses in, bytes out.

Usage (the asyncio server owns the socket)::

    conn = ServerConnection()
    conn.receive_data(await reader.read(65536))
    while (event := conn.next_event()) is not NEED_DATA:
        ...  # CommandReceived / ContinuationRequest / ProtocolError / ...
    writer.write(conn.send(TaggedResponse(tag, "OK", "done")))

``next_event()`` never raises: anything it cannot make sense of becomes a :class:`ProtocolError`.
After a fatal error or EOF it keeps returning :class:`ConnectionClosed`.

Limits depend on the state: a connection made with ``preauth`` starts with the small pre-authentication
limits (enough for LOGIN, AUTHENTICATE and X-STATE RESTORE) and charges the bytes it holds unconsumed to a
budget shared by every unauthenticated connection; :meth:`authenticated` switches to the normal limits and
leaves the budget, :meth:`unauthenticated` (UNAUTHENTICATE) goes back. Past the per-connection or the shared ceiling the connection reports a fatal
``ProtocolError`` (``BYE [TOOBIG]`` / ``BYE [UNAVAILABLE]``) and drops what it buffered at once.

Modes: after an ``Idle`` command the session calls :meth:`expect_idle_done`; the next line must be
``DONE`` (anything else gives a non-fatal ``ProtocolError`` and ends the mode). For SASL, each
:meth:`expect_sasl_response` makes the next line a base64 :class:`SaslResponse`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

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
from .responses import FetchResponse, Response, UidFetchResponse
from .values import FileLiteral

__all__ = ["NEED_DATA", "InputBudget", "InputLimits", "PreauthLimits", "ServerConnection"]

_MODE_COMMAND = 0
_MODE_IDLE = 1
_MODE_SASL = 2


@dataclass(frozen=True, slots=True)
class InputLimits:
    max_line: int
    max_literal: int
    max_command: int
    """A whole command (MULTIAPPEND included) may hold at most this many bytes."""

    @classmethod
    def authenticated(cls, max_line: int, max_literal: int) -> InputLimits:
        return cls(max_line, max_literal, 2 * max_literal + 16 * max_line)

    @classmethod
    def preauth(cls, max_line: int, max_literal: int) -> InputLimits:
        """LOGIN with both arguments as literals is the largest command before authentication."""
        return cls(max_line, max_literal, 2 * max_literal + 3 * max_line)


class InputBudget:
    """Unconsumed input bytes held by all unauthenticated connections together, against one ceiling."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


@dataclass(frozen=True, slots=True)
class PreauthLimits:
    limits: InputLimits
    max_buffer: int
    """Unconsumed input bytes one unauthenticated connection may hold."""
    budget: InputBudget


class ServerConnection:
    """Parser and serializer state for one client; see the module docstring."""

    __slots__ = ("_charged", "_closed", "_framer", "_last_tag", "_limits", "_mode", "_overflow", "_preauth",
                 "_preauth_limits", "_writer", "max_nesting")

    def __init__(
        self, *, max_line: int = 65536, max_literal: int = 64 * 1024 * 1024, max_nesting: int = 64,
        preauth: PreauthLimits | None = None,
    ) -> None:
        self.max_nesting = max_nesting
        self._limits = InputLimits.authenticated(max_line, max_literal)
        self._preauth = preauth
        self._preauth_limits = preauth  # kept for :meth:`unauthenticated`
        self._charged = 0
        self._overflow: ProtocolError | None = None
        first = preauth.limits if preauth is not None else self._limits
        self._framer = CommandFramer(first.max_line, first.max_literal, max_command=first.max_command)
        self._mode = _MODE_COMMAND
        self._closed = False
        self._last_tag: str | None = None
        self._writer = ResponseWriter()

    # -- state-dependent limits ---------------------------------------------------------------------------
    @property
    def limits(self) -> InputLimits:
        """The limits in force now."""
        framer = self._framer
        return InputLimits(framer.max_line, framer.max_literal, framer.max_command)

    def authenticated(self) -> None:
        """The session logged in: the normal limits apply and this connection leaves the pre-auth budget."""
        if self._preauth is None:
            return
        self._uncharge()
        self._preauth = None
        framer, limits = self._framer, self._limits
        framer.max_line = limits.max_line
        framer.max_literal = limits.max_literal
        framer.max_command = limits.max_command

    def unauthenticated(self) -> None:
        """The session went back to not authenticated (RFC 8437 UNAUTHENTICATE): the pre-auth limits and
        the shared budget apply again, to what is already buffered too."""
        pre = self._preauth_limits
        if pre is None or self._preauth is not None or self._closed:
            return
        self._preauth = pre
        framer = self._framer
        framer.max_line = pre.limits.max_line
        framer.max_literal = pre.limits.max_literal
        framer.max_command = pre.limits.max_command
        self._account()

    def discard(self) -> None:
        """The connection is gone (or replaced, as by STARTTLS): drop buffered input, give back its budget."""
        self._uncharge()
        self._preauth = None
        self._drop_input()
        self._closed = True

    def _uncharge(self) -> None:
        if self._preauth is not None:
            self._preauth.budget.used -= self._charged
        self._charged = 0

    def _drop_input(self) -> None:
        old = self._framer
        self._framer = CommandFramer(old.max_line, old.max_literal, max_command=old.max_command)

    def _account(self) -> None:
        """Charge what this unauthenticated connection holds now; past a ceiling, fail it and free it."""
        pre = self._preauth
        if pre is None:
            return
        if self._closed:  # a fatal error ended it: nothing it holds will be read
            self._uncharge()
            return
        held = self._framer.pending_bytes
        pre.budget.used += held - self._charged
        self._charged = held
        if self._overflow is not None:
            return
        if held > pre.max_buffer:
            self._overflow = ProtocolError(None, "TOOBIG", "Too much input before authentication", fatal=True)
        elif pre.budget.used > pre.budget.limit:
            self._overflow = ProtocolError(None, "UNAVAILABLE", "Server busy, try again later", fatal=True)
        else:
            return
        self._uncharge()
        self._drop_input()

    # -- settings ---------------------------------------------------------------------------------------------
    @property
    def utf8(self) -> bool:
        """True once UTF8=ACCEPT is enabled: names are UTF-8 both ways, quoted strings may hold UTF-8."""
        return self._writer.utf8

    @utf8.setter
    def utf8(self, value: bool) -> None:
        self._writer.utf8 = value

    @property
    def holds_partial_command(self) -> bool:
        """Unconsumed input that may be an unfinished command (see ``CommandFramer.holds_partial_command``)."""
        return self._framer.holds_partial_command()

    @property
    def pending_bytes(self) -> int:
        """Bytes received but not consumed yet (a server can stop reading above its budget)."""
        return self._framer.pending_bytes

    # -- input --------------------------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the client; ``b""`` means the client closed its side."""
        if not self._closed and self._overflow is None:
            self._framer.feed(bytes(data))
            self._account()

    def take_unread(self) -> bytes:
        """The bytes received after the last event, removed: they go with a connection that moves to
        another process, to be fed to its parser there. Only between commands."""
        if self._framer.in_command():
            raise RuntimeError("take_unread() in the middle of a command")
        unread = self._framer.take_pending()
        self._account()
        return unread

    def expect_idle_done(self) -> None:
        self._mode = _MODE_IDLE

    def expect_sasl_response(self) -> None:
        self._mode = _MODE_SASL

    def next_event(self) -> Event | type[NEED_DATA]:
        """The next event, or ``NEED_DATA``."""
        if self._closed:
            return ConnectionClosed()
        if self._overflow is not None:
            self._closed = True
            return self._overflow
        try:
            event = self._next_line_event() if self._mode != _MODE_COMMAND else self._next_command_event()
            if event is NEED_DATA:
                self._framer.release_if_consumed()
        except Exception as exc:  # a parser bug must not take the server down
            event = ProtocolError(self._last_tag, "SERVERBUG", f"Internal parser error: {type(exc).__name__}")
        self._account()
        return event

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

    def send_parts(self, response: FetchResponse | UidFetchResponse) -> list[bytes | FileLiteral]:
        """Serialize a FETCH response that holds :class:`FileLiteral` values: bytes, and the literals
        whose octets the caller must send in their place."""
        return self._writer.write_parts(response)
