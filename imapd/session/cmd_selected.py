"""Commands on the selected mailbox: FETCH, STORE, SEARCH/SORT/THREAD (ESEARCH, ESORT, CONTEXT, PARTIAL),
CANCELUPDATE, COPY, MOVE, EXPUNGE, CLOSE, UNSELECT, IDLE."""

from __future__ import annotations

import bisect
import collections
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from imapd.mime import UnknownEncoding, literal_safe
from imapd.protocol import commands as c
from imapd.protocol.fetch_items import FetchAttr
from imapd.protocol.response_codes import Code, CopyUidCode, ModifiedCode, NumberCode
from imapd.protocol.response_writer import ResponseWriter
from imapd.protocol.responses import (
    ContinuationResponse,
    EsearchResponse,
    EsearchValue,
    FetchData,
    FetchFlagsBatch,
    FetchResponse,
    FetchResponses,
    PartialResult,
    SearchResponse,
    SortResponse,
    ThreadResponse,
    UntaggedStatus,
    VanishedResponse,
)
from imapd.protocol.search_keys import (
    SearchAnd,
    SearchFlag,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchWithin,
)
from imapd.protocol.sequence import SequenceSet
from imapd.protocol.values import Atom, FileLiteral, Literal8, UndecodableName, Value
from imapd.session import contexts, threads
from imapd.session.errors import CommandBad, CommandNo
from imapd.session.fetch import FetchPlan, compiled_plan, render, whole_message_kind
from imapd.session.progress import Progress
from imapd.session.resync import vanished_since
from imapd.session.search import search as run_search
from imapd.session.session import Done, Session
from imapd.session.sortrows import sort_rows, sort_uids
from imapd.session.updates import flag_fetch
from imapd.session.view import SelectedView

if TYPE_CHECKING:
    from imapd.session.sorting import SortRow
    from imapd.store.content import MessageFile
from imapd.store.errors import NoSuchMailbox
from imapd.store.mailbox import FlagMode


def _view(s: Session) -> SelectedView:
    view = s.selected
    assert view is not None
    return view


def iter_resolve(s: Session, view: SelectedView, sequence: SequenceSet, *, uid: bool) -> Iterator[tuple[int, int]]:
    """(seq, uid) pairs the set names in the client's view, ascending, produced lazily so that a
    ``FETCH 1:*`` of a huge mailbox never holds a list of it. Checks the set before yielding anything."""
    if sequence.saved:
        saved = list(s.search_result or ())
        return ((seq, u) for u in saved if (seq := view.seq_of(u)) is not None)
    if uid:
        if view.exists == 0:
            return iter(())
        # ``*`` on UIDs is the largest UID even if the range is reversed (RFC 3501 6.4.8).
        ranges = sequence.resolve(view.max_uid, clip=False)
        return (pair for lo, hi in ranges for pair in view.uid_range_seqs(lo, hi))
    if view.exists == 0 or sequence.exceeds(view.exists):
        raise CommandBad("Message sequence number out of range")
    ranges = sequence.resolve(view.exists)
    return (pair for lo, hi in ranges for pair in view.seq_range_uids(lo, hi))


def resolve(s: Session, view: SelectedView, sequence: SequenceSet, *, uid: bool) -> list[tuple[int, int]]:
    """(seq, uid) pairs the set names in the client's view, ascending."""
    return list(iter_resolve(s, view, sequence, uid=uid))


def _flag_atoms(flags: Iterable[str]) -> Value:
    return [Atom(f) for f in flags]


def announce_keywords(s: Session, view: SelectedView) -> None:
    """``* FLAGS`` / ``* OK [PERMANENTFLAGS]`` when the mailbox has keywords the client was not told of."""
    keywords = view.keywords_changed()
    if keywords is not None:
        s.send_updates([keywords])


# -- FETCH --------------------------------------------------------------------------------------------------
_MODSEQ_ITEM = FetchAttr("MODSEQ")
_FLAGS_ITEM = FetchAttr("FLAGS")


async def fetch(s: Session, cmd: c.Fetch) -> Done:
    view = _view(s)
    mailbox = view.mailbox
    items = cmd.items
    if cmd.vanished and (not cmd.uid or cmd.changedsince is None or "QRESYNC" not in s.enabled):
        raise CommandBad("VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC (RFC 7162 3.2.6)")
    if cmd.changedsince is not None:
        s.enable_condstore()
        if _MODSEQ_ITEM not in items:
            items = (*items, _MODSEQ_ITEM)
    elif _MODSEQ_ITEM in items:
        s.enable_condstore()
    plan = compiled_plan(items)
    announce_keywords(s, view)
    pairs = iter_resolve(s, view, cmd.sequence, uid=cmd.uid)
    if cmd.partial is not None:
        pairs = iter(_partial_pairs(view, pairs, cmd.partial))
    if cmd.vanished and cmd.changedsince is not None:
        vanished = vanished_since(mailbox, cmd.changedsince, cmd.sequence)
        if vanished.ranges:
            s.send(VanishedResponse(vanished, earlier=True))
    gone = False
    flags_fast = plan.flags_only and cmd.partial is None  # (a PARTIAL page is small: the general path)
    if flags_fast:
        for seqs, uids in _flag_chunks(s, view, cmd.sequence, uid=cmd.uid):
            gone |= await _fetch_flags_chunk(s, view, cmd, plan, seqs, uids)
    # In chunks, so memory stays bounded whatever the set: FETCH 1:* FLAGS of 100,000 messages streams.
    fetch_chunk = _fetch_whole_chunk if plan.whole_messages else _fetch_chunk
    while not flags_fast and (chunk := list(itertools.islice(pairs, _FETCH_CHUNK))):
        gone |= await fetch_chunk(s, view, cmd, plan, chunk)
    if gone:
        raise CommandNo("Some of the requested messages no longer exist", "EXPUNGEISSUED")
    return Done("FETCH completed")


