"""Byte-level encoding shared by the response and command writers: strings, atoms, text, names."""

from __future__ import annotations

import re

from .. import mutf7

__all__ = ["astring_text", "encode_str", "mailbox_bytes", "string_bytes", "text_bytes", "is_atom"]

_ATOM = re.compile(r"[^\x00-\x20\x7f-\U0010ffff(){%*\"\\\]]+")
_ASTRING = re.compile(r"[^\x00-\x20\x7f-\U0010ffff(){%*\"\\]+")
_BAD_TEXT = re.compile(r"[\x00\r\n]")
QUOTED_MAX = 1024


def is_atom(text: str) -> bool:
    return _ATOM.fullmatch(text) is not None


def encode_str(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def string_bytes(value: str | bytes, utf8: bool, plus: bool = False) -> bytes:
    """A quoted string when the IMAP quoting rules allow it, else a literal (``{n+}`` if ``plus``)."""
    if isinstance(value, str):
        if (
            len(value) <= QUOTED_MAX
            and (utf8 or value.isascii())
            and "\r" not in value
            and "\n" not in value
            and "\x00" not in value
        ):
            data = encode_str(value)
            if b'"' in data or b"\\" in data:
                data = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
            return b'"' + data + b'"'
        raw = encode_str(value)
    else:
        raw = bytes(value)
    return (b"{%d+}\r\n" if plus else b"{%d}\r\n") % len(raw) + raw


def astring_text(value: str) -> str:
    """An atom-safe string as is, else quoted (callers guarantee it is quotable ASCII)."""
    if value and _ASTRING.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def text_bytes(value: str, utf8: bool) -> bytes:
    """Human-readable text: never breaks the line (CR/LF/NUL become spaces; 8-bit becomes ``?``)."""
    if _BAD_TEXT.search(value):
        value = _BAD_TEXT.sub(" ", value)
    if utf8:
        return encode_str(value)
    return value.encode("ascii", "replace")


def mailbox_bytes(name: str, utf8: bool, plus: bool = False) -> bytes:
    """A mailbox name on the wire: mUTF-7 unless UTF8=ACCEPT, quoted when possible."""
    return string_bytes(name if utf8 else mutf7.encode(name), utf8, plus)
