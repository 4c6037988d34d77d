"""FETCH ``BODY[section]`` (RFC 3501 6.4.5) and ``BINARY[section]`` (RFC 3516) on raw bytes.

Part numbers index the parts of a message: the children of a multipart, or for a non-multipart message
its body as part 1. Past a MESSAGE/RFC822 part, numbers index the encapsulated message's parts, and
``HEADER``/``TEXT``/``HEADER.FIELDS[.NOT]`` after a part number apply to its encapsulated message.
``MIME`` is the part's own header block. Partial fetches (``<start.count>``) are the caller's job.
"""

from __future__ import annotations

import binascii
import re
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
        return decode_quoted_printable(data)
    raise UnknownEncoding(encoding)


_QP_PADDING = re.compile(rb"[ \t]+(?=\r?\n|\Z)")
_QP_SOFT_BREAK = re.compile(rb"=(?:\r?\n|\Z)")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _unescape(m: re.Match[bytes]) -> bytes:
    return bytes((int(m.group(1), 16),))


def decode_quoted_printable(data: bytes) -> bytes:
    """RFC 2045 6.7, which ``binascii.a2b_qp`` does not follow in two places: whitespace at the end of an
    encoded line is transport padding and is deleted (rule 3), so ``=`` followed by whitespace and then
    the line break is a soft line break (rule 5). A malformed ``=`` is kept as it is (the robustness
    advice of 6.7 note (2)); lower-case hex digits are accepted."""
    data = _QP_PADDING.sub(b"", data)
    data = _QP_SOFT_BREAK.sub(b"", data)
    return _QP_ESCAPE.sub(_unescape, data)


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
    is not MESSAGE/RFC822). The stored octets: what goes on the wire is :func:`literal_section`."""
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


def literal_section(raw: bytes, part: tuple[int, ...], kind: SectionKind = "",
                    fields: tuple[str, ...] = ()) -> bytes | None:
    """:func:`section_bytes` as FETCH BODY[...] sends it: a part that holds NUL goes base64
    (:func:`literal_safe`)."""
    if b"\0" not in raw or kind not in ("", "TEXT"):
        return section_bytes(raw, part, kind, fields)
    root = build(raw)
    node = resolve(root, part) if part else root
    if node is None:
        return None
    if not part:
        return literal_safe(raw, root.start if kind == "" else root.body_start, root.end, root)
    if kind == "":
        if not node.children and node.message is None:
            body = raw[node.body_start : node.end]
            return _base64_lines(body) if b"\0" in body else body
        return literal_safe(raw, node.body_start, node.end, root)
    if node.message is None:
        return None
    return literal_safe(raw, node.message.body_start, node.message.end, root)


def literal_safe(raw: bytes, start: int, end: int, root: MimeNode | None = None) -> bytes:
    """``raw[start:end]`` in a form a plain ``{n}`` literal may carry: NUL may not (RFC 3501 4.3, RFC 3516
    4.2; only BINARY's ``~{n}`` may), so every leaf part inside the range whose body holds NUL (it came
    in through a ``~{n}`` APPEND) is re-encoded as base64, its Content-Transfer-Encoding rewritten, as
    peer servers do. The common case, no NUL anywhere, is one ``memchr`` and no copy beyond the slice."""
    data = raw[start:end]
    if b"\0" not in data:
        return data
    if root is None:
        root = build(raw)
    out: list[bytes] = []
    pos = start
    for node in _leaves(root):
        if node.body_start < start or node.end > end or b"\0" not in raw[node.body_start : node.end]:
            continue
        if node.start >= start:
            out.append(raw[pos : node.start])
            out.append(_base64_header(node))
        else:  # the range starts inside this part's header block (it cannot: ranges start at a part)
            out.append(raw[pos : node.body_start])
        out.append(_base64_lines(raw[node.body_start : node.end]))
        pos = node.end
    out.append(raw[pos:end])
    return b"".join(out)


def _leaves(node: MimeNode) -> list[MimeNode]:
    if node.message is not None:
        return _leaves(node.message)
    if node.children:
        return [leaf for child in node.children for leaf in _leaves(child)]
    return [node]


def _base64_header(node: MimeNode) -> bytes:
    """The part's header block with ``Content-Transfer-Encoding: base64`` in place of its own."""
    buf = node.header.buf
    out: list[bytes] = []
    pos = node.start
    replaced = False
    for name, start, _, end in node.header.fields:
        if name == "content-transfer-encoding":
            out.append(buf[pos:start])
            if not replaced:
                out.append(b"Content-Transfer-Encoding: base64\r\n")
                replaced = True
            pos = end
    if not replaced:
        last = node.header.fields[-1][3] if node.header.fields else node.start
        out.append(buf[pos:last])
        out.append(b"Content-Transfer-Encoding: base64\r\n")
        pos = last
    out.append(buf[pos : node.body_start])
    return b"".join(out)


def _base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character CRLF lines (RFC 2045 6.8)."""
    return b"".join(binascii.b2a_base64(data[i : i + 57], newline=False) + b"\r\n"
                    for i in range(0, len(data), 57))


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