_FETCH_CHUNK = 256
_MEMORY_FETCH_MAX = 256
"""At most this many messages for a FETCH answered where the bytes arrive (see fetch_in_memory)."""


def fetch_in_memory(s: Session, cmd: c.Fetch) -> bool:
    """Whether ``cmd`` can be answered from memory alone: flags, UIDs and MODSEQs are in the mailbox's
    state, and the cacheable items (ENVELOPE, BODY, BODYSTRUCTURE, RFC822.SIZE, INTERNALDATE, header
    fields) of every message named are in the value cache. No other body part, no EMAILID/THREADID/
    SAVEDATE (read from the index), no \\Seen to set, no CHANGEDSINCE/VANISHED. A webmail's FETCH of its
    last page of envelopes or of its message list's header fields, repeated on each request, is this."""
    view = s.selected
    if view is None or cmd.changedsince is not None or cmd.vanished or cmd.sequence.saved or cmd.partial:
        return False
    if view.contexts:  # a live SEARCH/SORT (RFC 5267) may re-test criteria that read message text
        return False
    try:
        plan = compiled_plan(cmd.items)
    except ValueError:
        return False
    if plan.needs_raw or plan.uncached_info or plan.sets_seen or plan.needs_preview is not None:
        return False  # (PREVIEW reads the index's preview cache, and under non-LAZY the files)
    uids: list[Sequence[int]] = []  # slices of the view's UID array, no (seq, uid) pair per message
    total = 0
    try:
        for _, chunk in _flag_chunks(s, view, cmd.sequence, uid=cmd.uid):
            total += len(chunk)
            if total > _MEMORY_FETCH_MAX:
                return False
            uids.append(chunk)
    except CommandBad:
        return True  # answered BAD from memory too
    if not plan.cacheable:
        return True
    mailbox = view.mailbox
    batch = plan.prefetch(mailbox, (), utf8=s.utf8)
    return batch.all_cached(itertools.chain.from_iterable(uids))


def _partial_pairs(view: SelectedView, pairs: Iterator[tuple[int, int]], partial: c.PartialRange) -> list[tuple[int, int]]:
    """RFC 9394 3.3: only the ``partial`` range (``-1`` the last) of the messages the set names that still
    exist, in UID order; CHANGEDSINCE then filters that range (RFC 9394 3.4). Holds at most the range."""
    mailbox = view.mailbox
    live = (p for p in pairs if p[1] in mailbox)
    low, high = sorted((abs(partial.first), abs(partial.last)))
    if partial.first > 0:
        return list(itertools.islice(live, low - 1, high))
    tail = collections.deque(live, maxlen=high)
    return list(tail)[: max(len(tail) - low + 1, 0)]


