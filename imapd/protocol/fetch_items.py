"""What a FETCH asks for: simple attributes, body/binary sections with partial ranges, BINARY.SIZE.

Macros (ALL, FAST, FULL) are expanded by the parser, so the session only sees these three types.
Each type knows the key the FETCH *response* uses for it, which differs from the request
(no ``.PEEK``, partial reduced to ``<origin>``).
"""

from __future__ import annotations

import msgspec

__all__ = [
    "SIMPLE_ATTRS",
    "BinarySize",
    "BodySection",
    "FetchAttr",
    "FetchBody",
    "FetchItem",
    "FetchPreview",
    "SECTION_TEXTS",
]

SIMPLE_ATTRS = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "UID",
        "BODY",
        "BODYSTRUCTURE",
        "MODSEQ",
        "EMAILID",
        "THREADID",
        "SAVEDATE",
    }
)
SECTION_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})


class FetchAttr(msgspec.Struct, frozen=True):
    """A fetch attribute without arguments, e.g. ``FLAGS`` or ``RFC822.SIZE`` (upper case)."""

    name: str

    def response_key(self) -> str:
        return self.name


class BodySection(msgspec.Struct, frozen=True):
    """``section-spec``: part numbers, then HEADER / HEADER.FIELDS[.NOT] (fields) / TEXT / MIME."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        out = ".".join(map(str, self.part))
        if self.text is not None:
            out = f"{out}.{self.text}" if out else self.text
            if self.fields:
                out += " (" + " ".join(_field(f) for f in self.fields) + ")"
        return out


def _field(name: str) -> str:
    from .wire import astring_text

    return astring_text(name)


class FetchBody(msgspec.Struct, frozen=True):
    """``BODY[section]<partial>``, ``BODY.PEEK[...]``, ``BINARY[...]``, ``BINARY.PEEK[...]``."""

    section: BodySection = BodySection()
    partial: tuple[int, int] | None = None  # (origin, count)
    peek: bool = False
    binary: bool = False

    def request_key(self) -> str:
        name = ("BINARY" if self.binary else "BODY") + (".PEEK" if self.peek else "")
        out = f"{name}[{self.section}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}.{self.partial[1]}>"
        return out

    def response_key(self) -> str:
        out = ("BINARY" if self.binary else "BODY") + f"[{self.section}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}>"
        return out


class BinarySize(msgspec.Struct, frozen=True):
    """``BINARY.SIZE[part]`` (RFC 3516)."""

    part: tuple[int, ...] = ()

    def response_key(self) -> str:
        return "BINARY.SIZE[" + ".".join(map(str, self.part)) + "]"

    request_key = response_key


class FetchPreview(msgspec.Struct, frozen=True):
    """``PREVIEW`` / ``PREVIEW (LAZY)`` (RFC 8970): ``lazy`` lets the server answer NIL when the preview
    is not computed yet."""

    lazy: bool = False

    def response_key(self) -> str:
        return "PREVIEW"

    def request_key(self) -> str:
        return "PREVIEW (LAZY)" if self.lazy else "PREVIEW"


FetchItem = FetchAttr | FetchBody | BinarySize | FetchPreview
