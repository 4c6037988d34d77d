"""SEARCH helpers on raw bytes: decoded header values and a body/text substring test."""

from __future__ import annotations

import contextlib
from typing import Literal

from imapd.mime.encoded_words import decode_charset, decode_words
from imapd.mime.headers import Header, to_str
from imapd.mime.sections import UnknownEncoding, decode_transfer
from imapd.mime.tree import MimeNode, build

SearchWhere = Literal["BODY", "TEXT"]


def header_values(data: bytes, name: str) -> list[str]:
    """Every value of header ``name`` in ``data`` (a whole message or just its header block), unfolded
    and RFC 2047-decoded, in order. Undecodable bytes are replaced, never raised on."""
    header = Header(data, 0, len(data))
    return [decode_words(to_str(value)) for value in header.raw_all(name.lower())]


def _header_text(header: Header) -> str:
    buf = header.buf
    return "\n".join(
        f"{buf[start : v_start - 1].decode('latin-1')}: {decode_words(to_str(buf[v_start:end]))}"
        for _, start, v_start, end in header.fields
    )


def _part_texts(node: MimeNode) -> list[str]:
    """Searchable text of a body: decoded TEXT/* leaves, headers and bodies of encapsulated messages."""
    if node.children:
        return [text for child in node.children for text in _part_texts(child)]
    if node.message is not None:
        return [_header_text(node.message.header), *_part_texts(node.message)]
    if node.type != "TEXT":
        return []
    body = node.header.buf[node.body_start : node.end]
    with contextlib.suppress(UnknownEncoding):  # unknown encoding: search the raw bytes
        body = decode_transfer(body, node.encoding)
    return [decode_charset(body, node.param("CHARSET"))]


def text_contains(raw: bytes, needle: str, where: SearchWhere = "BODY") -> bool:
    """SEARCH ``BODY``/``TEXT``: case-insensitive substring test on the decoded message.

    ``BODY`` looks in the text parts (transfer encoding and charset undone) and in encapsulated
    messages; ``TEXT`` also looks in the top-level header (RFC 2047-decoded).
    """
    wanted = needle.casefold()
    if not wanted:
        return True
    root = build(raw)
    if where == "TEXT" and wanted in _header_text(root.header).casefold():
        return True
    return any(wanted in text.casefold() for text in _part_texts(root))