async def _fetch_chunk(s: Session, view: SelectedView, cmd: c.Fetch, plan: FetchPlan,
                       pairs: list[tuple[int, int]]) -> bool:
    """Send the FETCH responses of one chunk; True when some of its messages no longer exist."""
    mailbox = view.mailbox
    # Flags and MODSEQs of the chunk in one call (again if \Seen was set); one metadata/info query for
    # the chunk; the cacheable values from the serialized cache.
    found, flag_lists, modseqs = mailbox.flag_rows([u for _, u in pairs])
    live = pairs
    gone = len(found) != len(pairs)
    if gone:
        keep = set(found)
        live = [p for p in pairs if p[1] in keep]
    if cmd.changedsince is not None:
        since = cmd.changedsince
        picked = [i for i, m in enumerate(modseqs) if m > since]
        live = [live[i] for i in picked]
        found = [found[i] for i in picked]
        flag_lists, modseqs = [flag_lists[i] for i in picked], [modseqs[i] for i in picked]
    seen_now = _set_seen(view, plan, live)
    if plan.wants_flags and (plan.wants_modseq or not s.condstore):
        # The client is about to learn these flags (and MODSEQ under CONDSTORE): no FETCH again later.
        view.forget_flag_updates(found)
    if seen_now:
        found, flag_lists, modseqs = mailbox.flag_rows(found)
        if len(found) != len(live):
            gone = True
            keep = set(found)
            live = [p for p in live if p[1] in keep]
    batch = plan.prefetch(mailbox, found, utf8=s.utf8)
    want_uid = cmd.uid and not plan.wants_uid
    condstore = s.condstore
    recent = view.recent
    if plan.wire_items is not None and not seen_now and "UIDONLY" not in s.enabled:
        # Every item from memory or the value cache: serialized straight to bytes, in groups.
        rows = [(seq, u, (*f, "\\Recent") if u in recent else f, m)
                for (seq, u), f, m in zip(live, flag_lists, modseqs, strict=True)]
        for start in range(0, len(rows), _SEND_GROUP):
            data, missing = plan.wire(batch, rows[start : start + _SEND_GROUP], want_uid=want_uid)
            gone |= missing
            if data:
                s.send(FetchData(data))
                await s.conn.drain()
        return gone
    # The responses go out in groups (one trip through the session and the connection for up to
    # _SEND_GROUP messages or _SEND_GROUP_BYTES of literals), with back-pressure between groups.
    group: list[FetchResponse] = []
    group_bytes = 0
    for (seq, u), flags, modseq in zip(live, flag_lists, modseqs, strict=True):
        if u in recent:
            flags = (*flags, "\\Recent")
        try:
            out = render(plan, mailbox, u, info=None, flags=flags, modseq=modseq, batch=batch)
        except UnknownEncoding as exc:
            if group:
                s.send(FetchResponses(group))
            raise CommandNo(f"Cannot decode message {u}: {exc}", "UNKNOWN-CTE") from None
        except (FileNotFoundError, KeyError):
            gone = True
            continue
        if u in seen_now:
            _add_seen_items(out, plan, u, flags, modseq, condstore=condstore, uid_added=want_uid)
        elif want_uid:
            out.insert(0, ("UID", u))
        group.append(FetchResponse(seq, out))
        for _, v in out:
            t = type(v)
            if t is bytes:
                group_bytes += len(v)  # type: ignore[arg-type]
            elif t is Literal8:
                group_bytes += len(v.data)  # type: ignore[union-attr]
        if len(group) >= _SEND_GROUP or group_bytes >= _SEND_GROUP_BYTES:
            s.send(FetchResponses(group) if len(group) > 1 else group[0])
            group = []
            group_bytes = 0
            await s.conn.drain()
    if group:
        s.send(FetchResponses(group) if len(group) > 1 else group[0])
        await s.conn.drain()
    return gone


_SEND_GROUP = 64
_SEND_GROUP_BYTES = 65536


_FLAGS_CHUNK = 4096
"""Messages per batch of the FLAGS fast path (a batch's response is ~40 bytes a message)."""


def _flag_chunks(s: Session, view: SelectedView, sequence: SequenceSet, *,
                 uid: bool) -> Iterator[tuple[Sequence[int], Sequence[int]]]:
    """(sequence numbers, UIDs) of the messages the set names, ascending, in batches of at most
    :data:`_FLAGS_CHUNK`: slices of the view's UID array and ranges, no per-message Python object."""
    if sequence.saved:
        pairs = iter_resolve(s, view, sequence, uid=uid)
        while chunk := list(itertools.islice(pairs, _FLAGS_CHUNK)):
            yield [seq for seq, _ in chunk], [u for _, u in chunk]
        return
    if uid:
        if view.exists == 0:
            return
        ranges = []
        for lo, hi in sequence.resolve(view.max_uid, clip=False):
            first = bisect.bisect_left(view.uids, lo, 0, view.exists)
            last = bisect.bisect_right(view.uids, hi, first, view.exists)
            if first < last:
                ranges.append((first + 1, last))
    else:
        if view.exists == 0 or sequence.exceeds(view.exists):
            raise CommandBad("Message sequence number out of range")
        ranges = list(sequence.resolve(view.exists))
    for lo, hi in ranges:
        for start in range(lo, hi + 1, _FLAGS_CHUNK):
            stop = min(hi, start + _FLAGS_CHUNK - 1)
            yield range(start, stop + 1), view.uids[start - 1 : stop]


async def _fetch_flags_chunk(s: Session, view: SelectedView, cmd: c.Fetch, plan: FetchPlan,
                             seqs: Sequence[int], chunk: Sequence[int]) -> bool:
    """:func:`_fetch_chunk` for a plan of only UID, FLAGS and MODSEQ (``plan.flags_only``): the same
    responses, straight from the in-memory index in one batch (no per-message render, response object or
    drain). True when some of the chunk's messages no longer exist."""
    mailbox = view.mailbox
    uids, flags, modseqs = mailbox.flag_rows(chunk)
    gone = len(uids) != len(chunk)
    if gone:
        found = set(uids)
        seqs = [seq for seq, u in zip(seqs, chunk, strict=True) if u in found]
    if cmd.changedsince is not None:
        since = cmd.changedsince
        keep = [i for i, m in enumerate(modseqs) if m > since]
        if len(keep) != len(uids):
            seqs, uids = [seqs[i] for i in keep], [uids[i] for i in keep]
            flags, modseqs = [flags[i] for i in keep], [modseqs[i] for i in keep]
    if not uids:
        return gone
    if plan.wants_flags and (plan.wants_modseq or not s.condstore):
        view.forget_flag_updates(uids)
    if plan.wants_flags and view.recent:
        for lo, hi in view.recent.ranges():  # few ranges: bisect each into the batch
            first, last = bisect.bisect_left(uids, lo), bisect.bisect_right(uids, hi)
            flags[first:last] = [(*f, "\\Recent") for f in flags[first:last]]
    keys = tuple(item.response_key() for item in plan.items)
    if cmd.uid and not plan.wants_uid:
        keys = ("UID", *keys)
    s.send(FetchFlagsBatch(keys, seqs, uids, flags, modseqs))
    await s.conn.drain()
    return gone


