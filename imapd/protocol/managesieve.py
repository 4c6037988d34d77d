"""ManageSieve (RFC 5804) wire syntax, sans-IO: bytes in, commands out; responses to bytes.

A command is one line of atoms, numbers, quoted strings and literals (``{n+}`` or ``{n}`` then n
octets, the line continuing after them). Nothing here waits: :meth:`CommandReader.feed` takes what
arrived and :meth:`CommandReader.next_command` returns a complete command or None; input beyond the
limits is a :class:`ManageSieveSyntaxError` (the connection answers BYE).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CommandReader", "ManageSieveCommand", "ManageSieveSyntaxError", "quoted", "response", "string"]


class ManageSieveSyntaxError(Exception):
    def __init__(self, text: str, *, fatal: bool = False) -> None:
        super().__init__(text)
        self.fatal = fatal


@dataclass(frozen=True)
class ManageSieveCommand:
    name: str  # upper case
    args: tuple[str | int, ...]  # strings decoded (UTF-8), numbers as int


_TOKEN = re.compile(rb'[ ]*(?:(?P<lit>\{(?P<n>[0-9]{1,10})(?P<plus>\+?)\}\r\n)|(?P<q>"(?:[^"\\\r\n]|\\["\\])*")'
                    rb'|(?P<num>[0-9]{1,10})(?=[ \r])|(?P<atom>[A-Za-z][A-Za-z0-9_-]*)|(?P<eol>\r\n))')


class CommandReader:
    def __init__(self, max_line: int = 8192, max_literal: int = 1024 * 1024) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self._buf = bytearray()
        # Set while a SASL exchange waits for the client's response: a line that is only a string.
        self.sasl_response = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def take_buffer(self) -> bytes:
        """What is buffered and not yet a command (moved to a reader with other limits after login)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def next_command(self) -> ManageSieveCommand | None:
        """A complete command from the buffer (consumed), or None when more input is needed.

        Raises :class:`ManageSieveSyntaxError` for a malformed line (consumed up to its end).
        """
        buf = bytes(self._buf)
        pos = 0
        tokens: list[str | int] = []
        named = False
        while True:
            if pos >= len(buf):
                self._check_line(buf)
                return None
            m = _TOKEN.match(buf, pos)
            if m is None:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    self._check_line(buf)
                    return None
                del self._buf[: end + 2]
                raise ManageSieveSyntaxError("Syntax error in command line")
            if m.group("eol") is not None:
                del self._buf[: m.end()]
                if not tokens:
                    raise ManageSieveSyntaxError("Empty command")
                if self.sasl_response:
                    return ManageSieveCommand("", tuple(tokens))
                name = tokens[0]
                if not named or not isinstance(name, str):
                    raise ManageSieveSyntaxError("A command starts with its name")
                return ManageSieveCommand(name.upper(), tuple(tokens[1:]))
            if m.group("lit") is not None:
                size = int(m.group("n"))
                if size > self.max_literal:
                    raise ManageSieveSyntaxError("Literal too large", fatal=True)
                start = m.end()
                if len(buf) < start + size:
                    return None
                tokens.append(_utf8(buf[start:start + size]))
                pos = start + size
                continue
            if m.group("q") is not None:
                raw = m.group("q")[1:-1]
                tokens.append(_utf8(re.sub(rb'\\(["\\])', rb"\1", raw)))
            elif m.group("num") is not None:
                tokens.append(int(m.group("num")))
            else:
                named = named or not tokens  # an atom first: the command's name
                tokens.append(m.group("atom").decode("ascii"))
            pos = m.end()

    def _check_line(self, buf: bytes) -> None:
        tail = buf.rfind(b"\r\n")
        if len(buf) - (tail + 2 if tail >= 0 else 0) > self.max_line:
            raise ManageSieveSyntaxError("Line too long", fatal=True)


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ManageSieveSyntaxError("Strings must be UTF-8") from None


def quoted(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8") + b'"'


def string(text: str) -> bytes:
    """A quoted string when it can be one, else a literal (RFC 5804 4: the server's ``{n}``)."""
    data = text.encode("utf-8")
    if len(data) < 1024 and not re.search(rb"[\r\n\0]", data):
        return quoted(text)
    return b"{%d}\r\n" % len(data) + data


def response(status: str, text: str = "", code: str | None = None) -> bytes:
    """``OK``/``NO``/``BYE`` [``(CODE)``] [text], CRLF-terminated."""
    out = status.encode()
    if code:
        out += b" (" + code.encode("utf-8") + b")"
    if text:
        out += b" " + string(text)
    return out + b"\r\n"
