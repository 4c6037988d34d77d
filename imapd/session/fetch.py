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
- ``SAVEDATE`` (RFC 8514) is written in UTC like INTERNALDATE.
- ``EMAILID`` (RFC 8474) is the id the index gave the message when it was stored, kept by COPY/MOVE;
  ``THREADID`` is the id given when it was stored (:mod:`imapd.store.threadids`), NIL for messages
  stored before the index kept thread ids or never parsed (RFC 8474 5.2 allows NIL).
- ``BINARY[...]`` is a ``literal8`` with the transfer encoding undone; :class:`imapd.mime.UnknownEncoding`
  propagates so the session can answer ``NO [UNKNOWN-CTE]``.

Batches and the serialized-value cache (a FETCH of many messages, and webmails re-fetching a page):

- :meth:`FetchPlan.prefetch` returns a :class:`FetchBatch` for the UIDs of one command. It loads cached
  metadata with one :meth:`Mailbox.metadata_many` query per chunk of :data:`BATCH_SIZE` UIDs (and, when
  the plan needs them, size/INTERNALDATE with one ``message_info`` per chunk) instead of one query per
  message, and only for messages whose values are not in the cache.
- ENVELOPE, BODY and BODYSTRUCTURE rendered through a batch are serialized once and kept as
  :class:`~imapd.protocol.values.Raw` bytes in a per-process LRU (:data:`VALUE_CACHE`, bounded by bytes:
  :data:`DEFAULT_CACHE_BYTES`, 32 MiB; a value over :data:`MAX_CACHED_VALUE` is not kept). The key is
  ``(user, MAILBOXID, UIDVALIDITY, UID, utf8, item)``. A message never changes under a UID while the
  UIDVALIDITY stays the same, and a UID is never reused within one UIDVALIDITY (RFC 3501 2.3.1.1), so an
  entry can be stale only if the mailbox is re-created: MAILBOXID (RFC 8474, random per creation) and
  UIDVALIDITY change then. Expunged messages' entries are never asked for again and age out of the LRU.
  ``utf8`` is part of the key because the serializer writes 8-bit header strings differently under
  UTF8=ACCEPT (quoted UTF-8) than without it (a literal).
"""

from __future__ import annotations

import datetime
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
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
    literal_safe,
    literal_section,
)
from imapd.mime.preview import preview_text
from imapd.protocol.fetch_items import BinarySize, FetchAttr, FetchBody, FetchItem, FetchPreview
from imapd.protocol.response_writer import ResponseWriter
from imapd.protocol.values import Atom, Literal8, Raw, Value, format_internaldate
from imapd.store.mailbox import Mailbox, MessageInfo

__all__ = ["BATCH_SIZE", "DEFAULT_CACHE_BYTES", "MAX_CACHED_VALUE", "VALUE_CACHE", "FetchBatch", "FetchPlan",
           "ValueCache", "body_value", "compiled_plan", "envelope_value", "render", "whole_message_kind"]

DEFAULT_CACHE_BYTES = 32 * 1024 * 1024
"""Bound of :data:`VALUE_CACHE` (serialized bytes plus a per-entry allowance for the key)."""
MAX_CACHED_VALUE = 256 * 1024
"""A serialized value larger than this is rendered every time rather than cached."""
BATCH_SIZE = 256
"""UIDs whose metadata one :class:`FetchBatch` query loads."""
_ENTRY_OVERHEAD = 200

CacheKey = tuple[str, str, int, int, bool, str]


class ValueCache:
    """A byte-bounded LRU of serialized FETCH values (see the module docstring)."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[CacheKey, Raw] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: CacheKey) -> Raw | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: CacheKey, value: Raw) -> None:
        cost = len(value.data) + _ENTRY_OVERHEAD
        if len(value.data) > MAX_CACHED_VALUE or cost > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= len(old.data) + _ENTRY_OVERHEAD
            self._data[key] = value
            self.bytes += cost
            while self.bytes > self.max_bytes:
                _, dropped = self._data.popitem(last=False)
                self.bytes -= len(dropped.data) + _ENTRY_OVERHEAD

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = 0