SENDFILE_MIN = 64 * 1024
"""A whole message at least this big is sent from its file by the connection (plaintext TCP only);
smaller ones are read on the lane (one read beats the hand-over for a few KB)."""


async def _fetch_whole_chunk(s: Session, view: SelectedView, cmd: c.Fetch, plan: FetchPlan,
                             pairs: list[tuple[int, int]]) -> bool:
    """:func:`_fetch_chunk` for a plan of whole messages (``plan.whole_messages``): one index query
    for the chunk's files, each file opened once on the lane, and a big one (:data:`SENDFILE_MIN`) of a
    plaintext connection handed to the connection as a :class:`FileLiteral` that it sends with sendfile
    (only when the file holds no NUL, which a ``{n}`` literal may not carry). The literal's length is the
    size of the open file. True when some of the chunk's messages no longer exist."""
    mailbox = view.mailbox
    found = set(mailbox.flag_rows([u for _, u in pairs])[0])
    live = [(seq, u) for seq, u in pairs if u in found]
    gone = len(live) != len(pairs)
    if cmd.changedsince is not None:
        since = cmd.changedsince
        live = [(seq, u) for seq, u in live if (mailbox.modseq(u) or 0) > since]
    seen_now = _set_seen(view, plan, live)
    if plan.wants_flags and (plan.wants_modseq or not s.condstore):
        view.forget_flag_updates([u for _, u in live])
    uids, flag_lists, modseqs = mailbox.flag_rows([u for _, u in live])  # after \Seen was set
    state = {u: (seq, f, m) for (seq, u), f, m in zip(live, flag_lists, modseqs, strict=True)}
    items = [(item.response_key(), whole_message_kind(item)) for item in plan.items]
    bodies = sum(kind != "flag" for _, kind in items)
    by_file = s.conn.can_send_files and bodies == 1
    want_uid = cmd.uid and not plan.wants_uid
    condstore = s.condstore
    recent = view.recent
    sent = unconfirmed = 0
    # Messages read here (not sent from their files) are serialized straight to bytes, the writer's
    # bytes, and sent in groups (FetchData) unless \\Seen was set or UIDONLY asks for UIDFETCH.
    direct = not seen_now and "UIDONLY" not in s.enabled
    keys = [(key.encode() + b" ", b" " + key.encode() + b" ", key, kind) for key, kind in items]
    flag_bytes: dict[tuple[str, ...], bytes] = {}
    group: list[bytes] = []
    for file in mailbox.open_messages(uids):
        handed = False
        try:
            u = file.uid
            seq, flags, modseq = state[u]
            if u in recent:
                flags = (*flags, "\\Recent")
            data: bytes | None = None
            use_file = by_file and file.size >= SENDFILE_MIN and (
                any(kind == "binary" for _, kind in items) or not file.has_nul())
            if direct and not use_file:
                pieces = [b"* %d FETCH (UID %d" % (seq, u) if want_uid else b"* %d FETCH (" % seq]
                later = want_uid
                for first, after, key, kind in keys:
                    pieces.append(after if later else first)
                    later = True
                    if kind == "flag":
                        if key == "UID":
                            pieces.append(b"%d" % u)
                        elif key == "MODSEQ":
                            pieces.append(b"(%d)" % modseq)
                        else:
                            listed = flag_bytes.get(flags)
                            if listed is None:
                                listed = flag_bytes[flags] = b"(" + b" ".join([_atom(f) for f in flags]) + b")"
                            pieces.append(listed)
                        continue
                    if data is None:
                        data = file.read()
                    if not data:
                        pieces.append(b'""')
                    elif kind == "binary":
                        pieces += (b"~{%d}\r\n" % len(data), data)
                    else:
                        text = literal_safe(data, 0, len(data))
                        pieces += (b"{%d}\r\n" % len(text), text)
                pieces.append(b")\r\n")
                group += pieces
            else:
                if group:
                    s.send(FetchData(b"".join(group)))
                    group = []
                handed = use_file  # (then the connection closes the file once it is sent)
                _send_whole(s, plan, file, seq, u, flags, modseq, items, use_file, seen_now, want_uid, condstore)
        finally:
            if not handed:
                file.close()
        sent += 1
        unconfirmed += file.size
        if unconfirmed >= _DRAIN_EVERY:
            unconfirmed = 0
            if group:
                s.send(FetchData(b"".join(group)))
                group = []
            await s.conn.drain()
    if group:
        s.send(FetchData(b"".join(group)))
    await s.conn.drain()
    return gone or sent != len(uids)


