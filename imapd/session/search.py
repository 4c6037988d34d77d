"""SEARCH: evaluate a :mod:`imapd.protocol.search_keys` tree over the messages the client sees.

The tree is compiled into nodes that know their cost:

0. in memory: ALL, flags (``mailbox.flags``), ``\\Recent``, message/UID sets, ``$``, MODSEQ;
1. index rows: LARGER/SMALLER, BEFORE/ON/SINCE, SAVED*, OLDER/YOUNGER, EMAILID/THREADID (one batched ``message_info`` for the
   candidates);
2. cached metadata: SENTBEFORE/SENTON/SENTSINCE, FROM/TO/CC/BCC/SUBJECT;
3. the raw message: HEADER, BODY, TEXT.

Sets of candidates flow through the tree: an AND runs its children cheapest first, each on what
survived the previous ones; an OR tests its right side only on what the left side did not match. Parts of
the tree that need the raw message are evaluated message by message, so each file is read at most once
and only for messages that survived every cheaper key.

Semantics:

- BEFORE/ON/SINCE compare the calendar date of INTERNALDATE in UTC (RFC 3501: date only, disregarding
  time and timezone; the index keeps Unix seconds, and UTC is what FETCH INTERNALDATE shows).
- SAVEDBEFORE/SAVEDON/SAVEDSINCE (RFC 8514) compare the UTC calendar date of the save date (the
  INTERNALDATE for messages stored before the index kept save dates); SAVEDATESUPPORTED matches every
  message, since every mailbox keeps them.
- OLDER n / YOUNGER n (RFC 5032) compare INTERNALDATE with ``now`` (taken once per command): OLDER n
  matches an age of at least n seconds, YOUNGER n an age below n, so ``NOT YOUNGER n`` is ``OLDER n``.
- SENTBEFORE/SENTON/SENTSINCE compare the date as written in the Date header (in the header's own zone);
  a missing or unparsable Date falls back to the INTERNALDATE date.
- FROM/TO/CC/BCC match a case-insensitive substring of the addresses (RFC 2047-decoded display name and
  ``<mailbox@host>``), SUBJECT of the decoded subject; HEADER of any decoded value of that field (an
  empty string matches every message that has the field); BODY/TEXT use :func:`imapd.mime.text_contains`.
- ``MODSEQ`` with an entry name compares the message MODSEQ (we keep no per-flag MODSEQ, which
  RFC 7162 3.1.5 allows).
- EMAILID / THREADID compare the RFC 8474 id exactly (ids are case-sensitive); a message whose
  THREADID is NIL matches no THREADID.
- A message that vanished from the store while still in the client's view matches no positive key.
"""

from __future__ import annotations

import bisect
import datetime
from collections.abc import Callable, Container, Sequence

import msgspec

from imapd.mime import (
    Address,
    Envelope,
    SearchWhere,
    decode_words,
    header_values,
    parse_date,
    text_contains,
)
from imapd.protocol.search_keys import (
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchObjectId,
    SearchOr,
    SearchSaveDateSupported,
    SearchSequence,
    SearchSize,
    SearchText,
    SearchWithin,
)
from imapd.session.errors import CommandNo
from imapd.store.mailbox import Mailbox, MessageInfo

__all__ = ["SEARCH_CHARSETS", "BadCharset", "search"]

SEARCH_CHARSETS = ("UTF-8", "US-ASCII")

_MEMORY, _INDEX, _METADATA, _RAW = 0, 1, 2, 3
_META_CHUNK = 1024

# HEADER fields answered from the cached ENVELOPE (attribute of imapd.mime.Envelope).
_ENVELOPE_HEADERS = {"SUBJECT": "subject", "FROM": "from_", "TO": "to", "CC": "cc", "BCC": "bcc",
                     "REPLY-TO": "reply_to", "SENDER": "sender", "MESSAGE-ID": "message_id",
                     "IN-REPLY-TO": "in_reply_to"}


