"""The generic value model for data the session puts into responses (FETCH items, LIST extensions).

``None`` -> NIL, ``int`` -> number, ``str`` -> quoted string or literal (the writer picks),
``bytes`` -> always a literal, :class:`Atom` -> an unquoted atom or flag, :class:`Literal8` -> ``~{n}``,
list/tuple -> parenthesised list, :class:`Raw` -> bytes already serialized (the caller vouches for them),
:class:`FileLiteral` -> a literal whose octets the connection sends itself (from a file).
"""

from __future__ import annotations

import datetime

import msgspec

__all__ = ["Atom", "FileLiteral", "Literal8", "Raw", "UndecodableName", "Value", "format_internaldate"]


class UndecodableName(str):
    """A mailbox name (or LIST pattern) that is valid IMAP syntax but not valid modified UTF-7, e.g.
    ``a&b``. It names no mailbox (SELECT answers NO, a LIST pattern matches nothing) and cannot be
    created; the text is the name as the client sent it. A ``str`` so commands keep their types."""

    __slots__ = ()


class Atom(msgspec.Struct, frozen=True):
    """An atom written as is, e.g. a flag ``\\Seen`` or a body type keyword."""

    text: str


class Literal8(msgspec.Struct, frozen=True):
    """Binary data written as ``~{n}`` (RFC 3516 BINARY responses)."""

    data: bytes


class Raw(msgspec.Struct, frozen=True):
    """Pre-serialized bytes inserted verbatim (cached BODYSTRUCTURE, ENVELOPE...)."""

    data: bytes


class FileLiteral(msgspec.Struct, frozen=True):
    """A literal of ``size`` octets (``~{n}`` when ``binary``) that the writer only announces: it leaves
    ``source`` in its output where the octets go, and the connection sends them (a message file with
    sendfile). The caller vouches that exactly ``size`` octets will follow."""

    size: int
    binary: bool
    source: object


Value = None | int | str | bytes | Atom | Literal8 | Raw | FileLiteral | list["Value"] | tuple["Value", ...]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_internaldate(when: datetime.datetime) -> str:
    """``dd-Mon-yyyy hh:mm:ss +zzzz`` for INTERNALDATE (naive datetimes are taken as UTC)."""
    offset = when.utcoffset() or datetime.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{when.day:2d}-{_MONTHS[when.month - 1]}-{when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}"
    )