_atom = ResponseWriter().atom


def _send_whole(s: Session, plan: FetchPlan, file: MessageFile, seq: int, u: int, flags: tuple[str, ...],
                modseq: int, items: list[tuple[str, str | None]], use_file: bool, seen_now: set[int],
                want_uid: bool, condstore: bool) -> None:
    """One response of :func:`_fetch_whole_chunk` through the response objects: from the file (sendfile),
    or with \\Seen just set, or under UIDONLY."""
    data: bytes | None = None
    out: list[tuple[str, Value]] = []
    for key, kind in items:
        value: Value
        if kind == "flag":
            value = u if key == "UID" else [modseq] if key == "MODSEQ" else _flag_atoms(flags)
        elif use_file:
            value = FileLiteral(file.size, kind == "binary", file)
        else:
            if data is None:
                data = file.read()
            if not data:
                value = ""
            elif kind == "binary":
                value = Literal8(data)
            else:
                value = literal_safe(data, 0, len(data))
        out.append((key, value))
    if u in seen_now:
        _add_seen_items(out, plan, u, flags, modseq, condstore=condstore, uid_added=want_uid)
    elif want_uid:
        out.insert(0, ("UID", u))
    if use_file:  # the connection closes the file once it is sent
        s.conn.send_parts(s.message_data(FetchResponse(seq, out)))
    else:
        s.send(FetchResponse(seq, out))


_DRAIN_EVERY = 256 * 1024
"""The file path asks for back-pressure after about this many octets (not per message: each drain may
hand output to the network loop)."""


def _set_seen(view: SelectedView, plan: FetchPlan, live: list[tuple[int, int]]) -> set[int]:
    """RFC 3501 6.4.5: BODY[...] (not .PEEK) sets \\Seen; the UIDs it was set on now."""
    if not plan.sets_seen or view.readonly:
        return set()
    mailbox = view.mailbox
    unseen = [u for _, u in live if "\\Seen" not in (mailbox.flags(u) or ())]
    if not unseen:
        return set()
    seen_now = {u for u, _, _ in mailbox.store_flags(unseen, "add", ["\\Seen"]).changed}
    view.forget_flag_updates(list(seen_now))
    return seen_now


def _add_seen_items(out: list[tuple[str, Value]], plan: FetchPlan, uid: int, flags: tuple[str, ...],
                    modseq: int | None, *, condstore: bool, uid_added: bool) -> None:
    """The client learns the flags the fetch set even if it did not ask (RFC 3501 6.4.5); under
    CONDSTORE that FETCH is caused by a flag change, so it carries UID and MODSEQ too (RFC 7162 3.2.4)."""
    if not plan.wants_flags:
        out.append(("FLAGS", _flag_atoms(flags)))
    if condstore and not plan.wants_modseq:
        out.append(("MODSEQ", [modseq or 0]))
    if uid_added or (condstore and not plan.wants_uid):
        out.insert(0, ("UID", uid))


# -- STORE --------------------------------------------------------------------------------------------------
_MODES: dict[str, FlagMode] = {"+": "add", "-": "remove", "": "replace"}


async def store(s: Session, cmd: c.Store) -> Done:
    view = _view(s)
    if view.readonly:
        raise CommandNo("Mailbox is read-only", "READ-ONLY")
    if cmd.unchangedsince is not None:
        s.enable_condstore()
    mailbox = view.mailbox
    pairs = [(seq, u) for seq, u in resolve(s, view, cmd.sequence, uid=cmd.uid) if u in mailbox]
    uids = [u for _, u in pairs]
    result = mailbox.store_flags(uids, _MODES[cmd.mode], cmd.flags, unchanged_since=cmd.unchangedsince)
    failed = set(result.failed)
    changed = {u for u, _, _ in result.changed}
    view.forget_flag_updates([u for u in uids if u not in failed])
    announce_keywords(s, view)  # a keyword this STORE created is in FLAGS before a FETCH shows it
    condstore = s.condstore
    for seq, u in pairs:
        if u in failed or (cmd.silent and not (condstore and u in changed)):
            # RFC 7162 3.1.3: .SILENT still reports the new MODSEQ of changed messages under CONDSTORE.
            continue
        response = flag_fetch(view, seq, u, condstore=condstore, uid_command=cmd.uid, flags=not cmd.silent)
        if response is not None:
            s.send(response)
    if failed:
        numbers = sorted(failed) if cmd.uid else sorted(seq for seq, u in pairs if u in failed)
        return Done("Conditional STORE failed for some messages", ModifiedCode(SequenceSet.of(numbers)))
    return Done("STORE completed")


# -- SEARCH / SORT / THREAD ---------------------------------------------------------------------------------
def _has_key(key: SearchKey, kind: type) -> bool:
    if isinstance(key, kind):
        return True
    if isinstance(key, SearchNot):
        return _has_key(key.key, kind)
    if isinstance(key, SearchOr):
        return _has_key(key.left, kind) or _has_key(key.right, kind)
    if isinstance(key, SearchAnd):
        return any(_has_key(k, kind) for k in key.keys)
    return False