VALUE_CACHE = ValueCache()
_WRITERS = (ResponseWriter(utf8=False), ResponseWriter(utf8=True))

_INFO_ATTRS = frozenset({"RFC822.SIZE", "INTERNALDATE", "EMAILID", "THREADID", "SAVEDATE"})
_META_ATTRS = frozenset({"ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822.HEADER", "RFC822.TEXT"})
_RAW_ATTRS = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT"})
_SEEN_ATTRS = frozenset({"RFC822", "RFC822.TEXT"})
_FLAG_ATTRS = frozenset({"FLAGS", "UID", "MODSEQ"})


class _Message:
    """One message while it is rendered: what the caller passed, and what was loaded (once) on demand."""

    __slots__ = ("_info", "_meta", "_raw", "batch", "flags", "mailbox", "modseq", "uid")

    def __init__(self, mailbox: Mailbox, uid: int, info: MessageInfo | None, flags: tuple[str, ...],
                 modseq: int | None, batch: FetchBatch | None = None) -> None:
        self.mailbox = mailbox
        self.uid = uid
        self.flags = flags
        self.modseq = modseq
        self.batch = batch
        self._info = info
        self._meta: MessageMetadata | None = None
        self._raw: bytes | None = None

    def info(self) -> MessageInfo:
        if self._info is None and self.batch is not None:
            self._info = self.batch.info(self.uid)
        if self._info is None:
            rows = self.mailbox.message_info([self.uid])
            if not rows:
                raise KeyError(self.uid)
            self._info = rows[0]
        return self._info

    def meta(self) -> MessageMetadata:
        if self._meta is None and self.batch is not None:
            self._meta = self.batch.meta(self.uid)
        if self._meta is None:
            self._meta = self.mailbox.metadata(self.uid)
        return self._meta

    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = self.mailbox.read_message(self.uid)
        return self._raw

    def preview(self, lazy: bool) -> str | None:
        """RFC 8970 preview from the index cache (computed and cached now unless ``lazy``)."""
        if self.batch is not None:
            text = self.batch.preview(self.uid)
            if text is not None or lazy:
                return text
        if self._raw is not None and not lazy:
            return preview_text(self._raw)
        return self.mailbox.previews([self.uid], None if lazy else preview_text).get(self.uid)


_Renderer = Callable[[_Message], Value]


