"""Cached per-message metadata: compact msgspec Structs stored msgpack-encoded in the index.

All Structs are ``array_like`` (encoded as positional arrays, field names never hit the disk) and
``gc=False`` (they never form reference cycles, so millions of cached ones cost the collector nothing).

Strings taken from headers are *raw*: the header bytes decoded as UTF-8 when valid, else as latin-1
(one code point per byte), with folding line breaks removed. They are never RFC 2047-decoded, because
IMAP ENVELOPE and BODYSTRUCTURE carry them as sent. They never hold lone surrogates, so they always
encode to msgpack.
"""

from __future__ import annotations

import msgspec

Param = tuple[str, str]


class Address(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """One RFC 3501 address: ``(name adl mailbox host)``.

    Group syntax: the start of a group is ``Address(None, None, groupname, None)``, its end
    ``Address(None, None, None, None)``.
    """

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None


class Envelope(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """RFC 3501 ENVELOPE. ``None`` is NIL. Address lists are ``None`` when the header is absent or empty;
    ``sender`` and ``reply_to`` already default to ``from_``."""

    date: str | None
    subject: str | None
    from_: list[Address] | None
    sender: list[Address] | None
    reply_to: list[Address] | None
    to: list[Address] | None
    cc: list[Address] | None
    bcc: list[Address] | None
    in_reply_to: str | None
    message_id: str | None


class Disposition(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """``Content-Disposition``: type (upper case, e.g. ``ATTACHMENT``) and its parameters."""

    type: str
    params: list[Param]


class BodyPart(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """One node of BODYSTRUCTURE.

    ``type``, ``subtype``, ``encoding`` and parameter names are upper case; parameter values are raw
    (RFC 2231 continuations are left for the client, as IMAP servers send them).

    - every part: ``size`` is the exact octet count of the part's body on the raw bytes;
    - ``TEXT/*`` and ``MESSAGE/RFC822``: ``lines`` is the body's line count (else ``None``);
    - ``MULTIPART/*``: ``parts`` holds the children (at least one); ``id``/``description``/``encoding``
      are not sent for multiparts but are kept when present;
    - ``MESSAGE/RFC822``: ``envelope`` and ``body`` describe the encapsulated message.

    ``md5`` is the Content-MD5 header (RFC 3501 body-fld-md5, RFC 1864), ``None`` when absent. It is the
    last field so that metadata cached before it existed still decodes (as ``None``), and new rows decode
    in older code (msgspec ignores trailing array items).
    """

    type: str
    subtype: str
    params: list[Param]
    id: str | None
    description: str | None
    encoding: str
    size: int
    lines: int | None = None
    disposition: Disposition | None = None
    language: list[str] | None = None
    location: str | None = None
    parts: list[BodyPart] = []
    envelope: Envelope | None = None
    body: BodyPart | None = None
    md5: str | None = None

    @property
    def is_multipart(self) -> bool:
        return self.type == "MULTIPART"

    @property
    def is_message(self) -> bool:
        """True when the part is an encapsulated message with ``envelope``/``body``."""
        return self.body is not None


class MessageMetadata(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """Everything FETCH ENVELOPE/BODYSTRUCTURE, SORT (RFC 5256/5957) and THREAD need from one message.

    - ``header_size``: octets of the top header block, blank line included: ``BODY[HEADER]`` is
      ``raw[:header_size]`` and ``BODY[TEXT]`` is ``raw[header_size:]``;
    - ``date``: the Date header as epoch seconds, ``None`` when missing or unparsable (use INTERNALDATE);
    - ``base_subject``: RFC 5256 section 2.1 base subject, RFC 2047-decoded and case-folded;
      ``is_reply``: the extraction removed a ``Re:``/``Fwd:``/``(fwd)``/``[fwd: ...]``;
    - ``from_mailbox``/``to_mailbox``/``cc_mailbox``: RFC 5256 sort keys, the lower-cased addr-mailbox
      (local part) of the first address, ``""`` when there is none;
    - ``from_display``/``to_display``: RFC 5957 DISPLAYFROM/DISPLAYTO keys, the decoded display name of
      the first address, or its addr-spec when it has none, ``""`` when there is no address;
    - ``message_id``: the first ``<msg-id>`` of Message-ID; ``in_reply_to``/``references``: every
      ``<msg-id>`` of those headers, in order (brackets kept, comparison is octet-wise).
    """

    envelope: Envelope
    body: BodyPart
    header_size: int
    date: int | None
    base_subject: str
    is_reply: bool
    from_mailbox: str
    from_display: str
    to_mailbox: str
    to_display: str
    cc_mailbox: str
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(MessageMetadata)


def encode_metadata(meta: MessageMetadata) -> bytes:
    """msgpack bytes of ``meta`` for the index."""
    return _encoder.encode(meta)


def decode_metadata(data: bytes) -> MessageMetadata:
    """Inverse of :func:`encode_metadata`; raises ``msgspec.DecodeError`` on foreign bytes."""
    return _decoder.decode(data)