def _has_modseq(key: SearchKey) -> bool:
    return _has_key(key, SearchModSeq)


def _run_search(s: Session, view: SelectedView, criteria: SearchKey, charset: str | None, tag: str) -> list[int]:
    if s.rev2 and _has_recent(criteria):
        raise CommandBad("RECENT, NEW and OLD are not search keys of IMAP4rev2 (RFC 9051)")
    if _has_modseq(criteria):
        s.enable_condstore()
    return run_search(view.mailbox, view.uids[: view.exists], criteria, saved=s.search_result,
                      charset=charset, recent=view.recent, progress=Progress(s, tag, "Searching"))


def _has_recent(key: SearchKey) -> bool:
    """Whether ``key`` uses ``\\Recent`` (RECENT, NEW, OLD) anywhere."""
    if isinstance(key, SearchFlag):
        return key.flag == "\\Recent"
    if isinstance(key, SearchNot):
        return _has_recent(key.key)
    if isinstance(key, SearchOr):
        return _has_recent(key.left) or _has_recent(key.right)
    if isinstance(key, SearchAnd):
        return any(_has_recent(k) for k in key.keys)
    return False


def _numbers(view: SelectedView, uids: list[int], *, uid: bool) -> list[int]:
    if uid:
        return uids
    return [seq for u in uids if (seq := view.seq_of(u)) is not None]


_RESULT_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "PARTIAL"})
_CONTEXT_OPTIONS = frozenset({"CONTEXT", "UPDATE"})
_ESEARCH_OPTIONS = _RESULT_OPTIONS | _CONTEXT_OPTIONS


def _return_options(view: SelectedView, cmd: c.Search | c.Sort) -> set[str]:
    """The RETURN options, checked before any work: known, and UPDATE with a tag not in use by another
    live context (RFC 5267 4.3: BAD)."""
    options = set(cmd.return_options or ())
    if options - _ESEARCH_OPTIONS:
        raise CommandBad(f"Unknown return option {sorted(options - _ESEARCH_OPTIONS)[0]}")
    if "UPDATE" in options and contexts.in_use(view, cmd.tag):
        raise CommandBad(f"Tag reuse: {cmd.tag} already names a context with updates")
    return options


def _results_wanted(options: set[str]) -> set[str]:
    """RETURN () means ALL (RFC 4731 3.1); so does a RETURN with only CONTEXT/UPDATE, whose client needs
    the initial result that later ADDTO/REMOVEFROM change."""
    wanted = options - _CONTEXT_OPTIONS
    return wanted or {"ALL"}


async def search(s: Session, cmd: c.Search) -> Done:
    view = _view(s)
    options = _return_options(view, cmd)
    try:
        uids = _run_search(s, view, cmd.criteria, cmd.charset, cmd.tag)
    except CommandNo:
        if "SAVE" in options:
            s.search_result = []  # RFC 5182 2.1: a failed SEARCH ... SAVE empties $
        raise
    modseq = None
    if _has_modseq(cmd.criteria) and uids:
        modseq = max(view.mailbox.modseq(u) or 0 for u in uids)
    if cmd.return_options is None and not s.rev2:  # IMAP4rev2 answers ESEARCH, ALL (RFC 9051 6.4.4)
        s.send(SearchResponse(tuple(_numbers(view, uids, uid=cmd.uid)), modseq))
        return Done("SEARCH completed")
    return _answer_esearch(s, view, cmd, uids, options, modseq)


def _answer_esearch(s: Session, view: SelectedView, cmd: c.Search | c.Sort, uids: list[int], options: set[str],
                    modseq: int | None) -> Done:
    """ESEARCH / ESORT / CONTEXT / PARTIAL: the return data, ``$``, and the live context of an UPDATE."""
    wanted = _results_wanted(options)
    verb = "SORT" if isinstance(cmd, c.Sort) else "SEARCH"
    saved = s.search_result  # ``$`` as the criteria saw it, before this command saves its own
    if "SAVE" in wanted:
        s.search_result = _saved_result(uids, wanted, cmd.partial)
    if wanted != {"SAVE"}:
        results = _esearch_results(view, uids, wanted, modseq, uid=cmd.uid, partial=cmd.partial)
        s.send(EsearchResponse(cmd.tag, cmd.uid, tuple(results)))
    if "UPDATE" in options:
        if _has_key(cmd.criteria, SearchWithin):
            # RFC 5032 OLDER/YOUNGER results change as time passes, with no mailbox change to re-test on.
            s.send(UntaggedStatus("NO", "OLDER/YOUNGER results change with time alone",
                                  Code("NOUPDATE", '"' + cmd.tag + '"')))
            return Done(f"{verb} completed, will not notify")
        if not contexts.register(view, cmd, uids, limit=s.ctx.settings.limits.max_contexts, saved=saved):
            s.send(UntaggedStatus("NO", "Too many contexts", Code("NOUPDATE", '"' + cmd.tag + '"')))
            return Done(f"{verb} completed, will not notify")
        return Done(f"{verb} completed, will notify")
    if wanted == {"SAVE"}:
        return Done(f"{verb} completed, result saved")
    return Done(f"{verb} completed")


