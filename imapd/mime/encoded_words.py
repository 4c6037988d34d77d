"""RFC 2047 encoded-words and charset decoding, tolerant and never raising."""

from __future__ import annotations

import binascii
import codecs
import functools
import re

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*)\?=")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


@functools.lru_cache(maxsize=256)
def _codec_name(charset: str) -> str | None:
    """The Python text codec for a MIME charset name, None when unknown or not a text codec."""
    charset = charset.strip().strip('"').lower()
    if not charset or charset in ("us-ascii", "ascii", "unknown-8bit", "x-unknown", "default"):
        return None
    try:
        info = codecs.lookup(charset)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def decode_charset(data: bytes, charset: str | None) -> str:
    """Decode body or header bytes in ``charset``; errors are replaced.

    Unknown, missing or ``us-ascii`` charsets (often mislabelled 8-bit text) are tried as UTF-8, then
    latin-1.
    """
    name = _codec_name(charset) if charset else None
    if name is not None:
        try:
            return data.decode(name, "replace")
        except Exception:  # a codec may still fail on odd input (e.g. utf-7 state errors)
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_base64(data: bytes) -> bytes:
    """Lenient base64: ignores characters outside the alphabet and fixes truncated padding."""
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        clean = _NOT_BASE64.sub(b"", data.split(b"=", 1)[0])
        clean = clean[: len(clean) - len(clean) % 4] if len(clean) % 4 == 1 else clean
        clean += b"=" * (-len(clean) % 4)
        try:
            return binascii.a2b_base64(clean)
        except binascii.Error:  # pragma: no cover - the cleaned input is always valid
            return b""


def _word_bytes(encoding: str, text: str) -> bytes:
    data = text.encode("utf-8", "surrogateescape")
    if encoding in "Qq":
        return binascii.a2b_qp(data, header=True)
    return decode_base64(data)


def decode_words(value: str) -> str:
    """Decode every RFC 2047 encoded-word in ``value``.

    Whitespace between two adjacent encoded-words is dropped, and adjacent words in one charset are
    joined before decoding, so a multi-byte character split across words survives.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pos = 0
    pending_charset: str | None = None
    pending = b""
    for m in _ENCODED_WORD.finditer(value):
        between = value[pos : m.start()]
        charset = m.group(1).split("*", 1)[0]
        data = _word_bytes(m.group(2), m.group(3))
        if pending_charset is not None and between.strip(" \t\r\n") == "":
            if charset.lower() == pending_charset.lower():
                pending += data
            else:
                out.append(decode_charset(pending, pending_charset))
                pending_charset, pending = charset, data
        else:
            if pending_charset is not None:
                out.append(decode_charset(pending, pending_charset))
            out.append(between)
            pending_charset, pending = charset, data
        pos = m.end()
    if pending_charset is not None:
        out.append(decode_charset(pending, pending_charset))
    out.append(value[pos:])
    return "".join(out)