class _Envelope(msgspec.Struct, array_like=True, gc=False):
    """The leading field of the cached ``MessageMetadata`` (the decoder ignores the trailing ones)."""

    envelope: Envelope


_ENVELOPE_DECODER = msgspec.msgpack.Decoder(_Envelope)
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_SECONDS_PER_DAY = 86400


class BadCharset(CommandNo):
    """A SEARCH charset we do not support: ``NO [BADCHARSET (UTF-8 US-ASCII)]``."""

    def __init__(self, charset: str) -> None:
        super().__init__(f"Unsupported charset {charset}", "BADCHARSET", "(" + " ".join(SEARCH_CHARSETS) + ")")
        self.charset = charset


def search(mailbox: Mailbox, uids: Sequence[int], key: SearchKey, *, saved: Sequence[int] | None = None,
           charset: str | None = None, recent: Container[int] | None = None,
           now: datetime.datetime | None = None,
           progress: Callable[[int, int | None], None] | None = None) -> list[int]:
    """UIDs (ascending) of the messages in ``uids`` that match ``key``.

    ``uids`` is the client's view in ascending order (message number n is ``uids[n - 1]``); ``saved``
    holds the UIDs of the SEARCHRES result (``$``); ``recent`` holds the UIDs that are ``\\Recent`` for
    this session (None: nothing is). ``charset`` must be None, US-ASCII or UTF-8, else
    :class:`BadCharset` is raised before any work. ``now`` is the present for OLDER/YOUNGER (RFC 5032);
    None: the current time. ``progress(position, len(uids))`` is called before each message file is read
    (RFC 9585 INPROGRESS).
    """
    if charset is not None and charset.upper() not in SEARCH_CHARSETS:
        raise BadCharset(charset)
    when = (now or datetime.datetime.now(datetime.UTC)).timestamp()
    evaluator = _Evaluator(mailbox, uids, saved, recent, when)
    evaluator.progress = progress
    root = evaluator.compile(key)
    matched = evaluator.select(root, list(range(len(uids))))
    return [uids[pos] for pos in matched]


# ----------------------------------------------------------------------------------------------- nodes


class _Leaf:
    __slots__ = ("cost", "test")

    def __init__(self, cost: int, test: Callable[[int], bool]) -> None:
        self.cost: int = cost
        self.test = test


class _And:
    __slots__ = ("children", "cost")

    def __init__(self, children: list[_Node]) -> None:
        self.children = sorted(children, key=lambda c: c.cost)
        self.cost: int = max((c.cost for c in children), default=_MEMORY)


class _Or:
    __slots__ = ("cost", "first", "second")

    def __init__(self, left: _Node, right: _Node) -> None:
        self.first, self.second = (left, right) if left.cost <= right.cost else (right, left)
        self.cost: int = max(left.cost, right.cost)


class _Not:
    __slots__ = ("child", "cost")

    def __init__(self, child: _Node) -> None:
        self.child = child
        self.cost: int = child.cost


_Node = _Leaf | _And | _Or | _Not


def _needle(value: str | bytes) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text.casefold()


def _address_text(addrs: list[Address] | None) -> str:
    if not addrs:
        return ""
    out: list[str] = []
    for a in addrs:
        if a.name:
            out.append(decode_words(a.name))
        if a.mailbox is not None and a.host is not None:
            out.append(f"<{a.mailbox}@{a.host}>")
        elif a.mailbox:
            out.append(a.mailbox)  # group name
    return " ".join(out).casefold()


def _day(unix_seconds: int) -> int:
    return unix_seconds // _SECONDS_PER_DAY


def _compare(key: str) -> Callable[[int, int], bool]:
    if key.endswith("BEFORE"):
        return lambda day, wanted: day < wanted
    if key.endswith("ON"):
        return lambda day, wanted: day == wanted
    return lambda day, wanted: day >= wanted