def _returned(uids: list[int], options: set[str], partial: c.PartialRange | None) -> list[int] | None:
    """The messages the result options return, which SAVE keeps as ``$`` and MODSEQ describes (RFC 5182
    2.4, RFC 7162 3.1.10, RFC 9394 3.2): None (all matches) with ALL or COUNT or without MIN, MAX and
    PARTIAL, else the first and/or last and the PARTIAL range. Ascending UIDs."""
    if options & {"ALL", "COUNT"} or not options & {"MIN", "MAX", "PARTIAL"}:
        return None
    picked = {*(uids[:1] if "MIN" in options else ()), *(uids[-1:] if "MAX" in options else ())}
    if partial is not None and "PARTIAL" in options:
        start, stop = partial.bounds(len(uids))
        picked.update(uids[start:stop])
    return sorted(picked)


def _saved_result(uids: list[int], options: set[str], partial: c.PartialRange | None) -> list[int]:
    """What SEARCH ... SAVE keeps as ``$`` (with PARTIAL alone the page, for a paged FETCH of ``$``)."""
    returned = _returned(uids, options, partial)
    return sorted(uids) if returned is None else returned


def _esearch_results(view: SelectedView, uids: list[int], options: set[str], modseq: int | None, *,
                     uid: bool, partial: c.PartialRange | None = None) -> list[tuple[str, EsearchValue]]:
    """The ESEARCH return data (RFC 4731 3.1, RFC 7162 3.1.10, RFC 5267 3.1 and 4.4, RFC 9394) for the
    matching ``uids`` in the requested order: mailbox order for SEARCH, sort order for SORT (MIN and MAX
    are then the first and last sorted, ALL keeps the order)."""
    numbers = _numbers(view, uids, uid=uid)
    results: list[tuple[str, EsearchValue]] = []
    if numbers:
        if "MIN" in options:
            results.append(("MIN", numbers[0]))
        if "MAX" in options:
            results.append(("MAX", numbers[-1]))
        if "ALL" in options:
            results.append(("ALL", SequenceSet.in_order(numbers)))
    if "COUNT" in options:
        results.append(("COUNT", len(numbers)))
    if partial is not None and "PARTIAL" in options:
        start, stop = partial.bounds(len(numbers))
        page = numbers[start:stop]
        results.append(("PARTIAL", PartialResult(partial, SequenceSet.in_order(page) if page else None)))
    if modseq is not None and numbers:
        returned_modseq = _esearch_modseq(view, uids, options, modseq, partial)
        if returned_modseq is not None:
            results.append(("MODSEQ", returned_modseq))
    return results


def _esearch_modseq(view: SelectedView, uids: list[int], options: set[str], highest: int,
                    partial: c.PartialRange | None) -> int | None:
    """RFC 7162 3.1.10: the highest MODSEQ of the messages returned (``highest``, that of all matches,
    unless only MIN/MAX/PARTIAL were asked for); None when an empty page returns none."""
    returned = _returned(uids, options, partial)
    if returned is None:
        return highest
    return max((view.mailbox.modseq(u) or 0 for u in returned), default=None)


def _sort_rows(s: Session, view: SelectedView, uids: list[int], *, uid: bool) -> list[SortRow]:
    pairs = [(u, u if uid else view.seq_of(u)) for u in uids]
    known = [(u, n) for u, n in pairs if n is not None]
    return sort_rows(view.mailbox, [u for u, _ in known], [n for _, n in known])


_CHARSETS = ("UTF-8", "US-ASCII")


def _check_charset(charset: str) -> None:
    if charset.upper() not in _CHARSETS:
        raise CommandNo(f"Unsupported charset {charset}", "BADCHARSET", "(UTF-8 US-ASCII)")


async def sort(s: Session, cmd: c.Sort) -> Done:
    view = _view(s)
    _check_charset(cmd.charset)
    options = _return_options(view, cmd) if cmd.return_options is not None else set()
    uids = _run_search(s, view, cmd.criteria, cmd.charset, cmd.tag)
    ordered = sort_uids(view.mailbox, uids, cmd.keys)
    # RFC 7162 3.1.9: with a MODSEQ criterion, SORT reports the highest MODSEQ of what it returns.
    modseq = max(view.mailbox.modseq(u) or 0 for u in ordered) if ordered and _has_modseq(cmd.criteria) else None
    if cmd.return_options is not None:  # ESORT (RFC 5267 3), CONTEXT=SORT
        return _answer_esearch(s, view, cmd, ordered, options, modseq)
    s.send(SortResponse(tuple(_numbers(view, ordered, uid=cmd.uid)), modseq))
    return Done("SORT completed")


async def cancel_update(s: Session, cmd: c.CancelUpdate) -> Done:
    """RFC 5267 4.3.5: no more updates for these contexts (an unknown tag has none to stop)."""
    contexts.cancel(_view(s), cmd.tags)
    return Done("No further updates")


