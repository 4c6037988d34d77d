"""Turning IMAP data into what the pages show: list rows, parsed messages, sanitized HTML."""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message
from typing import Any

import nh3

from imapd.protocol.values import Atom

__all__ = ["Attachment", "ListRow", "ParsedMessage", "parse_message", "row_from_fetch", "sanitize_html"]


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, Atom):
        return v.text
    return str(v)


def decode_words(value: str) -> str:
    """RFC 2047 encoded-words -> text (never raises)."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


def _addresses(v: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if not isinstance(v, tuple):
        return out
    for a in v:
        if isinstance(a, tuple) and len(a) >= 4:
            name = decode_words(_text(a[0]))
            addr = f"{_text(a[2])}@{_text(a[3])}" if a[3] is not None else _text(a[2])
            out.append((name, addr))
    return out


@dataclass
class ListRow:
    uid: int
    subject: str
    sender: str
    sender_addr: str
    date: str
    size: int
    seen: bool
    flagged: bool
    answered: bool
    draft: bool
    depth: int = 0


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def _date(value: str) -> str:
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return value
    now = datetime.now(dt.tzinfo)
    if dt.date() == now.date():
        return dt.strftime("%H:%M")
    if dt.year == now.year:
        return dt.strftime("%b %d")
    return dt.strftime("%Y-%m-%d")


def row_from_fetch(items: dict[str, Any]) -> ListRow:
    env: tuple[Any, ...] = tuple(items.get("ENVELOPE") or ())
    flags = {(_text(f)).lower() for f in (items.get("FLAGS") or ())}
    senders = _addresses(env[2]) if len(env) > 2 else []
    name, addr = senders[0] if senders else ("", "")
    date = _text(env[0]) if env else ""
    if not date:
        date = _text(items.get("INTERNALDATE"))
    return ListRow(
        uid=int(items.get("UID", 0)),
        subject=decode_words(_text(env[1])) if len(env) > 1 else "",
        sender=name or addr,
        sender_addr=addr,
        date=_date(date),
        size=int(items.get("RFC822.SIZE", 0) or 0),
        seen="\\seen" in flags,
        flagged="\\flagged" in flags,
        answered="\\answered" in flags,
        draft="\\draft" in flags,
    )


@dataclass
class Attachment:
    section: str
    filename: str
    content_type: str
    size: int


@dataclass
class ParsedMessage:
    uid: int
    subject: str
    from_: str
    to: str
    cc: str
    date: str
    flags: set[str]
    text: str | None
    html: str | None
    attachments: list[Attachment] = field(default_factory=list)


def _sections(msg: Message, prefix: str = "") -> list[tuple[str, Message]]:
    """Leaf parts with their IMAP section numbers (RFC 3501 6.4.5)."""
    if not msg.is_multipart():
        return [(prefix or "1", msg)]
    out: list[tuple[str, Message]] = []
    for i, part in enumerate(msg.get_payload(), 1):
        sec = f"{prefix}.{i}" if prefix else str(i)
        if isinstance(part, Message) and part.is_multipart():
            out.extend(_sections(part, sec))
        elif isinstance(part, Message):
            out.append((sec, part))
    return out


def find_section(raw: bytes, section: str) -> tuple[Message, str] | None:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for sec, part in _sections(msg):
        if sec == section:
            return part, _filename(part) or f"part-{sec}"
    return None


def _filename(part: Message) -> str:
    name = part.get_filename()
    return decode_words(name) if name else ""


def _part_text(part: Message) -> str:
    if isinstance(part, EmailMessage):
        try:
            content = part.get_content()
            if isinstance(content, str):
                return content
        except (LookupError, ValueError, AssertionError, KeyError):
            pass
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return ""


def parse_message(uid: int, raw: bytes, flags: set[str]) -> ParsedMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = []
    for sec, part in _sections(msg):
        ctype = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        filename = _filename(part)
        if disposition == "attachment" or (filename and ctype not in ("text/plain", "text/html")):
            payload = part.get_payload(decode=True)
            attachments.append(Attachment(sec, filename or f"part-{sec}", ctype,
                                          len(payload) if isinstance(payload, bytes) else 0))
        elif ctype == "text/plain" and text is None:
            text = _part_text(part)
        elif ctype == "text/html" and html is None:
            html = _part_text(part)
        elif not ctype.startswith("text/") and not ctype.startswith("multipart/"):
            payload = part.get_payload(decode=True)
            attachments.append(Attachment(sec, filename or f"part-{sec}", ctype,
                                          len(payload) if isinstance(payload, bytes) else 0))

    def hdr(name: str) -> str:
        v = msg.get(name)
        return decode_words(str(v)) if v is not None else ""

    return ParsedMessage(uid, hdr("Subject"), hdr("From"), hdr("To"), hdr("Cc"), hdr("Date"), flags,
                         text, html, attachments)


# -- HTML sanitizing ------------------------------------------------------------------------------------------
_REMOTE = re.compile(r"^\s*(https?:)?//", re.I)
_CSS_URL = re.compile(r"url\s*\([^)]*\)", re.I)
_CSS_BAD = re.compile(r"expression\s*\(|@import|behavior\s*:|-moz-binding", re.I)
_TAGS = (nh3.ALLOWED_TAGS | {"font", "center", "span", "div", "table", "thead", "tbody", "tfoot", "tr", "td",
                             "th", "caption", "col", "colgroup", "img", "hr", "br", "u", "s", "small", "big"}) - {
    "script", "style", "iframe", "object", "embed", "form", "input", "button", "textarea", "select", "link",
    "meta", "base", "svg", "math"}
_GENERIC_ATTRS = {"style", "align", "valign", "width", "height", "bgcolor", "color", "dir", "title", "class"}
_ATTRS: dict[str, set[str]] = {
    "*": _GENERIC_ATTRS,
    "a": {"href", "name"},
    "img": {"src", "alt", "border"},
    "td": {"colspan", "rowspan", "nowrap"},
    "th": {"colspan", "rowspan", "nowrap"},
    "table": {"border", "cellpadding", "cellspacing", "summary"},
    "font": {"face", "size", "color"},
    "col": {"span"},
    "colgroup": {"span"},
}


@dataclass
class Sanitized:
    html: str
    blocked: int


def sanitize_html(source: str, *, allow_remote: bool = False) -> Sanitized:
    """nh3 with a mail-friendly allow list; scripts, handlers, forms and frames never survive.

    Unless ``allow_remote``, remote image ``src`` and every CSS ``url(...)`` are removed (counted in
    ``blocked``) so opening a message tells nobody it was read.
    """
    blocked = 0

    def attribute_filter(element: str, attribute: str, value: str) -> str | None:
        nonlocal blocked
        if attribute == "src" and element == "img":
            if value.lower().startswith("data:image/"):
                return value
            if _REMOTE.match(value):
                if allow_remote:
                    return value
                blocked += 1
                return None
            return None  # cid: and anything else: no fetch
        if attribute == "style":
            if _CSS_BAD.search(value):
                return None
            if _CSS_URL.search(value) and not allow_remote:
                blocked += 1
                return _CSS_URL.sub("none", value)
            return value
        if attribute == "background":
            blocked += 1
            return None
        return value

    cleaned = nh3.clean(
        source,
        tags=_TAGS,
        clean_content_tags={"script", "style", "title", "head"},
        attributes=_ATTRS,
        attribute_filter=attribute_filter,
        url_schemes={"http", "https", "mailto", "data"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
    return Sanitized(cleaned, blocked)
