"""The messages an APPEND or REPLACE stores: literals as sent, CATENATE parts (RFC 4469) put together.

A CATENATE URL may only name a message of the logged-in user: a relative ``/mailbox;...`` URL, or an
absolute ``imap://user@host/...`` one whose user is the logged-in user (the host is not compared: a
server behind a proxy or NAT cannot tell which names clients know it by). Any URL that does not
resolve, whatever the reason, gives ``NO [BADURL url]`` with the URL as the client sent it, so that a
URL naming another user's mail looks the same as one naming nothing. A message, assembled or not, must
fit the advertised APPENDLIMIT (``NO [TOOBIG]``). Everything here is computed before the store is
written, so a failure leaves nothing behind (MULTIAPPEND: all or none).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from imapd.mime import SectionKind, section_bytes
from imapd.protocol import commands as c
from imapd.protocol.imapurl import ImapUrl, UrlError, parse_imap_url
from imapd.session.errors import CommandNo
from imapd.session.session import Session
from imapd.store.errors import InvalidMailboxName, NoSuchMailbox
from imapd.store.mailbox import AppendItem, Mailbox

__all__ = ["append_items", "resolve_url"]


def append_items(s: Session, messages: Sequence[c.AppendMessage]) -> list[AppendItem]:
    """The store items of ``messages``, every CATENATE resolved; raises :class:`CommandNo` for the first
    message that cannot be stored (none is, then)."""
    limit = s.ctx.settings.limits.max_literal
    items: list[AppendItem] = []
    for msg in messages:
        data = msg.data if msg.catenate is None else _catenate(s, msg.catenate, limit)
        if not data:
            raise CommandNo("Cannot append an empty message", "CANNOT")
        if len(data) > limit:
            raise CommandNo(f"Message larger than APPENDLIMIT={limit}", "TOOBIG")
        when = msg.internaldate.timestamp() if isinstance(msg.internaldate, datetime) else None
        items.append(AppendItem(data, tuple(f for f in msg.flags if f != "\\Recent"), when))
    return items


def _catenate(s: Session, parts: Sequence[c.CatenatePart], limit: int) -> bytes:
    out = bytearray()
    for part in parts:
        room = limit - len(out)
        chunk = part.data if isinstance(part, c.CatenateText) else resolve_url(s, part.url, room)
        if len(chunk) > room:
            raise _too_big(limit)
        out += chunk
    return bytes(out)


def resolve_url(s: Session, url: str, room: int) -> bytes:
    """The octets ``url`` names (RFC 4469 5: a section as ``BODY.PEEK[section]<partial>`` gives it,
    without any content transfer decoding); ``NO [BADURL url]`` if it names nothing of this user's.

    ``room`` is what the message may still take: a whole message (or a range of one) larger than that
    is refused from its indexed size, without reading it; only a section needs the message parsed."""
    try:
        parsed = parse_imap_url(url)
    except UrlError as exc:
        raise _bad_url(url, str(exc)) from None
    if parsed.absolute and parsed.user != s.user_name:
        raise _bad_url(url, "URL of another user, or of no user")
    try:
        mailbox = s.ctx.open_mailbox(s, parsed.mailbox)
    except (NoSuchMailbox, InvalidMailboxName):
        raise _bad_url(url, "No such mailbox") from None
    try:
        if parsed.uidvalidity is not None and parsed.uidvalidity != mailbox.uidvalidity:
            raise _bad_url(url, "UIDVALIDITY does not match")
        return _octets(mailbox, parsed, room, url)
    finally:
        s.ctx.release_mailbox(mailbox)


def _octets(mailbox: Mailbox, parsed: ImapUrl, room: int, url: str) -> bytes:
    info = mailbox.message_info([parsed.uid])
    if not info:
        raise _bad_url(url, "No such message")
    offset, length = parsed.partial or (0, None)
    try:
        if parsed.section is None:
            size = max(0, info[0].size - offset)
            size = size if length is None else min(size, length)
            if size > room:
                raise CommandNo("CATENATE result larger than APPENDLIMIT", "TOOBIG")
            with open(mailbox.message_path(parsed.uid), "rb") as f:
                f.seek(offset)
                return f.read(size)
        raw = mailbox.read_message(parsed.uid)
    except (KeyError, FileNotFoundError):
        raise _bad_url(url, "No such message") from None
    section = parsed.section
    data = section_bytes(raw, section.part, cast(SectionKind, section.text or ""), section.fields)
    if data is None:
        raise _bad_url(url, "No such section")
    return data[offset:] if length is None else data[offset : offset + length]


def _too_big(limit: int) -> CommandNo:
    return CommandNo(f"CATENATE result larger than APPENDLIMIT={limit}", "TOOBIG")


def _bad_url(url: str, why: str) -> CommandNo:
    return CommandNo(f"CATENATE failed: {why}", "BADURL", url)
