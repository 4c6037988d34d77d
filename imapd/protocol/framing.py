"""Splits the client byte stream into whole commands: lines and the literals between them.

Each command becomes a list of parts ``[line0, literal0, line1, literal1, ..., lineN]`` (lines without
their CRLF). Every byte is looked at a bounded number of times: the search for a line end resumes
where the previous one stopped, literals are sliced out in one piece once complete, and the command is
parsed only once, when its last line has arrived (see ``command_parser``).

Limits:
- a line longer than ``max_line``: ``BAD [TOOBIG]``; the rest of the line is skipped as it arrives,
  without buffering it (only a short tail is kept to spot a literal announced at its end);
- a synchronizing literal over ``max_literal`` (or one that would take the command over
  ``max_command``): ``BAD [TOOBIG]``, no continuation is sent, so the client abandons the command;
- a non-synchronizing literal over the limit: ``BAD [TOOBIG]`` and its bytes are counted off and
  dropped as they arrive (never buffered) together with the rest of that command; when it announces
  more than ``4 * max_literal`` the error is fatal instead, as draining it is not worth the time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CommandFrame", "CommandFramer", "FrameError", "LiteralWanted", "literal_marker"]

_TAG = re.compile(rb"[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c\x7e]+")
_TAIL = 32
_COMPACT_AT = 1 << 16


@dataclass(slots=True)
class CommandFrame:
    parts: list[bytes]
    tag: str | None


@dataclass(slots=True)
class LiteralWanted:
    """A synchronizing literal was accepted: the client needs a continuation request."""

    tag: str | None


@dataclass(slots=True)
class FrameError:
    tag: str | None
    code: str | None
    text: str
    fatal: bool = False


class _Eof:
    pass


EOF = _Eof()
Frame = CommandFrame | LiteralWanted | FrameError | _Eof


def extract_tag(line: bytes) -> str | None:
    """The tag a command line starts with, if it is a valid one."""
    m = _TAG.match(line)
    if m is None or (m.end() < len(line) and line[m.end()] != 0x20):
        return None
    return m.group().decode("ascii")


def _inside_quote(line: bytes, end: int) -> bool:
    """Whether ``end`` falls inside a quoted string of ``line`` (linear: each byte is passed once)."""
    j = 0
    backslash = -1
    while True:
        k = line.find(b'"', j, end)
        if k < 0:
            return False
        j = k + 1
        while True:
            q = line.find(b'"', j, end)
            if q < 0:
                return True
            if backslash < j:
                backslash = line.find(b"\\", j, end)
                if backslash < 0:
                    backslash = end
            if backslash < q:
                j = backslash + 2
                continue
            j = q + 1
            break


def literal_marker(line: bytes) -> tuple[int, bool, bool] | None:
    """``(size, synchronizing, literal8)`` when the line ends by announcing a literal."""
    if not line.endswith(b"}"):
        return None
    i = line.rfind(b"{", max(0, len(line) - 14))
    if i < 0:
        return None
    body = line[i + 1 : -1]
    sync = True
    if body.endswith(b"+"):
        sync = False
        body = body[:-1]
    if not body or not body.isdigit() or len(body) > 12:
        return None
    if _inside_quote(line, i):
        return None
    binary = i > 0 and line[i - 1] == 0x7E
    return int(body), sync, binary


class CommandFramer:
    """Incremental framing state; the connection asks for one frame at a time."""

    __slots__ = (
        "_buf", "_discarding", "_drop", "_literal", "_parts", "_pos", "_scan", "_size", "_skipping_line",
        "_tag", "_tail", "eof", "max_command", "max_line", "max_literal",
    )

    def __init__(self, max_line: int, max_literal: int, max_command: int) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_command = max_command
        self._buf = bytearray()
        self._pos = 0
        self._scan = 0  # bytes before this absolute index hold no LF of the current line
        self._parts: list[bytes] = []
        self._size = 0
        self._tag: str | None = None
        self._literal = -1  # bytes of a wanted literal still to come
        self._drop = 0  # bytes of a refused non-synchronizing literal still to drop
        self._skipping_line = False
        self._tail = b""
        self._discarding = False  # the current command was refused; skip to its end
        self.eof = False

    @property
    def pending_bytes(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if not data:
            self.eof = True
            return
        if self._pos >= _COMPACT_AT and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._scan -= self._pos
            self._pos = 0
        self._buf += data

    def take_pending(self) -> bytes:
        """Remove and return the input not consumed yet (only between commands: see ``in_command``)."""
        data = bytes(self._buf[self._pos:])
        self._buf = bytearray()
        self._pos = 0
        self._scan = 0
        return data

    def release_if_consumed(self) -> None:
        """Give back the input buffer when everything in it was used: an idle connection should not keep
        the capacity its last command (say a large APPEND) grew it to."""
        if self._pos and self._pos == len(self._buf) and not self._parts:
            self._buf = bytearray()
            self._pos = 0
            self._scan = 0

    def in_command(self) -> bool:
        return bool(self._parts) or self._discarding or self._literal >= 0

    def holds_partial_command(self) -> bool:
        """Some input is unconsumed and may be part of a command not complete yet: anything but whole
        lines without a literal outside any command. Cheap (two scans in C), and conservative: any ``{``
        counts as a literal."""
        pos = self._pos
        buf = self._buf
        if len(buf) == pos:
            return False
        if self._parts or self._discarding or self._literal >= 0 or self._drop or self._skipping_line:
            return True
        return buf[-1] != 0x0A or buf.find(b"{", pos) >= 0

    # -- raw lines (IDLE's DONE, SASL replies) -------------------------------------------------------
    def next_raw_line(self) -> bytes | FrameError | None:
        """One whole line outside any command; None when more data is needed (or the line is skipped)."""
        while True:
            line = self._take_line()
            if not isinstance(line, _LongLine):
                return line
            if not line.reported:
                return FrameError(None, "TOOBIG", "Line too long")

    # -- commands --------------------------------------------------------------------------------------
    def next_frame(self) -> Frame | None:
        """The next frame, or None when more data is needed (EOF when the input ended)."""
        while True:
            if self._drop:
                n = min(len(self._buf) - self._pos, self._drop)
                self._pos += n
                self._scan = self._pos
                self._drop -= n
                if self._drop:
                    return self._need()
                continue
            if self._literal >= 0:
                if len(self._buf) - self._pos < self._literal:
                    return self._need()
                end = self._pos + self._literal
                self._parts.append(bytes(self._buf[self._pos : end]))
                self._size += self._literal
                self._pos = self._scan = end
                self._literal = -1
                continue
            line = self._take_line()
            if line is None:
                return self._need()
            if isinstance(line, _LongLine):
                err: FrameError | None = None
                if not self._discarding and not line.reported:
                    err = FrameError(self._tag if self._parts else line.tag, "TOOBIG", "Line too long")
                    self._reset_command()
                    self._discarding = True
                if line.complete:
                    fatal = self._after_discarded_line(line.tail)
                    if fatal is not None:
                        return fatal
                if err is not None:
                    return err
                continue
            result = self._on_line(line)
            if result is not None:
                return result

    def _need(self) -> Frame | None:
        return EOF if self.eof else None

    def _reset_command(self) -> None:
        self._parts = []
        self._size = 0

    def _after_discarded_line(self, line: bytes) -> FrameError | None:
        """A line of a refused command ended: drop the literal it announces, or end the command."""
        marker = literal_marker(line)
        if marker is not None and not marker[1]:
            if marker[0] > 4 * self.max_literal:
                return FrameError(None, "TOOBIG", "Literal far too large", fatal=True)
            self._drop = marker[0]
        else:
            self._discarding = False
        return None

    def _on_line(self, line: bytes) -> Frame | None:
        if self._discarding:
            return self._after_discarded_line(line)
        marker = literal_marker(line)
        if not self._parts:
            self._tag = extract_tag(line)
        if marker is None:
            self._parts.append(line)
            frame = CommandFrame(self._parts, self._tag)
            self._reset_command()
            return frame
        size, sync, _binary = marker
        self._size += len(line)
        if size > self.max_literal or self._size + size > self.max_command:
            tag = self._tag
            self._reset_command()
            if sync:
                return FrameError(tag, "TOOBIG", "Literal too large")
            if size > 4 * self.max_literal:
                return FrameError(tag, "TOOBIG", "Literal far too large", fatal=True)
            self._discarding = True
            self._drop = size
            return FrameError(tag, "TOOBIG", "Literal too large")
        self._parts.append(line)
        self._literal = size
        return LiteralWanted(self._tag) if sync else None

    def _take_line(self) -> bytes | _LongLine | None:
        """A line without its line end, or a report about an over-long one (skipped, never buffered)."""
        buf = self._buf
        nl = buf.find(b"\n", max(self._scan, self._pos))
        if nl < 0:
            self._scan = len(buf)
            if self._skipping_line:
                self._tail = (self._tail + bytes(buf[max(self._pos, len(buf) - _TAIL) :]))[-_TAIL:]
                self._pos = len(buf)
                return None
            if len(buf) - self._pos > self.max_line + 1:
                tag = extract_tag(bytes(buf[self._pos : self._pos + 80]))
                self._tail = bytes(buf[-_TAIL:])
                self._pos = len(buf)
                self._skipping_line = True
                return _LongLine(tag, b"", complete=False)
            return None
        end = nl - 1 if nl > self._pos and buf[nl - 1] == 0x0D else nl
        if self._skipping_line:
            tail = (self._tail + bytes(buf[max(self._pos, end - _TAIL) : end]))[-_TAIL:]
            self._pos = self._scan = nl + 1
            self._skipping_line = False
            self._tail = b""
            return _LongLine(None, tail, complete=True, reported=True)
        if end - self._pos > self.max_line:
            tag = extract_tag(bytes(buf[self._pos : self._pos + 80]))
            tail = bytes(buf[max(self._pos, end - _TAIL) : end])
            self._pos = self._scan = nl + 1
            return _LongLine(tag, tail, complete=True)
        line = bytes(buf[self._pos : end])
        self._pos = self._scan = nl + 1
        return line


@dataclass(slots=True)
class _LongLine:
    tag: str | None
    tail: bytes
    complete: bool
    reported: bool = False
