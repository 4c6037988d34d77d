"""RFC 5465 NOTIFY: the command's syntax, parsed and written (registered in :mod:`.command_parser` and
:mod:`.command_writer`).

Whether an event is supported, and the RFC's rules between events (MessageNew with MessageExpunge,
FlagChange only with both, fetch attributes only for SELECTED), are semantics: the session checks them
and answers ``NO [BADEVENT]`` or ``BAD``. The parser accepts any atom as an event (``event-ext``).
"""

from __future__ import annotations

from . import commands as c
from .fetch_items import FetchAttr
from .fetch_parser import parse_fetch_items
from .reader import ParseError, TokenReader
from .wire import mailbox_bytes

__all__ = ["EVENTS", "FILTERS", "parse_notify", "write_notify"]

EVENTS = {name.upper(): name for name in (
    "MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange", "MailboxName", "SubscriptionChange",
    "MailboxMetadataChange", "ServerMetadataChange")}
"""The RFC's events by upper-cased name, in the RFC's spelling."""

FILTERS = frozenset({"SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES"})
_WITH_MAILBOXES = frozenset({"SUBTREE", "MAILBOXES"})


def parse_notify(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    verb = r.keyword()
    if verb == "NONE":
        return c.Notify(tag)
    if verb != "SET":
        raise ParseError("Expected NOTIFY NONE or NOTIFY SET")
    r.sp()
    status = False
    if r.peek() != 0x28:
        if r.keyword() != "STATUS":
            raise ParseError("Expected STATUS or an event group")
        status = True
        r.sp()
    groups = [_group(r)]
    while not r.at_end():
        r.sp()
        groups.append(_group(r))
    return c.Notify(tag, tuple(groups), status)


def _group(r: TokenReader) -> c.NotifyGroup:
    r.open()
    name = r.keyword()
    if name not in FILTERS:
        raise ParseError(f"Unknown NOTIFY filter {name}")
    mailboxes: tuple[str, ...] = ()
    if name in _WITH_MAILBOXES:
        r.sp()
        mailboxes = _mailboxes(r)
    r.sp()
    events = _events(r)
    r.close()
    return c.NotifyGroup(name, events, mailboxes)


def _mailboxes(r: TokenReader) -> tuple[str, ...]:
    """``one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")"``."""
    if r.peek() != 0x28:
        return (r.mailbox(),)
    r.open()
    out = [r.mailbox()]
    while not r.take(b")"):
        r.sp()
        out.append(r.mailbox())
    r.depth -= 1
    return tuple(out)


def _events(r: TokenReader) -> tuple[c.NotifyEvent, ...]:
    """``events = ("(" event *(SP event) ")") / "NONE"``."""
    if r.peek() != 0x28:
        if r.keyword() != "NONE":
            raise ParseError("Expected a list of events or NONE")
        return ()
    r.open()
    out = [_event(r)]
    while not r.take(b")"):
        r.sp()
        out.append(_event(r))
    r.depth -= 1
    return tuple(out)


def _event(r: TokenReader) -> c.NotifyEvent:
    raw = r.keyword()
    name = EVENTS.get(raw, raw)
    if name == "MessageNew" and r.line.startswith(b" (", r.pos):
        r.sp()
        return c.NotifyEvent(name, parse_fetch_items(r))
    return c.NotifyEvent(name)


def write_notify(cmd: c.Notify, utf8: bool) -> bytes:
    """The command's wire form without tag (``parse(write(cmd)) == cmd``); also what X-STATE keeps."""
    if not cmd.groups:
        return b"NOTIFY NONE"
    out = [b"NOTIFY SET"]
    if cmd.status:
        out.append(b"STATUS")
    out.extend(_write_group(group, utf8) for group in cmd.groups)
    return b" ".join(out)


def _write_group(group: c.NotifyGroup, utf8: bool) -> bytes:
    parts = [group.filter.encode()]
    if group.filter in _WITH_MAILBOXES:
        names = [mailbox_bytes(m, utf8, plus=True) for m in group.mailboxes]
        parts.append(b"(" + b" ".join(names) + b")")
    if group.events:
        parts.append(b"(" + b" ".join(_write_event(e) for e in group.events) + b")")
    else:
        parts.append(b"NONE")
    return b"(" + b" ".join(parts) + b")"


def _write_event(event: c.NotifyEvent) -> bytes:
    if not event.fetch:
        return event.name.encode()
    items = (i.name if isinstance(i, FetchAttr) else i.request_key() for i in event.fetch)
    return event.name.encode() + b" (" + " ".join(items).encode() + b")"