class FetchPlan:
    """The compiled items of one FETCH command.

    - ``needs_info``: RFC822.SIZE or INTERNALDATE (pass ``info`` from one batched ``message_info``);
    - ``needs_metadata``: ENVELOPE, BODY, BODYSTRUCTURE, and top-level HEADER/TEXT sections (sliced at
      the cached header size);
    - ``needs_raw``: any body section, RFC822*, BINARY, BINARY.SIZE;
    - ``sets_seen``: ``BODY[...]``/``BINARY[...]`` without ``.PEEK``, ``RFC822`` or ``RFC822.TEXT``
      (RFC 3501 6.4.5; ``RFC822.HEADER`` is ``BODY.PEEK[HEADER]``);
    - ``wants_flags``/``wants_uid``/``wants_modseq``: those items were asked for explicitly;
    - ``flags_only``: nothing but UID, FLAGS and MODSEQ (the in-memory index answers it all);
    - ``whole_messages``: those and at least one whole message (:func:`whole_message_kind`), nothing else.
    """

    __slots__ = ("_renderers", "cacheable", "flags_only", "items", "needs_info", "needs_metadata", "needs_preview",
                 "needs_raw", "sets_seen", "uncached_info", "wants_flags", "wants_modseq", "wants_uid",
                 "whole_messages", "wire_items")

    def __init__(self, items: Iterable[FetchItem]) -> None:
        self.items: tuple[FetchItem, ...] = tuple(items)
        self.needs_info = False
        self.needs_metadata = False
        self.needs_raw = False
        self.needs_preview: bool | None = None  # None: no PREVIEW; False: only PREVIEW (LAZY)
        self.sets_seen = False
        self.wants_flags = False
        self.wants_uid = False
        self.wants_modseq = False
        renderers: list[tuple[str, _Renderer]] = []
        cacheable = set()
        for item in self.items:
            key = item.response_key()
            if _cacheable_section(item):
                # Like ENVELOPE, a function of the message's bytes only (which never change for a UID)
                # and small: a webmail's message list asks the same header fields of the same page again.
                self.sets_seen |= not cast(FetchBody, item).peek
                cacheable.add(key)
                renderers.append((key, _body_section(cast(FetchBody, item))))
                continue
            if key in _CACHEABLE:
                cacheable.add(key)
            renderers.append((key, self._compile(item)))
        self._renderers = tuple(renderers)
        self.cacheable = frozenset(cacheable)
        """Response keys whose values come from the value cache (rendered, and read, only on a miss)."""
        self.uncached_info = any(isinstance(i, FetchAttr) and i.name in _INFO_ATTRS - _CACHEABLE
                                 for i in self.items)
        """Some item needs the index's message info on every FETCH (EMAILID, THREADID, SAVEDATE)."""
        self.wire_items = self._wire_items()
        """For :meth:`wire`: per item (kind, key bytes first, key bytes later, key, renderer), when every
        item is UID, FLAGS, MODSEQ or a cacheable value; None otherwise."""
        # Only UID, FLAGS and MODSEQ: the in-memory index has it all (the session's FLAGS fast path).
        self.flags_only = all(isinstance(i, FetchAttr) and i.name in _FLAG_ATTRS for i in self.items)
        # UID/FLAGS/MODSEQ and whole messages only (BODY[], RFC822, BINARY[]): the session's file path.
        kinds = [whole_message_kind(i) for i in self.items]
        self.whole_messages = (not self.flags_only and all(k is not None for k in kinds))

    def _wire_items(self) -> tuple[tuple[str, bytes, bytes, str, _Renderer], ...] | None:
        out = []
        for item, (key, renderer) in zip(self.items, self._renderers, strict=True):
            if key in self.cacheable:
                kind = "cached"
            elif isinstance(item, FetchAttr) and item.name in _FLAG_ATTRS:
                kind = item.name
            else:
                return None
            first = key.encode() + b" "
            out.append((kind, first, b" " + first, key, renderer))
        return tuple(out)

    def wire(self, batch: FetchBatch, rows: Iterable[tuple[int, int, tuple[str, ...], int]], *,
             want_uid: bool) -> tuple[bytes, bool]:
        """The ``* seq FETCH (...)`` responses of ``rows`` (seq, uid, flags to show, modseq) as one
        bytes, for a plan with :attr:`wire_items` (no \\Seen to add, no UIDFETCH): the same bytes as
        :func:`render` and the response writer give, without a response object per message (a page of
        50 envelopes is most of a webmail request's server time). Also whether a message was gone."""
        items = self.wire_items
        assert items is not None
        atom = _WRITERS[0].atom
        flag_bytes: dict[tuple[str, ...], bytes] = {}
        out: list[bytes] = []
        append = out.append
        gone = False
        cache_get = batch._cache.get
        prefix = batch._prefix
        utf8 = batch.utf8
        for seq, uid, flags, modseq in rows:
            piece = [b"* %d FETCH (UID %d" % (seq, uid) if want_uid else b"* %d FETCH (" % seq]
            later = 1 if want_uid else 0
            try:
                for kind, first, after, key, renderer in items:
                    piece.append(after if later else first)
                    later = 1
                    if kind == "cached":
                        value: Value = cache_get((*prefix, uid, utf8, key))
                        if value is None:
                            value = batch.cached(_Message(batch.mailbox, uid, None, flags, modseq, batch), key,
                                                 renderer)
                        piece.append(cast(Raw, value).data)
                    elif kind == "FLAGS":
                        data = flag_bytes.get(flags)
                        if data is None:
                            data = flag_bytes[flags] = b"(" + b" ".join([atom(f) for f in flags]) + b")"
                        piece.append(data)
                    elif kind == "UID":
                        piece.append(b"%d" % uid)
                    else:
                        piece.append(b"(%d)" % modseq)
            except (FileNotFoundError, KeyError):
                gone = True
                continue
            piece.append(b")\r\n")
            append(b"".join(piece))
        return b"".join(out), gone

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
        if isinstance(item, FetchPreview):
            self.needs_preview = bool(self.needs_preview) or not item.lazy
            return _preview(item.lazy)
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
               modseq: int | None, batch: FetchBatch | None = None) -> list[tuple[str, Value]]:
        """See :func:`render`."""
        message = _Message(mailbox, uid, info, flags, modseq, batch)
        if batch is None:
            return [(key, renderer(message)) for key, renderer in self._renderers]
        out: list[tuple[str, Value]] = []
        cacheable = self.cacheable
        for key, renderer in self._renderers:
            if key in cacheable:
                out.append((key, batch.cached(message, key, renderer)))
            else:
                out.append((key, renderer(message)))
        return out

    def prefetch(self, mailbox: Mailbox, uids: Sequence[int], *, utf8: bool,
                 cache: ValueCache | None = None) -> FetchBatch:
        """A :class:`FetchBatch` for rendering ``uids`` (in this order) on a connection whose UTF8=ACCEPT
        state is ``utf8``. Loading is lazy, :data:`BATCH_SIZE` messages at a time."""
        return FetchBatch(self, mailbox, uids, utf8=utf8, cache=VALUE_CACHE if cache is None else cache)


