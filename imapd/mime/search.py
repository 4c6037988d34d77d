"""SEARCH helpers on raw bytes: decoded header values, a body/text substring test, and the same texts
as a :class:`SearchDocument` for the full-text index (one extraction for both, so they cannot drift)."""

from __future__ import annotations

import contextlib
from typing import Literal

import msgspec

from imapd.mime.encoded_words import decode_charset, decode_words
from imapd.mime.headers import Header, to_str, unfold
from imapd.mime.sections import UnknownEncoding, decode_transfer
from imapd.mime.structs import Address, Envelope
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


# ------------------------------------------------------------------------------- the search document

ENVELOPE_TEXTS = ("subject", "from_", "to", "cc", "bcc", "reply_to", "sender", "message_id", "in_reply_to")
"""The ENVELOPE attributes SUBJECT/FROM/TO/CC/BCC and HEADER <envelope field> search, in this order."""

def address_text(addrs: list[Address] | None) -> str:
    """What FROM/TO/CC/BCC search in: decoded display names and ``<mailbox@host>``, case-folded."""
    if not addrs:
        return ""
    out: list[str] = []
    for a in addrs:
        if a.name:
            out.append(decode_words(a.name))
        if a.mailbox is not None and a.host is not None:
            out.append(f"<{a.mailbox}@{a.host}>")
        elif a.mailbox:
            out.append(a.mailbox)  # group name
    return " ".join(out).casefold()


def envelope_text(envelope: Envelope, attr: str) -> str | None:
    """The case-folded text SEARCH matches for an ENVELOPE attribute (None: the message has no such field)."""
    value = getattr(envelope, attr)
    if value is None:
        return None
    if isinstance(value, list):
        return address_text(value)
    return decode_words(value).casefold() if attr == "subject" else str(value).casefold()


class SearchDocument(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """Everything a substring SEARCH looks at in one message, case-folded, as the scan computes it.

    The full-text index stores these strings, so a needle is in a column exactly when the scan finds it.
    """

    envelope: list[str | None]
    """:func:`envelope_text` of each of :data:`ENVELOPE_TEXTS`."""
    header: str
    """TEXT's top-level header text."""
    body: list[str]
    """BODY's texts (a needle matches inside one of them, never across two)."""
    fields: list[str]
    """``name:value`` of every top-level field, as HEADER compares them (name in lower case)."""


def search_document(raw: bytes, envelope: Envelope) -> SearchDocument:
    """The :class:`SearchDocument` of a message (``envelope``: its cached ENVELOPE, as the scan uses)."""
    root = build(raw)
    header = root.header
    buf = header.buf
    return SearchDocument(
        [envelope_text(envelope, attr) for attr in ENVELOPE_TEXTS],
        _header_text(header).casefold(),
        [text.casefold() for text in _part_texts(root)],
        [f"{name}:{decode_words(to_str(unfold(buf[v_start:end]))).casefold()}" for name, _, v_start, end in header.fields],
    )
