"""A cursor over one framed command (lines with literals spliced between them) and its tokens.

The grammar helpers here (atoms, strings, numbers, sequence sets, dates) raise :class:`ParseError`;
the command parser turns that into a ``BAD`` with the command's tag. Scanning uses simple character
class regexes only (no backtracking), so time stays linear in the input.
"""

from __future__ import annotations

import datetime
import re

from .. import mutf7
from .sequence import SequenceSet
from .values import UndecodableName

__all__ = ["MONTHS", "ParseError", "TokenReader"]

_ATOM = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\\]]+")
_ASTRING = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\]+")
_LIST_MAILBOX = re.compile(rb"[^\x00-\x20\x7f-\xff(){\"\\]+")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_UNESCAPE = re.compile(rb'\\(["\\])')
_NUMBER = re.compile(rb"[0-9]+")
_SEQSET = re.compile(rb"[0-9:*,$]+")
_LITERAL = re.compile(rb"(~?)\{([0-9]+)(\+?)\}")
_DATE = re.compile(rb'"?([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})"?')
_DATETIME = re.compile(rb'"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"')
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MAX_NUMBER64 = (1 << 63) - 1


class ParseError(Exception):
    """The command does not match the grammar; ``code`` is an optional response code."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class TokenReader:
    """Reads tokens left to right across ``parts = [line, literal, line, ..., line]``."""

    __slots__ = ("depth", "idx", "line", "max_nesting", "parts", "pos", "utf8")

    def __init__(self, parts: list[bytes], *, utf8: bool = False, max_nesting: int = 64) -> None:
        self.parts = parts
        self.idx = 0
        self.line = parts[0]
        self.pos = 0
        self.utf8 = utf8
        self.max_nesting = max_nesting
        self.depth = 0

    def check_no_nul(self) -> None:
        """NUL is never allowed outside literal8 (checked once per line, in C)."""
        for i in range(0, len(self.parts), 2):
            if b"\x00" in self.parts[i]:
                raise ParseError("NUL byte in command")

    # -- position ----------------------------------------------------------------------------------------
    def at_end(self) -> bool:
        return self.pos >= len(self.line) and self.idx == len(self.parts) - 1

    def end(self) -> None:
        if not self.at_end():
            raise ParseError("Unexpected extra arguments")

    def peek(self) -> int:
        return self.line[self.pos] if self.pos < len(self.line) else -1

    def take(self, char: bytes) -> bool:
        if self.line.startswith(char, self.pos):
            self.pos += len(char)
            return True
        return False

    def expect(self, char: bytes, what: str | None = None) -> None:
        if not self.take(char):
            raise ParseError(f"Expected {what or char.decode()!r}")

    def sp(self) -> None:
        if not self.take(b" "):
            raise ParseError("Expected a space" if not self.at_end() else "Missing arguments")

    def open(self) -> None:
        """Consume ``(`` and count nesting (a parenthesis bomb is refused, not recursed into)."""
        self.expect(b"(")
        self.depth += 1
        if self.depth > self.max_nesting:
            raise ParseError("Too deeply nested", "LIMIT")

    def close(self) -> None:
        self.expect(b")")
        self.depth -= 1

    def _match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        m = pattern.match(self.line, self.pos)
        if m is None:
            raise ParseError(f"Expected {what}")
        self.pos = m.end()
        return m.group()

    # -- tokens ------------------------------------------------------------------------------------------
    def atom(self) -> str:
        return self._match(_ATOM, "an atom").decode("ascii")

    def keyword(self) -> str:
        """An atom, upper-cased (command names, options, search keys)."""
        return self.atom().upper()

    def number(self, *, nonzero: bool = False, bits: int = 32) -> int:
        raw = self._match(_NUMBER, "a number")
        value = int(raw) if len(raw) <= 20 else _MAX_NUMBER64 + 1
        if value >= 1 << bits or (bits == 64 and value > _MAX_NUMBER64):
            raise ParseError("Number out of range")
        if nonzero and value == 0:
            raise ParseError("Expected a non-zero number")
        return value

    def sequence_set(self) -> SequenceSet:
        raw = self._match(_SEQSET, "a sequence set").decode("ascii")
        try:
            return SequenceSet.parse(raw)
        except ValueError as exc:
            raise ParseError(str(exc)) from None

    def _literal(self) -> tuple[bytes, bool] | None:
        m = _LITERAL.match(self.line, self.pos)
        if m is None:
            return None
        if m.end() != len(self.line) or self.idx + 1 >= len(self.parts):
            raise ParseError("Literal must end the line")
        data = self.parts[self.idx + 1]
        if len(data) != int(m.group(2)):  # pragma: no cover - the framer guarantees it
            raise ParseError("Literal size mismatch")
        self.idx += 2
        self.line = self.parts[self.idx]
        self.pos = 0
        return data, bool(m.group(1))

    def quoted(self) -> bytes | None:
        if self.peek() != 0x22:
            return None
        m = _QUOTED.match(self.line, self.pos)
        if m is None:
            raise ParseError("Unterminated or malformed quoted string")
        self.pos = m.end()
        raw = m.group(1)
        return _UNESCAPE.sub(rb"\1", raw) if b"\\" in raw else raw

    def string(self, *, allow_binary: bool = False) -> bytes:
        q = self.quoted()
        if q is not None:
            return q
        lit = self._literal()
        if lit is None:
            raise ParseError("Expected a string")
        data, binary = lit
        if binary and not allow_binary:
            raise ParseError("literal8 not allowed here")
        if not binary and b"\x00" in data:
            raise ParseError("NUL in literal")
        return data

    def astring(self) -> bytes:
        c = self.peek()
        if c == 0x22 or c == 0x7B:
            return self.string()
        return self._match(_ASTRING, "a string")

    def nstring(self) -> bytes | None:
        if self.line.startswith((b"NIL", b"nil", b"Nil"), self.pos):
            m = _ATOM.match(self.line, self.pos)
            if m is not None and m.end() - self.pos == 3:
                self.pos += 3
                return None
        return self.string()

    def list_mailbox(self) -> bytes:
        c = self.peek()
        if c == 0x22 or c == 0x7B:
            return self.string()
        return self._match(_LIST_MAILBOX, "a mailbox pattern")

    def text(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("Invalid UTF-8") from None

    def astring_str(self) -> str:
        return self.text(self.astring())

    def mailbox_name(self, raw: bytes, *, normalize_inbox: bool = True) -> str:
        """Decode a mailbox name (UTF-8 in UTF8=ACCEPT mode, modified UTF-7 otherwise)."""
        if normalize_inbox and len(raw) == 5 and raw.upper() == b"INBOX":
            return "INBOX"
        if self.utf8:
            return self.text(raw)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ParseError("Mailbox name is not valid modified UTF-7") from None
        try:
            return mutf7.decode(text)
        except mutf7.MUTF7Error:
            # Valid syntax, just not a name any mailbox can have: the command decides (NO, empty LIST).
            return UndecodableName(text)

    def mailbox(self) -> str:
        return self.mailbox_name(self.astring())

    def date(self) -> datetime.date:
        m = _DATE.match(self.line, self.pos)
        quoted = self.peek() == 0x22
        if m is None or (m.group().endswith(b'"') != quoted) or (quoted and len(m.group()) < 2):
            raise ParseError("Expected a date")
        self.pos = m.end()
        try:
            month = MONTHS.index(m.group(2).upper().decode()) + 1
            return datetime.date(int(m.group(3)), month, int(m.group(1)))
        except ValueError:
            raise ParseError("Invalid date") from None

    def date_time(self) -> datetime.datetime:
        m = _DATETIME.match(self.line, self.pos)
        if m is None:
            raise ParseError("Expected a date-time")
        self.pos = m.end()
        g = [x.decode() for x in m.groups()]
        try:
            month = MONTHS.index(g[1].upper()) + 1
            offset = datetime.timedelta(hours=int(g[7]), minutes=int(g[8]))
            if offset >= datetime.timedelta(hours=24):
                raise ValueError
            tz = datetime.timezone(-offset if g[6] == "-" else offset)
            return datetime.datetime(int(g[2]), month, int(g[0]), int(g[3]), int(g[4]), int(g[5]), tzinfo=tz)
        except ValueError:
            raise ParseError("Invalid date-time") from None
