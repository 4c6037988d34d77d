"""IMAP URLs that name one message or part of it (RFC 5092), with ``;PARTIAL=`` (RFC 5550), as CATENATE
(RFC 4469) uses them: syntax only. Whether the URL's user, mailbox and message exist is the session's
question (``imapd.session.catenate``).

Two forms are accepted::

    imap://[user[;AUTH=type]@]host[:port]/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=o[.l]]
    /mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=o[.l]]

the second relative to the server the client is logged in to (RFC 4469 5). Mailbox names are
percent-encoded UTF-8 (RFC 5092 5); keys are case-insensitive. The ``/`` before ``;SECTION`` and
``;PARTIAL`` may be left out, as in RFC 4469's second example. URLAUTH, ``;EXPIRE`` and message lists
(``?search``) are not accepted: this server does not implement URLAUTH, so they could never resolve.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import msgspec

from .fetch_items import BodySection, FetchBody
from .fetch_parser import parse_fetch_items
from .reader import ParseError, TokenReader

__all__ = ["ImapUrl", "UrlError", "parse_imap_url"]

_ABSOLUTE = re.compile(r"imap://(?:(?P<userinfo>[^@/]*)@)?(?P<host>[^/:]*)(?::(?P<port>[0-9]{1,5}))?(?P<path>/.*)",
                       re.IGNORECASE | re.DOTALL)
_PARAM = re.compile(r";(UIDVALIDITY|UID|SECTION|PARTIAL)=([^;/]*)/?", re.IGNORECASE)
_NZ_NUMBER = re.compile(r"[1-9][0-9]{0,9}")
_PARTIAL = re.compile(r"([0-9]{1,10})(?:\.([1-9][0-9]{0,9}))?")
# RFC 3986 characters an IMAP URL may hold unescaped (bchar / achar), plus "%" for escapes and ";".
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,=:@/;%]*")
_ORDER = ("UIDVALIDITY", "UID", "SECTION", "PARTIAL")


class UrlError(Exception):
    """The URL is not one this server can resolve (the session answers ``NO [BADURL url]``)."""


class ImapUrl(msgspec.Struct, frozen=True):
    mailbox: str
    uid: int
    uidvalidity: int | None = None
    section: BodySection | None = None
    partial: tuple[int, int | None] | None = None
    """``(offset, length)``; length None means to the end."""
    user: str | None = None
    """The URL's user for an absolute URL (None for a relative one, or an absolute one without user)."""
    absolute: bool = False
    host: str = ""


def parse_imap_url(url: str) -> ImapUrl:
    """Parse a message URL; :class:`UrlError` when it is malformed or of a kind not supported."""
    if not _URL_CHARS.fullmatch(url):
        raise UrlError("Invalid characters in URL")
    user: str | None = None
    host = ""
    absolute = False
    if url[:7].lower() == "imap://":
        m = _ABSOLUTE.fullmatch(url)
        if m is None:
            raise UrlError("Not an IMAP message URL")
        absolute = True
        host = m.group("host")
        if not host:
            raise UrlError("No host in URL")
        userinfo = m.group("userinfo")
        if userinfo is not None:
            name, _, auth = userinfo.partition(";")
            if auth and not auth.upper().startswith("AUTH="):
                raise UrlError("Invalid user in URL")
            user = _decode(name) if name else None
        path = m.group("path")
    elif url.startswith("/") and not url.startswith("//"):
        path = url
    else:
        raise UrlError("Only imap:// and /mailbox URLs are supported")
    semi = path.find(";")
    if semi < 0:
        raise UrlError("URL names no message (;UID= missing)")
    raw_mailbox = path[1:semi]
    if raw_mailbox.endswith("/"):
        raw_mailbox = raw_mailbox[:-1]
    if not raw_mailbox:
        raise UrlError("URL names no mailbox")
    mailbox = _decode(raw_mailbox)
    if mailbox.upper() == "INBOX":
        mailbox = "INBOX"
    values: dict[str, str] = {}
    pos = semi
    last = -1
    while pos < len(path):
        pm = _PARAM.match(path, pos)
        if pm is None:
            raise UrlError("Unsupported or malformed URL parameter")
        key = pm.group(1).upper()
        rank = _ORDER.index(key)
        if rank <= last:
            raise UrlError(f"{key} out of place in URL")
        if key == "UIDVALIDITY" and path[pos - 1] == "/":
            raise UrlError("UIDVALIDITY must follow the mailbox name")
        last = rank
        values[key] = pm.group(2)
        pos = pm.end()
    if "UID" not in values:
        raise UrlError("URL names no message (;UID= missing)")
    return ImapUrl(
        mailbox, _nz_number(values["UID"]),
        _nz_number(values["UIDVALIDITY"]) if "UIDVALIDITY" in values else None,
        _section(_decode(values["SECTION"])) if "SECTION" in values else None,
        _partial(values["PARTIAL"]) if "PARTIAL" in values else None,
        user, absolute, host,
    )


def _decode(raw: str) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise UrlError("URL is not percent-encoded UTF-8") from None


def _nz_number(raw: str) -> int:
    if not _NZ_NUMBER.fullmatch(raw) or int(raw) >= 1 << 32:
        raise UrlError("Invalid number in URL")
    return int(raw)


def _partial(raw: str) -> tuple[int, int | None]:
    m = _PARTIAL.fullmatch(raw)
    if m is None or int(m.group(1)) >= 1 << 32 or (m.group(2) and int(m.group(2)) >= 1 << 32):
        raise UrlError("Invalid ;PARTIAL= range")
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


def _section(text: str) -> BodySection:
    """A FETCH section-text (``1.2``, ``HEADER.FIELDS (TO)``, ``1.MIME``), parsed as FETCH parses it."""
    if not text or not text.isascii():
        raise UrlError("Invalid ;SECTION=")
    try:
        r = TokenReader([b"BODY[" + text.encode("ascii") + b"]"])
        items = parse_fetch_items(r)
        r.end()
    except ParseError:
        raise UrlError("Invalid ;SECTION=") from None
    item = items[0]
    if len(items) != 1 or not isinstance(item, FetchBody) or item.partial is not None:
        raise UrlError("Invalid ;SECTION=")
    return item.section