class _Evaluator:
    def __init__(self, mailbox: Mailbox, uids: Sequence[int], saved: Sequence[int] | None,
                 recent: Container[int] | None, now: float) -> None:
        self.mailbox = mailbox
        self.now = now
        self.uids = uids
        self.saved = frozenset(saved or ())
        self.recent = recent
        self._infos: dict[int, MessageInfo | None] = {}
        self._metas: dict[int, _Envelope | None] = {}
        self._raw_pos = -1
        self._raw: bytes | None = None
        self.progress: Callable[[int, int | None], None] | None = None

    # -- loading -------------------------------------------------------------------------------------------
    def prefetch_info(self, positions: Sequence[int]) -> None:
        """One ``message_info`` query for every candidate whose index row is not loaded yet."""
        missing = [self.uids[p] for p in positions if self.uids[p] not in self._infos]
        if not missing:
            return
        for info in self.mailbox.message_info(missing):
            self._infos[info.uid] = info
        for uid in missing:
            self._infos.setdefault(uid, None)

    def info(self, pos: int) -> MessageInfo | None:
        uid = self.uids[pos]
        if uid not in self._infos:
            self.prefetch_info([pos])
        return self._infos[uid]

    def prefetch_meta(self, positions: Sequence[int]) -> None:
        """Envelopes of these candidates in one index query, decoding nothing else of the cached metadata
        (BODYSTRUCTURE and the rest are skipped undecoded). Replaces what was loaded before, so memory is
        bounded by the chunk size, not the mailbox."""
        uids = [self.uids[p] for p in positions]
        metas: dict[int, _Envelope | None] = dict.fromkeys(uids)
        for uid, blob in self.mailbox.index_rows(uids, "meta"):
            if blob is None:
                blob = self.mailbox.metadata_blob(uid)
            if blob is not None:
                try:
                    metas[uid] = _ENVELOPE_DECODER.decode(blob)
                except msgspec.DecodeError:
                    metas[uid] = None
        self._metas = metas

    def meta(self, pos: int) -> _Envelope | None:
        uid = self.uids[pos]
        if uid not in self._metas:
            self.prefetch_meta([pos])
        return self._metas[uid]

    def raw(self, pos: int) -> bytes | None:
        """The raw message; only the last one read is kept (messages are visited one at a time)."""
        if pos != self._raw_pos:
            self._raw_pos = pos
            if self.progress is not None:
                self.progress(pos, len(self.uids))
            try:
                self._raw = self.mailbox.read_message(self.uids[pos])
            except KeyError:
                self._raw = None
        return self._raw

    # -- compiling -----------------------------------------------------------------------------------------
    def compile(self, key: SearchKey) -> _Node:
        if isinstance(key, SearchAnd):
            return _And([self.compile(k) for k in key.keys])
        if isinstance(key, SearchOr):
            return _Or(self.compile(key.left), self.compile(key.right))
        if isinstance(key, SearchNot):
            return _Not(self.compile(key.key))
        if isinstance(key, (SearchAll, SearchSaveDateSupported)):  # every mailbox keeps save dates
            return _Leaf(_MEMORY, lambda pos: True)
        if isinstance(key, SearchFlag):
            return self._flag(key)
        if isinstance(key, SearchSequence):
            return self._sequence(key)
        if isinstance(key, SearchModSeq):
            return self._modseq(key)
        if isinstance(key, SearchSize):
            return self._size(key)
        if isinstance(key, SearchDate):
            return self._date(key)
        if isinstance(key, SearchText):
            return self._text(key)
        if isinstance(key, SearchWithin):
            return self._within(key)
        if isinstance(key, SearchObjectId):
            return self._objectid(key)
        if isinstance(key, SearchHeader):
            return self._header(key)
        raise TypeError(f"unknown search key {key!r}")

    def _flag(self, key: SearchFlag) -> _Leaf:
        wanted, present = key.flag.casefold(), key.present
        uids = self.uids
        if wanted == "\\recent":
            recent = self.recent
            if recent is None:
                return _Leaf(_MEMORY, lambda pos: not present)
            return _Leaf(_MEMORY, lambda pos: (uids[pos] in recent) == present)
        flags_of = self.mailbox.flags

        def test(pos: int) -> bool:
            flags = flags_of(uids[pos])
            if flags is None:
                return False
            return any(f.casefold() == wanted for f in flags) == present

        return _Leaf(_MEMORY, test)

    def _sequence(self, key: SearchSequence) -> _Leaf:
        uids = self.uids
        if key.sequence.saved:
            saved = self.saved
            return _Leaf(_MEMORY, lambda pos: uids[pos] in saved)
        if key.uid:
            ranges = key.sequence.resolve(uids[-1] if uids else 0)
        else:
            ranges = key.sequence.resolve(len(uids))
        starts = [a for a, _ in ranges]
        ends = [b for _, b in ranges]

        def contains(n: int) -> bool:
            i = bisect.bisect_right(starts, n) - 1
            return i >= 0 and n <= ends[i]

        if key.uid:
            return _Leaf(_MEMORY, lambda pos: contains(uids[pos]))
        return _Leaf(_MEMORY, lambda pos: contains(pos + 1))

    def _modseq(self, key: SearchModSeq) -> _Leaf:
        wanted, uids, modseq_of = key.modseq, self.uids, self.mailbox.modseq

        def test(pos: int) -> bool:
            value = modseq_of(uids[pos])
            return value is not None and value >= wanted

        return _Leaf(_MEMORY, test)

    def _size(self, key: SearchSize) -> _Leaf:
        size, larger, info_of = key.size, key.larger, self.info

        def test(pos: int) -> bool:
            info = info_of(pos)
            if info is None:
                return False
            return info.size > size if larger else info.size < size

        return _Leaf(_INDEX, test)

    def _date(self, key: SearchDate) -> _Leaf:
        wanted = key.date.toordinal() - _EPOCH_ORDINAL
        compare, info_of, meta_of = _compare(key.key), self.info, self.meta

        if key.key.startswith("SAVED"):
            def saved(pos: int) -> bool:
                info = info_of(pos)
                return info is not None and compare(_day(info.savedate), wanted)

            return _Leaf(_INDEX, saved)
        if not key.key.startswith("SENT"):
            def internal(pos: int) -> bool:
                info = info_of(pos)
                return info is not None and compare(_day(info.internaldate), wanted)

            return _Leaf(_INDEX, internal)

        def sent(pos: int) -> bool:
            meta = meta_of(pos)
            if meta is None:
                return False
            when = parse_date(meta.envelope.date)
            if when is not None:
                day = when.date().toordinal() - _EPOCH_ORDINAL
            else:
                info = info_of(pos)
                if info is None:
                    return False
                day = _day(info.internaldate)
            return compare(day, wanted)

        return _Leaf(_METADATA, sent)

    def _within(self, key: SearchWithin) -> _Leaf:
        cut, older, info_of = self.now - key.seconds, key.older, self.info

        def test(pos: int) -> bool:
            info = info_of(pos)
            if info is None:
                return False
            return info.internaldate <= cut if older else info.internaldate > cut

        return _Leaf(_INDEX, test)

    def _objectid(self, key: SearchObjectId) -> _Leaf:
        wanted, info_of, thread = key.id, self.info, key.key == "THREADID"

        def test(pos: int) -> bool:
            info = info_of(pos)
            if info is None:
                return False
            return (info.threadid if thread else info.emailid) == wanted

        return _Leaf(_INDEX, test)

    def _text(self, key: SearchText) -> _Leaf:
        needle, where = _needle(key.value), key.key
        if where in ("BODY", "TEXT"):
            raw_of = self.raw
            area: SearchWhere = "BODY" if where == "BODY" else "TEXT"

            def in_text(pos: int) -> bool:
                raw = raw_of(pos)
                return raw is not None and text_contains(raw, needle, area)

            return _Leaf(_RAW, in_text)
        meta_of = self.meta
        if where == "SUBJECT":
            def in_subject(pos: int) -> bool:
                meta = meta_of(pos)
                subject = None if meta is None else meta.envelope.subject
                return subject is not None and needle in decode_words(subject).casefold()

            return _Leaf(_METADATA, in_subject)
        field = {"FROM": "from_", "TO": "to", "CC": "cc", "BCC": "bcc"}[where]

        def in_addresses(pos: int) -> bool:
            meta = meta_of(pos)
            if meta is None:
                return False
            addrs: list[Address] | None = getattr(meta.envelope, field)
            return addrs is not None and needle in _address_text(addrs)

        return _Leaf(_METADATA, in_addresses)

    def _header(self, key: SearchHeader) -> _Leaf:
        needle, name, raw_of = _needle(key.value), key.field, self.raw
        field = name.upper()
        if field in _ENVELOPE_HEADERS:
            # Webmails search HEADER SUBJECT/FROM/...: answer those from the cached ENVELOPE instead of
            # reading every message file. An empty string matches every message that has the field.
            return self._envelope_header(field, needle)

        def test(pos: int) -> bool:
            raw = raw_of(pos)
            if raw is None:
                return False
            return any(needle in value.casefold() for value in header_values(raw, name))

        return _Leaf(_RAW, test)

    def _envelope_header(self, field: str, needle: str) -> _Leaf:
        meta_of = self.meta
        attr = _ENVELOPE_HEADERS[field]

        def test(pos: int) -> bool:
            meta = meta_of(pos)
            if meta is None:
                return False
            value = getattr(meta.envelope, attr)
            if value is None:
                return False
            if isinstance(value, list):
                text = _address_text(value)
            else:
                text = decode_words(value).casefold() if field == "SUBJECT" else value.casefold()
            return needle in text

        return _Leaf(_METADATA, test)

    # -- evaluating ----------------------------------------------------------------------------------------
    def select(self, node: _Node, cands: list[int]) -> list[int]:
        """The candidates (ascending positions) that match ``node``."""
        if not cands:
            return cands
        if isinstance(node, _Leaf):
            test = node.test
            if node.cost == _INDEX:
                self.prefetch_info(cands)
            elif node.cost == _METADATA:
                out: list[int] = []
                for i in range(0, len(cands), _META_CHUNK):
                    chunk = cands[i : i + _META_CHUNK]
                    self.prefetch_meta(chunk)
                    out.extend(p for p in chunk if test(p))
                return out
            return [p for p in cands if test(p)]
        if isinstance(node, _And):
            rest: list[_Node] = []
            for child in node.children:
                if child.cost == _RAW and not isinstance(child, _And):
                    rest.append(child)
                elif cands:
                    cands = self.select(child, cands)
            if rest and cands:
                self.prefetch_info(cands)
                match = self.match
                cands = [p for p in cands if all(match(c, p) for c in rest)]
            return cands
        if node.cost == _RAW:  # OR / NOT over raw keys: one message at a time, each file read once
            self.prefetch_info(cands)
            return [p for p in cands if self.match(node, p)]
        if isinstance(node, _Or):
            first = self.select(node.first, cands)
            if not first:
                return self.select(node.second, cands)
            taken = set(first)
            second = self.select(node.second, [p for p in cands if p not in taken])
            return sorted(first + second) if second else first
        excluded = set(self.select(node.child, cands))
        return [p for p in cands if p not in excluded]

    def match(self, node: _Node, pos: int) -> bool:
        """Whether message ``pos`` matches ``node``; cheap children are tested first."""
        if isinstance(node, _Leaf):
            return node.test(pos)
        if isinstance(node, _And):
            return all(self.match(c, pos) for c in node.children)
        if isinstance(node, _Or):
            return self.match(node.first, pos) or self.match(node.second, pos)
        return not self.match(node.child, pos)