_CACHEABLE = frozenset({"ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822.SIZE", "INTERNALDATE"})
"""Items that depend on nothing but the message, which never changes for a UID (RFC 3501 2.3.1.1, 2.3.3,
2.3.4), so their serialized values can be kept."""
_FIELD_SECTIONS = frozenset({"HEADER.FIELDS", "HEADER.FIELDS.NOT"})


def _cacheable_section(item: FetchItem) -> bool:
    """``BODY[HEADER.FIELDS (...)]`` (or ``.NOT``) of the whole message, without a partial range: the
    message list of a webmail (Roundcube's, for one)."""
    return (isinstance(item, FetchBody) and not item.binary and item.partial is None
            and not item.section.part and item.section.text in _FIELD_SECTIONS)

_PLANS: dict[tuple[FetchItem, ...], FetchPlan] = {}
_PLANS_MAX = 256


def compiled_plan(items: Iterable[FetchItem]) -> FetchPlan:
    """The :class:`FetchPlan` of ``items``, compiled once per process for a list of items seen before (a
    webmail sends the same few FETCH commands again and again; a plan is not changed after it is built).
    Raises ValueError like the constructor."""
    key = tuple(items)
    try:
        plan = _PLANS.get(key)
    except TypeError:  # (an item holding a list: not hashable)
        return FetchPlan(key)
    if plan is None:
        plan = FetchPlan(key)
        if len(_PLANS) < _PLANS_MAX:
            _PLANS[key] = plan
    return plan


