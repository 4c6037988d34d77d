"""RFC 5464 commands: GETMETADATA and SETMETADATA (registered in :mod:`.command_parser`).

The RFC's grammar puts GETMETADATA's options before the mailbox, its examples after it; clients send
both (Dovecot and Cyrus accept both), so we do too. Entry names are parsed as astrings; whether they
are valid names is the store's to say (it answers NO, not BAD).
"""

from __future__ import annotations

from . import commands as c
from .reader import ParseError, TokenReader

__all__ = ["parse_getmetadata", "parse_setmetadata"]


def _options(r: TokenReader) -> tuple[int | None, int | None]:
    """``(MAXSIZE n DEPTH d)`` -> (maxsize, depth); depth ``infinity`` is None."""
    maxsize: int | None = None
    depth: int | None = 0
    seen: set[str] = set()
    r.open()
    while True:
        name = r.keyword()
        if name in seen:
            raise ParseError(f"GETMETADATA option {name} given twice")
        seen.add(name)
        r.sp()
        if name == "MAXSIZE":
            maxsize = r.number()
        elif name == "DEPTH":
            value = r.atom().lower()
            if value not in ("0", "1", "infinity"):
                raise ParseError("DEPTH must be 0, 1 or infinity")
            depth = None if value == "infinity" else int(value)
        else:
            raise ParseError(f"Unknown GETMETADATA option {name}")
        if r.take(b")"):
            break
        r.sp()
    r.depth -= 1
    return maxsize, depth


def _starts_options(r: TokenReader) -> bool:
    """At ``(``: options (``(MAXSIZE``, ``(DEPTH``) rather than a list of entries (``(/private...``)."""
    return r.peek() == 0x28 and r.line[r.pos + 1 : r.pos + 2].upper() in (b"M", b"D")


def _entries(r: TokenReader) -> tuple[str, ...]:
    if r.peek() != 0x28:
        return (r.astring_str(),)
    r.open()
    out = [r.astring_str()]
    while not r.take(b")"):
        r.sp()
        out.append(r.astring_str())
    r.depth -= 1
    return tuple(out)


def parse_getmetadata(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    maxsize: int | None = None
    depth: int | None = 0
    options = _starts_options(r)
    if options:
        maxsize, depth = _options(r)
        r.sp()
    mailbox = r.mailbox()
    r.sp()
    if not options and _starts_options(r):
        maxsize, depth = _options(r)
        r.sp()
    return c.GetMetadata(tag, mailbox, _entries(r), maxsize, depth)


def parse_setmetadata(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    r.open()
    entries: list[tuple[str, bytes | None]] = []
    while True:
        name = r.astring_str()
        r.sp()
        value = r.string(allow_binary=True) if r.peek() == 0x7E else r.nstring()
        entries.append((name, value))
        if r.take(b")"):
            break
        r.sp()
    r.depth -= 1
    return c.SetMetadata(tag, mailbox, tuple(entries))
