"""``parse_message``: raw bytes to the cached :class:`MessageMetadata` (ENVELOPE, BODYSTRUCTURE, SORT
and THREAD keys), in one pass over the MIME tree. Never raises."""

from __future__ import annotations

import re

from imapd.mime.addresses import parse_addresses
from imapd.mime.dates import epoch_seconds
from imapd.mime.encoded_words import decode_words
from imapd.mime.headers import Header, parse_params, to_str
from imapd.mime.structs import Address, BodyPart, Disposition, Envelope, MessageMetadata
from imapd.mime.subject import base_subject
from imapd.mime.tree import MimeNode, build

_ENVELOPE_FIELDS = frozenset(
    ("date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to", "message-id")
)
_PART_FIELDS = frozenset(
    ("content-id", "content-description", "content-disposition", "content-language", "content-location",
     "content-md5")
)
_MSG_ID = re.compile(r"<[^<>]*>")
_WSP = re.compile(r"[ \t\r\n]+")


def _text(values: dict[str, bytes], name: str) -> str | None:
    value = values.get(name)
    return to_str(value) if value else None


def _addresses(values: dict[str, bytes], name: str) -> list[Address] | None:
    value = values.get(name)
    return parse_addresses(to_str(value)) if value else None


def envelope_of(header: Header, values: dict[str, bytes] | None = None) -> Envelope:
    """RFC 3501 ENVELOPE of a message header."""
    if values is None:
        values = header.first_values(_ENVELOPE_FIELDS)
    from_ = _addresses(values, "from")
    return Envelope(
        date=_text(values, "date"),
        subject=_text(values, "subject"),
        from_=from_,
        sender=_addresses(values, "sender") or from_,
        reply_to=_addresses(values, "reply-to") or from_,
        to=_addresses(values, "to"),
        cc=_addresses(values, "cc"),
        bcc=_addresses(values, "bcc"),
        in_reply_to=_text(values, "in-reply-to"),
        message_id=_text(values, "message-id"),
    )


def _body_part(node: MimeNode) -> BodyPart:
    values = node.header.first_values(_PART_FIELDS)
    disposition: Disposition | None = None
    raw_disposition = values.get("content-disposition")
    if raw_disposition:
        main, params = parse_params(to_str(raw_disposition))
        if main:
            disposition = Disposition(main.upper(), params)
    language: list[str] | None = None
    raw_language = values.get("content-language")
    if raw_language:
        language = [tag.strip() for tag in to_str(raw_language).split(",") if tag.strip()] or None
    raw_location = values.get("content-location")
    location = _WSP.sub("", to_str(raw_location)) or None if raw_location else None
    parts: list[BodyPart] = []
    envelope: Envelope | None = None
    body: BodyPart | None = None
    lines: int | None = None
    if node.children:
        parts = [_body_part(child) for child in node.children]
    elif node.message is not None:
        envelope = envelope_of(node.message.header)
        body = _body_part(node.message)
        lines = node.body_lines()
    elif node.type == "TEXT":
        lines = node.body_lines()
    return BodyPart(
        type=node.type,
        subtype=node.subtype,
        params=node.params,
        id=_text(values, "content-id"),
        description=_text(values, "content-description"),
        encoding=node.encoding,
        size=node.body_size,
        lines=lines,
        disposition=disposition,
        language=language,
        location=location,
        parts=parts,
        envelope=envelope,
        body=body,
        md5=_WSP.sub("", _text(values, "content-md5") or "") or None,
    )


def _msg_ids(value: bytes | None) -> list[str]:
    if not value:
        return []
    return [_WSP.sub("", found) for found in _MSG_ID.findall(to_str(value))]


def _first_address(addresses: list[Address] | None) -> Address | None:
    """RFC 5256 / RFC 5957 sort on the *first* address of the envelope list; with group syntax
    (``Cc: group: a@b.example;``) that is the group marker, whose mailbox field holds the group name."""
    return addresses[0] if addresses else None


def _display(addr: Address | None) -> str:
    """RFC 5957 display key: decoded display name, else the addr-spec (for a group: its name)."""
    if addr is None:
        return ""
    if addr.host is None:  # a group marker
        return decode_words(addr.mailbox or "").strip()
    if addr.name:
        name = decode_words(addr.name).strip()
        if name:
            return name
    return f"{addr.mailbox}@{addr.host}" if addr.host else addr.mailbox or ""


def _sort_mailbox(addr: Address | None) -> str:
    return (addr.mailbox or "").lower() if addr is not None else ""


def _fallback(raw: bytes) -> MessageMetadata:
    lines = raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)
    body = BodyPart("TEXT", "PLAIN", [("CHARSET", "US-ASCII")], None, None, "7BIT", len(raw), lines)
    envelope = Envelope(None, None, None, None, None, None, None, None, None, None)
    return MessageMetadata(envelope, body, 0, None, "", False, "", "", "", "", "", None, [], [])


_TOP_FIELDS = _ENVELOPE_FIELDS | frozenset(("references",))


def parse_message(raw: bytes) -> MessageMetadata:
    """Everything the index caches about one message. Never raises: input that defeats the parser
    still yields a ``TEXT/PLAIN`` body of ``len(raw)`` octets and an empty envelope."""
    try:
        return _parse(raw)
    except Exception:  # defensive: a parser bug must not make a message unfetchable
        return _fallback(raw)


def _parse(raw: bytes) -> MessageMetadata:
    root = build(raw)
    header = root.header
    values = header.first_values(_TOP_FIELDS)
    envelope = envelope_of(header, values)
    subject, is_reply = base_subject(envelope.subject)
    first_from = _first_address(envelope.from_)
    first_to = _first_address(envelope.to)
    message_ids = _msg_ids(values.get("message-id"))
    return MessageMetadata(
        envelope=envelope,
        body=_body_part(root),
        header_size=header.size,
        date=epoch_seconds(envelope.date),
        base_subject=subject,
        is_reply=is_reply,
        from_mailbox=_sort_mailbox(first_from),
        from_display=_display(first_from),
        to_mailbox=_sort_mailbox(first_to),
        to_display=_display(first_to),
        cc_mailbox=_sort_mailbox(_first_address(envelope.cc)),
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=_msg_ids(values.get("in-reply-to")),
        references=_msg_ids(values.get("references")),
    )
