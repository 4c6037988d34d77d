"""FETCH ``BODY[section]`` (RFC 3501 6.4.5) and ``BINARY[section]`` (RFC 3516) on raw bytes.

Part numbers index the parts of a message: the children of a multipart, or for a non-multipart message
its body as part 1. Past a MESSAGE/RFC822 part, numbers index the encapsulated message's parts, and
``HEADER``/``TEXT``/``HEADER.FIELDS[.NOT]`` after a part number apply to its encapsulated message.
``MIME`` is the part's own header block. Partial fetches (``<start.count>``) are the caller's job.
"""

from __future__ import annotations

import binascii
from typing import Literal

from imapd.mime.encoded_words import decode_base64
from imapd.mime.tree import MimeNode, build, resolve

SectionKind = Literal["", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"]

_IDENTITY = frozenset(("7BIT", "8BIT", "BINARY"))


class UnknownEncoding(Exception):
    """BINARY on a part whose Content-Transfer-Encoding we cannot decode (answer ``NO [UNKNOWN-CTE]``)."""

    response_code = "UNKNOWN-CTE"

    def __init__(self, encoding: str) -> None:
        super().__init__(f"unknown Content-Transfer-Encoding {encoding!r}")
        self.encoding = encoding


def decode_transfer(data: bytes, encoding: str) -> bytes:
    """Undo a Content-Transfer-Encoding (upper case name); raises :class:`UnknownEncoding`."""
    if encoding in _IDENTITY:
        return data
    if encoding == "BASE64":
        return decode_base64(data)
    if encoding == "QUOTED-PRINTABLE":
        return binascii.a2b_qp(data)
    raise UnknownEncoding(encoding)


def _header_fields(node: MimeNode, fields: tuple[str, ...], keep: bool) -> bytes:
    wanted = {name.lower() for name in fields}
    buf = node.header.buf
    out: list[bytes] = []
    for name, start, _, end in node.header.fields:
        if (name in wanted) == keep:
            line = buf[start:end]
            out.append(line if line.endswith(b"\n") else line + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def _message_section(message: MimeNode, kind: SectionKind, fields: tuple[str, ...]) -> bytes | None:
    buf = message.header.buf
    if kind == "HEADER":
        return buf[message.start : message.body_start]
    if kind == "TEXT":
        return buf[message.body_start : message.end]
    if kind == "HEADER.FIELDS":
        return _header_fields(message, fields, True)
    if kind == "HEADER.FIELDS.NOT":
        return _header_fields(message, fields, False)
    if kind == "":
        return buf[message.start : message.end]
    return None


def section_bytes(raw: bytes, part: tuple[int, ...], kind: SectionKind = "",
                  fields: tuple[str, ...] = ()) -> bytes | None:
    """The bytes of ``BODY[part.kind]`` (``fields`` for ``HEADER.FIELDS[.NOT]``); None when the part
    does not exist or the kind does not apply to it (``MIME`` without a part, ``HEADER`` of a part that
    is not MESSAGE/RFC822)."""
    if not part:
        return None if kind == "MIME" else _message_section(build(raw), kind, fields)
    node = resolve(build(raw), part)
    if node is None:
        return None
    if kind == "":
        return raw[node.body_start : node.end]
    if kind == "MIME":
        return raw[node.start : node.body_start]
    if node.message is None:
        return None
    return _message_section(node.message, kind, fields)


def decode_part(raw: bytes, part: tuple[int, ...]) -> bytes | None:
    """``BINARY[part]``: the part's body with its transfer encoding undone; None for a missing part.

    ``()`` is the whole message, multiparts and encapsulated messages are returned as they are (their
    encoding can only be 7bit/8bit/binary). Raises :class:`UnknownEncoding`.
    """
    if not part:
        return raw
    node = resolve(build(raw), part)
    if node is None:
        return None
    body = raw[node.body_start : node.end]
    if node.children or node.message is not None:
        return body
    return decode_transfer(body, node.encoding)


def binary_size(raw: bytes, part: tuple[int, ...]) -> int | None:
    """``BINARY.SIZE[part]``: octets of :func:`decode_part`; raises :class:`UnknownEncoding`."""
    decoded = decode_part(raw, part)
    return None if decoded is None else len(decoded)
