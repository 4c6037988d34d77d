"""FETCH: turn the requested items of one message into ``(response key, value)`` pairs.

A :class:`FetchPlan` is compiled once per FETCH command. It records what the items need (index info,
cached metadata, the raw message), whether any item implicitly sets ``\\Seen``, and holds one small
renderer per item, so :func:`render` only loads what is needed, at most once per message.

Choices:

- A section that does not exist (``BODY[9]``, ``BODY[1.HEADER]`` of a part that is not MESSAGE/RFC822,
  ``BINARY[9]``) is rendered as the empty string ``""``; ``BINARY.SIZE`` of a missing part is ``0``.
  RFC 3501 allows ``nstring`` there; an empty string is what most servers send and what clients cope with.
- A partial ``<origin.count>`` whose origin is past the end gives the empty string (RFC 3501 6.4.5).
- ``INTERNALDATE`` is written in UTC (the index keeps Unix seconds).
- ``BINARY[...]`` is a ``literal8`` with the transfer encoding undone; :class:`imapd.mime.UnknownEncoding`
  propagates so the session can answer ``NO [UNKNOWN-CTE]``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from typing import cast

from imapd.mime import (
    Address,
    BodyPart,
    Disposition,
    Envelope,
    MessageMetadata,
    Param,
    SectionKind,
    binary_size,
    decode_part,
    section_bytes,
)
from imapd.protocol.fetch_items import BinarySize, FetchAttr, FetchBody, FetchItem
from imapd.protocol.values import Atom, Literal8, Value, format_internaldate
from imapd.store.mailbox import Mailbox, MessageInfo

__all__ = ["FetchPlan", "body_value", "envelope_value", "render"]

_INFO_ATTRS = frozenset({"RFC822.SIZE", "INTERNALDATE"})
_META_ATTRS = frozenset({"ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822.HEADER", "RFC822.TEXT"})
_RAW_ATTRS = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT"})
_SEEN_ATTRS = frozenset({"RFC822", "RFC822.TEXT"})


class _Message:
    """One message while it is rendered: what the caller passed, and what was loaded (once) on demand."""

    __slots__ = ("_info", "_meta", "_raw", "flags", "mailbox", "modseq", "uid")

    def __init__(self, mailbox: Mailbox, uid: int, info: MessageInfo | None, flags: tuple[str, ...],
                 modseq: int | None) -> None:
        self.mailbox = mailbox
        self.uid = uid
        self.flags = flags
        self.modseq = modseq
        self._info = info
        self._meta: MessageMetadata | None = None
        self._raw: bytes | None = None

    def info(self) -> MessageInfo:
        if self._info is None:
            rows = self.mailbox.message_info([self.uid])
            if not rows:
                raise KeyError(self.uid)
            self._info = rows[0]
        return self._info

    def meta(self) -> MessageMetadata:
        if self._meta is None:
            self._meta = self.mailbox.metadata(self.uid)
        return self._meta

    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = self.mailbox.read_message(self.uid)
        return self._raw


_Renderer = Callable[[_Message], Value]


class FetchPlan:
    """The compiled items of one FETCH command.

    - ``needs_info``: RFC822.SIZE or INTERNALDATE (pass ``info`` from one batched ``message_info``);
    - ``needs_metadata``: ENVELOPE, BODY, BODYSTRUCTURE, and top-level HEADER/TEXT sections (sliced at
      the cached header size);
    - ``needs_raw``: any body section, RFC822*, BINARY, BINARY.SIZE;
    - ``sets_seen``: ``BODY[...]``/``BINARY[...]`` without ``.PEEK``, ``RFC822`` or ``RFC822.TEXT``
      (RFC 3501 6.4.5; ``RFC822.HEADER`` is ``BODY.PEEK[HEADER]``);
    - ``wants_flags``/``wants_uid``/``wants_modseq``: those items were asked for explicitly.
    """

    __slots__ = ("_renderers", "items", "needs_info", "needs_metadata", "needs_raw", "sets_seen",
                 "wants_flags", "wants_modseq", "wants_uid")

    def __init__(self, items: Iterable[FetchItem]) -> None:
        self.items: tuple[FetchItem, ...] = tuple(items)
        self.needs_info = False
        self.needs_metadata = False
        self.needs_raw = False
        self.sets_seen = False
        self.wants_flags = False
        self.wants_uid = False
        self.wants_modseq = False
        renderers: list[tuple[str, _Renderer]] = []
        for item in self.items:
            renderers.append((item.response_key(), self._compile(item)))
        self._renderers = tuple(renderers)

    def _compile(self, item: FetchItem) -> _Renderer:
        if isinstance(item, FetchAttr):
            name = item.name
            self.needs_info |= name in _INFO_ATTRS
            self.needs_metadata |= name in _META_ATTRS
            self.needs_raw |= name in _RAW_ATTRS
            self.sets_seen |= name in _SEEN_ATTRS
            self.wants_flags |= name == "FLAGS"
            self.wants_uid |= name == "UID"
            self.wants_modseq |= name == "MODSEQ"
            renderer = _ATTRS.get(name)
            if renderer is None:
                raise ValueError(f"unknown FETCH attribute {name!r}")
            return renderer
        self.needs_raw = True
        if isinstance(item, BinarySize):
            return _binary_size(item.part)
        self.sets_seen |= not item.peek
        if item.binary:
            return _binary(item)
        if not item.section.part and item.section.text in ("HEADER", "TEXT"):
            self.needs_metadata = True
        return _body_section(item)

    def render(self, mailbox: Mailbox, uid: int, *, info: MessageInfo | None, flags: tuple[str, ...],
               modseq: int | None) -> list[tuple[str, Value]]:
        """See :func:`render`."""
        message = _Message(mailbox, uid, info, flags, modseq)
        return [(key, renderer(message)) for key, renderer in self._renderers]


def render(plan: FetchPlan, mailbox: Mailbox, uid: int, *, info: MessageInfo | None,
           flags: tuple[str, ...], modseq: int | None) -> list[tuple[str, Value]]:
    """The FETCH items of ``plan`` for message ``uid``, in request order, with their response keys.

    ``info`` should come from a batched ``mailbox.message_info`` when ``plan.needs_info`` (it is looked
    up alone otherwise); ``flags`` are the flags to show (the session adds ``\\Recent`` and the implicit
    ``\\Seen``); ``modseq`` None means the mailbox's current value. Raises KeyError when the message is
    gone and :class:`imapd.mime.UnknownEncoding` for BINARY of an unknown transfer encoding.
    """
    return plan.render(mailbox, uid, info=info, flags=flags, modseq=modseq)


# ----------------------------------------------------------------------------------------- value trees


def _addresses(addrs: list[Address] | None) -> Value:
    if not addrs:
        return None
    return [[a.name, a.adl, a.mailbox, a.host] for a in addrs]


_NIL_ENVELOPE: list[Value] = [None] * 10


def envelope_value(env: Envelope | None) -> list[Value]:
    """RFC 3501 7.4.2 ENVELOPE: date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to,
    message-id; header strings stay raw (encoded words are the client's business)."""
    if env is None:
        return list(_NIL_ENVELOPE)
    return [env.date, env.subject, _addresses(env.from_), _addresses(env.sender), _addresses(env.reply_to),
            _addresses(env.to), _addresses(env.cc), _addresses(env.bcc), env.in_reply_to, env.message_id]


def _params(params: list[Param]) -> Value:
    if not params:
        return None
    out: list[Value] = []
    for name, value in params:
        out.append(name)
        out.append(value)
    return out


def _disposition(disp: Disposition | None) -> Value:
    return None if disp is None else [disp.type, _params(disp.params)]


def _language(language: list[str] | None) -> Value:
    return list(language) if language else None


def body_value(part: BodyPart, extended: bool) -> list[Value]:
    """BODY (``extended=False``) or BODYSTRUCTURE (``extended=True``) of one part, recursively."""
    if part.is_multipart:
        out: list[Value] = [body_value(child, extended) for child in part.parts]
        out.append(part.subtype)
        if extended:
            out += [_params(part.params), _disposition(part.disposition), _language(part.language),
                    part.location]
        return out
    out = [part.type, part.subtype, _params(part.params), part.id, part.description, part.encoding,
           part.size]
    if part.body is not None:
        out += [envelope_value(part.envelope), body_value(part.body, extended), part.lines or 0]
    elif part.type == "TEXT":
        out.append(part.lines or 0)
    if extended:
        out += [None, _disposition(part.disposition), _language(part.language), part.location]
    return out


# ------------------------------------------------------------------------------------------ attributes


def _flags(m: _Message) -> Value:
    return [Atom(f) for f in m.flags]


def _uid(m: _Message) -> Value:
    return m.uid


def _modseq(m: _Message) -> Value:
    value = m.modseq
    if value is None:
        value = m.mailbox.modseq(m.uid)
        if value is None:
            value = m.info().modseq
    return [value]


def _internaldate(m: _Message) -> Value:
    when = datetime.datetime.fromtimestamp(m.info().internaldate, datetime.UTC)
    return format_internaldate(when)


def _size(m: _Message) -> Value:
    return m.info().size


def _envelope(m: _Message) -> Value:
    return envelope_value(m.meta().envelope)


def _body(m: _Message) -> Value:
    return body_value(m.meta().body, False)


def _bodystructure(m: _Message) -> Value:
    return body_value(m.meta().body, True)


def _literal(data: bytes) -> Value:
    return data if data else ""


def _rfc822(m: _Message) -> Value:
    return _literal(m.raw())


def _rfc822_header(m: _Message) -> Value:
    return _literal(m.raw()[: m.meta().header_size])


def _rfc822_text(m: _Message) -> Value:
    return _literal(m.raw()[m.meta().header_size :])


_ATTRS: dict[str, _Renderer] = {
    "FLAGS": _flags,
    "UID": _uid,
    "MODSEQ": _modseq,
    "INTERNALDATE": _internaldate,
    "RFC822.SIZE": _size,
    "ENVELOPE": _envelope,
    "BODY": _body,
    "BODYSTRUCTURE": _bodystructure,
    "RFC822": _rfc822,
    "RFC822.HEADER": _rfc822_header,
    "RFC822.TEXT": _rfc822_text,
}


# --------------------------------------------------------------------------------------------- sections


def _slice(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return data
    origin, count = partial
    return data[origin : origin + count]


def _body_section(item: FetchBody) -> _Renderer:
    section = item.section
    part, fields, partial = section.part, section.fields, item.partial
    kind = cast(SectionKind, section.text or "")

    def whole(m: _Message) -> Value:
        return _literal(_slice(m.raw(), partial))

    def header(m: _Message) -> Value:
        return _literal(_slice(m.raw()[: m.meta().header_size], partial))

    def text(m: _Message) -> Value:
        return _literal(_slice(m.raw()[m.meta().header_size :], partial))

    def other(m: _Message) -> Value:
        data = section_bytes(m.raw(), part, kind, fields)
        return "" if data is None else _literal(_slice(data, partial))

    if part:
        return other
    return {"": whole, "HEADER": header, "TEXT": text}.get(kind, other)


def _binary(item: FetchBody) -> _Renderer:
    part, partial = item.section.part, item.partial

    def render(m: _Message) -> Value:
        data = decode_part(m.raw(), part)
        if data is None:
            return ""
        data = _slice(data, partial)
        return Literal8(data) if data else ""

    return render


def _binary_size(part: tuple[int, ...]) -> _Renderer:
    def render(m: _Message) -> Value:
        return binary_size(m.raw(), part) or 0

    return render
