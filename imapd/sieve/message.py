"""The message as Sieve tests see it: decoded header values, addresses, body texts, dates.

Parsed lazily and once per run; built on ``imapd/mime`` so Sieve and IMAP SEARCH read a message alike.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from functools import cached_property

from imapd.mime.addresses import parse_addresses
from imapd.mime.dates import parse_date
from imapd.mime.encoded_words import decode_charset, decode_words
from imapd.mime.headers import Header, to_str
from imapd.mime.sections import UnknownEncoding, decode_transfer
from imapd.mime.tree import MimeNode, build

__all__ = ["MessageView", "address_part"]


class MessageView:
    def __init__(self, data: bytes) -> None:
        self.data = data

    @cached_property
    def root(self) -> MimeNode:
        return build(self.data)

    @cached_property
    def header(self) -> Header:
        return self.root.header

    def raw_values(self, name: str) -> list[str]:
        """Unfolded, undecoded values (for addresses, which must be parsed before decoding)."""
        return [to_str(v) for v in self.header.raw_all(name.lower())]

    def values(self, name: str) -> list[str]:
        """RFC 2047-decoded values, leading and trailing white space removed (RFC 5228 5.7)."""
        return [decode_words(v).strip() for v in self.raw_values(name)]

    def exists(self, name: str) -> bool:
        return bool(self.header.raw_all(name.lower()))

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(local part, domain) of each mailbox in the named header; group markers skipped."""
        out: list[tuple[str, str]] = []
        for value in self.raw_values(name):
            for addr in parse_addresses(value) or []:
                if addr.host is None or addr.mailbox is None:
                    continue
                out.append((addr.mailbox, addr.host))
        return out

    def date(self, name: str) -> datetime | None:
        values = self.raw_values(name)
        return parse_date(values[0]) if values else None

    def body_texts(self, transform: str, types: list[str]) -> list[str]:
        """RFC 5173: ``:raw`` the undecoded body, else the decoded leaves whose type matches ``types``
        (``"text"`` matches text/*, ``"text/html"`` only that, ``""`` every leaf)."""
        root = self.root
        if transform == ":raw":
            return [self.data[root.body_start:root.end].decode("utf-8", "replace")]
        return [text for node in _leaves(root) if _type_matches(node, types)
                for text in [_decoded(node)]]


def _leaves(node: MimeNode) -> list[MimeNode]:
    if node.children:
        return [leaf for child in node.children for leaf in _leaves(child)]
    if node.message is not None:
        return _leaves(node.message)
    return [node]


def _type_matches(node: MimeNode, types: list[str]) -> bool:
    for wanted in types:
        wanted = wanted.lower()
        if not wanted:
            return True
        major, _, minor = wanted.partition("/")
        if node.type.lower() == major and (not minor or node.subtype.lower() == minor):
            return True
    return False


def _decoded(node: MimeNode) -> str:
    body = node.header.buf[node.body_start:node.end]
    with contextlib.suppress(UnknownEncoding):
        body = decode_transfer(body, node.encoding)
    if node.type != "TEXT":
        return body.decode("latin-1")
    return decode_charset(body, node.param("CHARSET"))


def address_part(local: str, domain: str, part: str, separator: str = "+") -> str | None:
    """One part of an address (RFC 5228 2.7.4, RFC 5233); None when the part does not exist
    (``:detail`` of an address without a separator)."""
    if part == ":localpart":
        return local
    if part == ":domain":
        return domain
    if part == ":user":
        return local.split(separator, 1)[0]
    if part == ":detail":
        return local.split(separator, 1)[1] if separator in local else None
    return f"{local}@{domain}" if domain else local


def split_address(address: str) -> tuple[str, str]:
    """An envelope address (no angle brackets) to (local part, domain)."""
    address = address.strip().strip("<>")
    local, _, domain = address.rpartition("@")
    if not local:
        return address, ""
    return local, domain