class FetchBatch:
    """Batched loading for one FETCH command (see the module docstring): pass it to :func:`render`.

    When a message is rendered that the batch has not loaded, the batch loads it and the next
    :data:`BATCH_SIZE` - 1 messages of its UID list (metadata only of those whose cacheable values are not
    all in the cache), forgetting the previous chunk.
    """

    __slots__ = ("_cache", "_cached_items", "_infos", "_loaded", "_metas", "_pos", "_prefix", "_previews",
                 "mailbox", "plan", "uids", "utf8")

    def __init__(self, plan: FetchPlan, mailbox: Mailbox, uids: Sequence[int], *, utf8: bool,
                 cache: ValueCache) -> None:
        self.plan = plan
        self.mailbox = mailbox
        self.uids = list(uids)
        self.utf8 = utf8
        self._cache = cache
        self._pos = {u: i for i, u in enumerate(self.uids)}
        self._prefix = (mailbox.user, mailbox.mailboxid, mailbox.uidvalidity)
        self._cached_items = tuple(k for k, _ in plan._renderers if k in plan.cacheable)
        self._loaded: set[int] = set()
        self._metas: dict[int, MessageMetadata] = {}
        self._infos: dict[int, MessageInfo] = {}
        self._previews: dict[int, str] = {}

    def key(self, uid: int, item: str) -> CacheKey:
        user, mailboxid, uidvalidity = self._prefix
        return (user, mailboxid, uidvalidity, uid, self.utf8, item)

    def _load(self, uid: int) -> None:
        pos = self._pos.get(uid)
        chunk = [uid] if pos is None else self.uids[pos : pos + BATCH_SIZE]
        self._loaded = set(chunk)
        plan = self.plan
        need = chunk
        if self._cached_items and (plan.needs_metadata or plan.needs_info):
            # skip the messages whose cacheable values are all cached
            peek = self._cache._data
            need = [u for u in chunk if any(self.key(u, item) not in peek for item in self._cached_items)]
        info_for = chunk if plan.uncached_info else need
        self._infos = {i.uid: i for i in self.mailbox.message_info(info_for)} if plan.needs_info and info_for else {}
        if plan.needs_raw:  # (HEADER/TEXT sections need every message's header size)
            need = chunk
        self._metas = self.mailbox.metadata_many(need) if plan.needs_metadata and need else {}
        if plan.needs_preview is not None:  # one query (and at most one write) per chunk
            self._previews = self.mailbox.previews(chunk, preview_text if plan.needs_preview else None)

    def preview(self, uid: int) -> str | None:
        if uid not in self._loaded:
            self._load(uid)
        return self._previews.get(uid)

    def all_cached(self, uids: Iterable[int]) -> bool:
        """Every cacheable value of the plan is in the cache for these UIDs (so rendering reads nothing),
        and the plan needs nothing else from the index."""
        if self.plan.needs_raw or self.plan.uncached_info:
            return False
        data = self._cache._data
        user, mailboxid, uidvalidity = self._prefix
        utf8 = self.utf8
        items = self._cached_items
        return all((user, mailboxid, uidvalidity, u, utf8, item) in data for u in uids for item in items)

    def info(self, uid: int) -> MessageInfo | None:
        if uid not in self._loaded:
            self._load(uid)
        return self._infos.get(uid)

    def meta(self, uid: int) -> MessageMetadata | None:
        if uid not in self._loaded:
            self._load(uid)
        return self._metas.get(uid)

    def cached(self, message: _Message, item: str, renderer: _Renderer) -> Value:
        key = self.key(message.uid, item)
        value = self._cache.get(key)
        if value is None:
            out: list[bytes] = []
            _WRITERS[self.utf8].value(renderer(message), out)
            value = Raw(b"".join(out))
            self._cache.put(key, value)
        return value


def whole_message_kind(item: FetchItem) -> str | None:
    """``"flag"`` for UID, FLAGS, MODSEQ; ``"text"`` for an item that is the whole message in a ``{n}``
    literal (``BODY[]``, ``BODY.PEEK[]``, ``RFC822``); ``"binary"`` for one in ``~{n}`` (``BINARY[]``,
    ``BINARY.PEEK[]``: the whole message has no transfer encoding to undo); None for anything else."""
    if isinstance(item, FetchAttr):
        return "flag" if item.name in _FLAG_ATTRS else "text" if item.name == "RFC822" else None
    if isinstance(item, FetchBody) and item.partial is None and item.section == _WHOLE:
        return "binary" if item.binary else "text"
    return None


_WHOLE = FetchBody().section


