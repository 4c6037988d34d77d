"""Parses FETCH attribute lists (RFC 3501 6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ)."""

from __future__ import annotations

import re

from .fetch_items import (
    SECTION_TEXTS,
    SIMPLE_ATTRS,
    BinarySize,
    BodySection,
    FetchAttr,
    FetchBody,
    FetchItem,
    FetchPreview,
)
from .reader import ParseError, TokenReader
from .search_parser import header_name

__all__ = ["parse_fetch_items"]

_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SECTION = re.compile(rb"[A-Za-z0-9.]*")
_PARTIAL = re.compile(rb"<([0-9]{1,10})\.([0-9]{1,10})>")
_MACROS: dict[str, tuple[FetchItem, ...]] = {
    "FAST": (FetchAttr("FLAGS"), FetchAttr("INTERNALDATE"), FetchAttr("RFC822.SIZE")),
    "ALL": (FetchAttr("FLAGS"), FetchAttr("INTERNALDATE"), FetchAttr("RFC822.SIZE"), FetchAttr("ENVELOPE")),
    "FULL": (
        FetchAttr("FLAGS"),
        FetchAttr("INTERNALDATE"),
        FetchAttr("RFC822.SIZE"),
        FetchAttr("ENVELOPE"),
        FetchAttr("BODY"),
    ),
}


def parse_fetch_items(r: TokenReader) -> tuple[FetchItem, ...]:
    """A macro, one attribute, or a parenthesised list of attributes."""
    if r.peek() == 0x28:
        r.open()
        items = [_fetch_att(r)]
        while not r.take(b")"):
            r.sp()
            items.append(_fetch_att(r))
        r.depth -= 1
        return tuple(items)
    m = _NAME.match(r.line, r.pos)
    if m is not None and m.group().upper().decode() in _MACROS and r.line[m.end() : m.end() + 1] != b"[":
        r.pos = m.end()
        return _MACROS[m.group().upper().decode()]
    return (_fetch_att(r),)


_PREVIEW_MODS = re.compile(rb" \(([A-Za-z0-9 ]*)\)")


def _preview(r: TokenReader) -> FetchPreview:
    """RFC 8970: ``"PREVIEW" [SP "(" preview-mod *(SP preview-mod) ")"]``, ``preview-mod = "LAZY"``.

    ``FETCH 1 PREVIEW (CHANGEDSINCE 5)`` is the same shape with FETCH modifiers after a lone PREVIEW, so a
    parenthesised list is taken as preview modifiers only when it holds nothing but LAZY.
    """
    m = _PREVIEW_MODS.match(r.line, r.pos)
    if m is None:
        return FetchPreview()
    mods = m.group(1).upper().split(b" ")
    if not all(mod == b"LAZY" for mod in mods):
        return FetchPreview()
    r.pos = m.end()
    return FetchPreview(lazy=True)


def _part_numbers(parts: list[str]) -> tuple[int, ...]:
    out: list[int] = []
    for p in parts:
        if not p.isdigit() or p.startswith("0") or len(p) > 10:
            raise ParseError("Invalid section part number")
        out.append(int(p))
    return tuple(out)


def _fetch_att(r: TokenReader) -> FetchItem:
    m = _NAME.match(r.line, r.pos)
    if m is None:
        raise ParseError("Expected a fetch attribute")
    name = m.group().decode().upper()
    r.pos = m.end()
    if r.peek() != 0x5B:  # "["
        if name == "PREVIEW":
            return _preview(r)
        if name in SIMPLE_ATTRS:
            return FetchAttr(name)
        raise ParseError(f"Unknown fetch attribute {name}")
    r.pos += 1
    if name == "BINARY.SIZE":
        raw = r._match(_SECTION, "a section").decode()
        r.expect(b"]")
        return BinarySize(_part_numbers(raw.split(".")) if raw else ())
    if name not in ("BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK"):
        raise ParseError(f"Unknown fetch attribute {name}")
    binary = name.startswith("BINARY")
    raw = r._match(_SECTION, "a section").decode().upper()
    pieces = raw.split(".") if raw else []
    if "" in pieces:  # "1." or "1..2": section-part is nz-number *("." nz-number) (RFC 3501 9)
        raise ParseError(f"Invalid section {raw}")
    n = 0
    while n < len(pieces) and pieces[n].isdigit():
        n += 1
    part = _part_numbers(pieces[:n])
    text = ".".join(pieces[n:]) or None
    fields: tuple[str, ...] = ()
    if text is not None:
        if binary or text not in SECTION_TEXTS or (text == "MIME" and not part):
            raise ParseError(f"Invalid section {raw}")
        if text.startswith("HEADER.FIELDS"):
            r.sp()
            r.open()
            names = [header_name(r)]
            while not r.take(b")"):
                r.sp()
                names.append(header_name(r))
            r.depth -= 1
            fields = tuple(names)
    r.expect(b"]")
    partial = None
    if r.peek() == 0x3C:  # "<"
        pm = r._match(_PARTIAL, "a partial range <origin.count>")
        g = _PARTIAL.match(pm)
        assert g is not None
        origin, count = int(g.group(1)), int(g.group(2))
        if count == 0 or origin >= 1 << 32 or count >= 1 << 32:
            raise ParseError("Invalid partial range")
        partial = (origin, count)
    return FetchBody(BodySection(part, text, fields), partial, name.endswith(".PEEK"), binary)
