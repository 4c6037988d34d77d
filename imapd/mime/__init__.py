"""Pure message parsing for the store and the IMAP session: no I/O, no IMAP wire syntax.

- :func:`parse_message`: raw bytes to the cached :class:`MessageMetadata` (ENVELOPE, BODYSTRUCTURE,
  SORT/THREAD keys, header size), msgpack-encodable with :func:`encode_metadata`.
- :func:`section_bytes`: ``BODY[section]``; :func:`decode_part`/:func:`binary_size`: ``BINARY``.
- :func:`header_values`, :func:`text_contains`, :func:`header_date`: SEARCH helpers.
"""

from imapd.mime.addresses import parse_addresses
from imapd.mime.dates import epoch_seconds, header_date, parse_date
from imapd.mime.encoded_words import decode_charset, decode_words
from imapd.mime.search import (
    ENVELOPE_TEXTS,
    SearchDocument,
    SearchWhere,
    address_text,
    envelope_text,
    header_values,
    search_document,
    text_contains,
)
from imapd.mime.sections import (
    SectionKind,
    UnknownEncoding,
    binary_size,
    decode_part,
    decode_quoted_printable,
    literal_safe,
    literal_section,
    section_bytes,
)
from imapd.mime.structs import (
    Address,
    BodyPart,
    Disposition,
    Envelope,
    MessageMetadata,
    Param,
    decode_metadata,
    encode_metadata,
)
from imapd.mime.structure import parse_message
from imapd.mime.subject import base_subject

__all__ = [
    "ENVELOPE_TEXTS",
    "SearchDocument",
    "address_text",
    "envelope_text",
    "search_document",
    "Address",
    "BodyPart",
    "Disposition",
    "Envelope",
    "MessageMetadata",
    "Param",
    "SearchWhere",
    "SectionKind",
    "UnknownEncoding",
    "base_subject",
    "binary_size",
    "decode_charset",
    "decode_metadata",
    "decode_part",
    "decode_quoted_printable",
    "decode_words",
    "encode_metadata",
    "epoch_seconds",
    "header_date",
    "header_values",
    "parse_addresses",
    "parse_date",
    "parse_message",
    "literal_safe",
    "literal_section",
    "section_bytes",
    "text_contains",
]