def render(plan: FetchPlan, mailbox: Mailbox, uid: int, *, info: MessageInfo | None,
           flags: tuple[str, ...], modseq: int | None, batch: FetchBatch | None = None) -> list[tuple[str, Value]]:
    """The FETCH items of ``plan`` for message ``uid``, in request order, with their response keys.

    ``info`` should come from a batched ``mailbox.message_info`` when ``plan.needs_info`` (it is looked
    up alone otherwise, or from ``batch``); ``flags`` are the flags to show (the session adds ``\\Recent``
    and the implicit ``\\Seen``); ``modseq`` None means the mailbox's current value. With ``batch`` (from
    :meth:`FetchPlan.prefetch`), metadata comes from its batched queries and ENVELOPE/BODY/BODYSTRUCTURE
    are :class:`~imapd.protocol.values.Raw` serialized bytes from the value cache. Raises KeyError when the
    message is gone and :class:`imapd.mime.UnknownEncoding` for BINARY of an unknown transfer encoding.
    """
    return plan.render(mailbox, uid, info=info, flags=flags, modseq=modseq, batch=batch)


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
        out += [part.md5, _disposition(part.disposition), _language(part.language), part.location]
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


def _savedate(m: _Message) -> Value:
    # RFC 8514: never NIL here, every mailbox keeps save dates (older messages show their INTERNALDATE).
    return format_internaldate(datetime.datetime.fromtimestamp(m.info().savedate, datetime.UTC))


def _size(m: _Message) -> Value:
    return m.info().size


def _emailid(m: _Message) -> Value:
    return [Atom(m.info().emailid)]  # RFC 8474 5.1: kept by COPY/MOVE, never reused


def _threadid(m: _Message) -> Value:
    threadid = m.info().threadid  # given once when stored (imapd/store/threadids.py)
    return None if threadid is None else [Atom(threadid)]  # RFC 8474 5.2: NIL when not known


def _envelope(m: _Message) -> Value:
    return envelope_value(m.meta().envelope)


def _body(m: _Message) -> Value:
    return body_value(m.meta().body, False)


def _bodystructure(m: _Message) -> Value:
    return body_value(m.meta().body, True)


def _literal(data: bytes) -> Value:
    return data if data else ""


def _rfc822(m: _Message) -> Value:
    raw = m.raw()
    return _literal(literal_safe(raw, 0, len(raw)))  # like BODY[]: never NUL in a plain literal


def _rfc822_header(m: _Message) -> Value:
    return _literal(m.raw()[: m.meta().header_size])


def _rfc822_text(m: _Message) -> Value:
    raw = m.raw()
    return _literal(literal_safe(raw, m.meta().header_size, len(raw)))


_ATTRS: dict[str, _Renderer] = {
    "FLAGS": _flags,
    "UID": _uid,
    "MODSEQ": _modseq,
    "INTERNALDATE": _internaldate,
    "RFC822.SIZE": _size,
    "SAVEDATE": _savedate,
    "EMAILID": _emailid,
    "THREADID": _threadid,
    "ENVELOPE": _envelope,
    "BODY": _body,
    "BODYSTRUCTURE": _bodystructure,
    "RFC822": _rfc822,
    "RFC822.HEADER": _rfc822_header,
    "RFC822.TEXT": _rfc822_text,
}


def _preview(lazy: bool) -> _Renderer:
    """RFC 8970: the cached preview; under LAZY, NIL when it was not computed yet (never computed then:
    the client asks again without LAZY for the messages it got NIL for)."""

    def render(m: _Message) -> Value:
        return m.preview(lazy)

    return render


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
        raw = m.raw()
        return _literal(_slice(literal_safe(raw, 0, len(raw)), partial))

    def header(m: _Message) -> Value:
        return _literal(_slice(m.raw()[: m.meta().header_size], partial))

    def text(m: _Message) -> Value:
        raw = m.raw()
        return _literal(_slice(literal_safe(raw, m.meta().header_size, len(raw)), partial))

    def other(m: _Message) -> Value:
        data = literal_section(m.raw(), part, kind, fields)
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