async def thread(s: Session, cmd: c.Thread) -> Done:
    view = _view(s)
    algorithms = {
        "ORDEREDSUBJECT": threads.thread_orderedsubject,
        "REFERENCES": threads.thread_references,
        "REFS": threads.thread_refs,
    }
    algorithm = algorithms.get(cmd.algorithm.upper())
    if algorithm is None:
        raise CommandBad(f"Unsupported THREAD algorithm {cmd.algorithm}")
    _check_charset(cmd.charset)
    uids = _run_search(s, view, cmd.criteria, cmd.charset, cmd.tag)
    s.send(ThreadResponse(tuple(algorithm(_sort_rows(s, view, uids, uid=cmd.uid)))))
    return Done("THREAD completed")


# -- COPY / MOVE --------------------------------------------------------------------------------------------
async def copy(s: Session, cmd: c.Copy | c.Move) -> Done:
    view = _view(s)
    mailbox = view.mailbox
    move = isinstance(cmd, c.Move)
    if move and view.readonly:
        raise CommandNo("Mailbox is read-only", "READ-ONLY")
    uids = [u for _, u in resolve(s, view, cmd.sequence, uid=cmd.uid) if u in mailbox]
    user = s.user
    assert user is not None
    if isinstance(cmd.mailbox, UndecodableName):  # no mailbox can have that name, nor be created with it
        raise CommandNo(f"Mailbox does not exist: {cmd.mailbox}", "NONEXISTENT")
    if not user.exists(cmd.mailbox):
        raise CommandNo(f"Mailbox does not exist: {cmd.mailbox}", "TRYCREATE")
    if not uids:
        return Done(("MOVE" if move else "COPY") + " completed (no messages)")
    try:
        progress = Progress(s, cmd.tag, "Moving" if move else "Copying")
        pairs = (mailbox.move(uids, cmd.mailbox, progress=progress) if move
                 else mailbox.copy(uids, cmd.mailbox, progress=progress))
    except NoSuchMailbox:
        raise CommandNo(f"Mailbox does not exist: {cmd.mailbox}", "TRYCREATE") from None
    uidvalidity = user.status(cmd.mailbox).uidvalidity
    code = CopyUidCode(uidvalidity, SequenceSet.of(a for a, _ in pairs), SequenceSet.of(b for _, b in pairs))
    if move:
        # RFC 6851: COPYUID goes in an untagged OK before the expunges.
        s.send(UntaggedStatus("OK", "Moved UIDs", code))
        return Done("MOVE completed", _expunged_modseq(s, view))
    return Done("COPY completed", code)


# -- EXPUNGE / CLOSE / UNSELECT -----------------------------------------------------------------------------
def _deleted_uids(view: SelectedView, restrict: set[int] | None) -> list[int]:
    """The \\Deleted messages the client knows, among ``restrict`` (UID EXPUNGE: its cost is the UIDs
    named, not the mailbox) or all of them (EXPUNGE, CLOSE)."""
    mailbox = view.mailbox
    candidates = view.uids[: view.exists] if restrict is None else sorted(
        u for u in restrict if view.seq_of(u) is not None)
    out = []
    for u in candidates:
        flags = mailbox.flags(u)
        if flags is not None and "\\Deleted" in flags:
            out.append(u)
    return out


async def expunge(s: Session, cmd: c.Expunge) -> Done:
    view = _view(s)
    if view.readonly:
        raise CommandNo("Mailbox is read-only", "READ-ONLY")
    restrict = None
    if cmd.uid:
        if cmd.sequence is None:
            raise CommandBad("UID EXPUNGE needs a UID set")
        restrict = {u for _, u in resolve(s, view, cmd.sequence, uid=True)}
    uids = _deleted_uids(view, restrict)
    if not uids:
        return Done("EXPUNGE completed")
    view.mailbox.expunge(uids, progress=Progress(s, cmd.tag, "Expunging"))
    return Done("EXPUNGE completed", _expunged_modseq(s, view))


def _expunged_modseq(s: Session, view: SelectedView) -> NumberCode | None:
    """RFC 7162 3.2.7 (EXPUNGE), 3.2.9 (UID EXPUNGE): with QRESYNC enabled, a command that expunged ends in
    ``OK [HIGHESTMODSEQ n]`` with the new per-mailbox mod-sequence (the client stores it instead of asking).
    MOVE's expunge step gets the same (RFC 6851 leaves it to QRESYNC; Dovecot does so too)."""
    if "QRESYNC" not in s.enabled:
        return None
    return NumberCode("HIGHESTMODSEQ", view.mailbox.highestmodseq)


async def close(s: Session, cmd: c.Close) -> Done:
    view = _view(s)
    if not view.readonly:
        uids = _deleted_uids(view, None)
        if uids:
            view.mailbox.expunge(uids)
    s.close_selected()
    return Done("CLOSE completed")


async def unselect(s: Session, cmd: c.Unselect) -> Done:
    s.close_selected()
    return Done("UNSELECT completed")


# -- IDLE ---------------------------------------------------------------------------------------------------
async def idle(s: Session, cmd: c.Idle) -> None:
    s.send(ContinuationResponse("idling"))
    s.conn.expect_idle_done()
    s.start_idle(cmd.tag)

