"""Serializes typed responses to bytes. FETCH is the hot path: one type dispatch per value, one join."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from . import responses as r
from .response_codes import (
    AppendUidCode,
    BadCharsetCode,
    CapabilityCode,
    Code,
    CopyUidCode,
    InProgressCode,
    ModifiedCode,
    NumberCode,
    PermanentFlagsCode,
    ResponseCode,
)
from .values import Atom, FileLiteral, Literal8, Raw, Value
from .wire import astring_text, encode_str, mailbox_bytes, string_bytes, text_bytes

__all__ = ["ResponseWriter"]

_QUOTABLE = re.compile(rb"[\x20-\x7e]*")
_CODE_TEXT_BAD = str.maketrans({"]": " ", "\r": " ", "\n": " ", "\x00": " "})


# Atoms (flags, capabilities, codes) encoded once per process, shared by every connection: a cache per
# connection cost ~3 KB for each idle client.
_ATOM_CACHE: dict[str, bytes] = {}


class ResponseWriter:
    """Holds the output mode (``utf8``) and writes one response at a time."""

    __slots__ = ("utf8",)

    def __init__(self, utf8: bool = False) -> None:
        self.utf8 = utf8

    def write(self, response: r.Response) -> bytes:
        writer = _WRITERS.get(type(response))
        if writer is None:
            raise TypeError(f"not a response: {response!r}")
        return writer(self, response)

    def write_parts(self, response: r.FetchResponse | r.UidFetchResponse) -> list[bytes | FileLiteral]:
        """A FETCH (or UIDFETCH) response whose values may hold :class:`FileLiteral`: its bytes, with each
        file literal's ``FileLiteral`` left where its octets go (runs of bytes joined)."""
        out: list[bytes | FileLiteral] = [b"* %d UIDFETCH (" % response.uid if isinstance(response, r.UidFetchResponse)
                                          else b"* %d FETCH (" % response.seq]
        sep = b""
        for key, v in response.items:
            out.append(sep + key.encode() + b" ")
            sep = b" "
            self.value(v, out)  # type: ignore[arg-type]
        out.append(b")\r\n")
        parts: list[bytes | FileLiteral] = []
        run: list[bytes] = []
        for piece in out:
            if type(piece) is bytes:
                run.append(piece)
            else:
                parts.append(b"".join(run))
                parts.append(piece)
                run = []
        parts.append(b"".join(run))
        return parts

    # -- values -------------------------------------------------------------------------------------------------
    def value(self, value: Value, out: list[bytes]) -> None:
        v: Any = value  # dispatch on the exact type: much faster than an isinstance chain
        t = type(v)
        if t is int:
            out.append(b"%d" % v)
        elif t is str:
            out.append(string_bytes(v, self.utf8))
        elif v is None:
            out.append(b"NIL")
        elif t is Atom:
            out.append(self.atom(v.text))
        elif t is list or t is tuple:
            out.append(b"(")
            first = True
            for item in v:
                if not first:
                    out.append(b" ")
                first = False
                self.value(item, out)
            out.append(b")")
        elif t is bytes:
            out.append(b"{%d}\r\n" % len(v))
            out.append(v)
        elif t is Raw:
            out.append(v.data)
        elif t is Literal8:
            out.append(b"~{%d}\r\n" % len(v.data))
            out.append(v.data)
        elif t is FileLiteral:
            out.append(b"~{%d}\r\n" % v.size if v.binary else b"{%d}\r\n" % v.size)
            out.append(v)  # the connection sends the octets (see write_parts)
        else:
            raise TypeError(f"cannot serialize {t.__name__} as an IMAP value")

    def atom(self, text: str) -> bytes:
        cached = _ATOM_CACHE.get(text)
        if cached is None:
            cached = text.encode("ascii", "replace")
            for bad in (b" ", b"\r", b"\n", b"(", b")", b"\x00"):
                cached = cached.replace(bad, b"_")
            if len(_ATOM_CACHE) < 4096:
                _ATOM_CACHE[text] = cached
        return cached

    def atoms(self, items: tuple[str, ...]) -> bytes:
        return b"(" + b" ".join(self.atom(a) for a in items) + b")"

    def code(self, code: ResponseCode) -> bytes:
        t = type(code)
        if t is Code:
            assert isinstance(code, Code)
            name = self.atom(code.name)
            if code.text:
                return b"[" + name + b" " + text_bytes(code.text.translate(_CODE_TEXT_BAD), self.utf8) + b"]"
            return b"[" + name + b"]"
        if isinstance(code, NumberCode):
            return b"[%s %d]" % (self.atom(code.name), code.value)
        if isinstance(code, AppendUidCode):
            return b"[APPENDUID %d %s]" % (code.uidvalidity, str(code.uids).encode())
        if isinstance(code, CopyUidCode):
            return b"[COPYUID %d %s %s]" % (code.uidvalidity, str(code.source).encode(), str(code.destination).encode())
        if isinstance(code, PermanentFlagsCode):
            return b"[PERMANENTFLAGS " + self.atoms(code.flags) + b"]"
        if isinstance(code, CapabilityCode):
            return b"[CAPABILITY " + b" ".join(self.atom(c) for c in code.capabilities) + b"]"
        if isinstance(code, BadCharsetCode):
            if not code.charsets:
                return b"[BADCHARSET]"
            return b"[BADCHARSET (" + b" ".join(string_bytes(c, False) for c in code.charsets) + b")]"
        if isinstance(code, InProgressCode):
            current = b"NIL" if code.current is None else b"%d" % code.current
            total = b"NIL" if code.total is None else b"%d" % code.total
            # a tag has no quoted-specials (RFC 3501 9: ASTRING-CHAR), so quoting is just the two quotes
            return b'[INPROGRESS ("' + code.tag.encode() + b'" ' + current + b" " + total + b")]"
        if isinstance(code, ModifiedCode):
            return b"[MODIFIED " + str(code.sequence).encode() + b"]"
        raise TypeError(f"not a response code: {code!r}")

    def status_tail(self, text: str, code: ResponseCode | None) -> bytes:
        body = text_bytes(text, self.utf8)
        if code is None:
            return b" " + body + b"\r\n" if body else b"\r\n"
        return b" " + self.code(code) + (b" " + body if body else b"") + b"\r\n"


def _tagged(w: ResponseWriter, x: r.TaggedResponse) -> bytes:
    return w.atom(x.tag) + b" " + w.atom(x.status) + w.status_tail(x.text, x.code)


def _untagged(w: ResponseWriter, x: r.UntaggedStatus) -> bytes:
    return b"* " + w.atom(x.status) + w.status_tail(x.text, x.code)


def _continuation(w: ResponseWriter, x: r.ContinuationResponse) -> bytes:
    return b"+ " + text_bytes(x.text, w.utf8) + b"\r\n"


def _caps(w: ResponseWriter, x: r.CapabilityResponse) -> bytes:
    return b"* CAPABILITY " + b" ".join(w.atom(c) for c in x.capabilities) + b"\r\n"


def _enabled(w: ResponseWriter, x: r.EnabledResponse) -> bytes:
    return b"* ENABLED" + b"".join(b" " + w.atom(c) for c in x.capabilities) + b"\r\n"


def _exists(w: ResponseWriter, x: r.ExistsResponse) -> bytes:
    return b"* %d EXISTS\r\n" % x.count


def _recent(w: ResponseWriter, x: r.RecentResponse) -> bytes:
    return b"* %d RECENT\r\n" % x.count


def _expunge(w: ResponseWriter, x: r.ExpungeResponse) -> bytes:
    return b"* %d EXPUNGE\r\n" % x.seq


def _vanished(w: ResponseWriter, x: r.VanishedResponse) -> bytes:
    return b"* VANISHED " + (b"(EARLIER) " if x.earlier else b"") + str(x.uids).encode() + b"\r\n"


_FETCH_KEYS: dict[str, tuple[bytes, bytes]] = {}
"""A FETCH item key's bytes as the first item and as a later one (``b"UID "``, ``b" UID "``), per process."""


def _fetch(w: ResponseWriter, x: r.FetchResponse) -> bytes:
    out: list[bytes] = [b"* %d FETCH (" % x.seq]
    append = out.append
    value = w.value
    atom = w.atom
    keys = _FETCH_KEYS
    later = 0
    for key, v in x.items:
        pair = keys.get(key)
        if pair is None:
            first = key.encode() + b" "
            pair = (first, b" " + first)
            if len(keys) < 4096:
                keys[key] = pair
        append(pair[later])
        later = 1
        t = type(v)
        if t is Raw:
            append(v.data)  # type: ignore[union-attr]
        elif t is int:
            append(b"%d" % v)  # type: ignore[str-format]
        elif (t is list or t is tuple) and all(type(a) is Atom for a in v):  # type: ignore[union-attr]
            append(b"(" + b" ".join([atom(a.text) for a in v]) + b")")  # type: ignore[union-attr]
        else:
            value(v, out)
    append(b")\r\n")
    return b"".join(out)


def _fetches(w: ResponseWriter, x: r.FetchResponses) -> bytes:
    return b"".join([_fetch(w, f) if type(f) is r.FetchResponse else _uidfetch(w, f)  # type: ignore[arg-type]
                     for f in x.responses])


def _uidfetch(w: ResponseWriter, x: r.UidFetchResponse) -> bytes:
    """The FETCH writer's output with the RFC 9586 keyword: one serializer for message data."""
    data = _fetch(w, r.FetchResponse(x.uid, x.items))
    return b"* %d UIDFETCH" % x.uid + data[len(b"* %d FETCH" % x.uid) :]


_BATCH_FORMATS = {"UID": b"UID %d", "MODSEQ": b"MODSEQ (%d)"}


def _fetch_flags_batch(w: ResponseWriter, x: r.FetchFlagsBatch) -> bytes:
    # Every loop over the messages runs in C (map, slice assignment, join): each column becomes a list
    # of bytes with its separators baked in, the columns are interleaved and joined once. Each distinct
    # flag list is serialized once per batch (a mailbox has few).
    n = len(x.seqs)
    if not n:
        return b""
    if x.uidfetch:
        columns: list[list[bytes]] = [list(map(b")\r\n* %d UIDFETCH (".__mod__, x.uids))]
    else:
        columns = [list(map(b")\r\n* %d FETCH (".__mod__, x.seqs))]
    columns[0][0] = columns[0][0][3:]
    for i, key in enumerate(x.keys):
        lead = b" " if i else b""
        if key == "FLAGS":
            lists = {f: lead + b"FLAGS " + w.atoms(f) for f in set(x.flags)}
            columns.append(list(map(lists.__getitem__, x.flags)))
        else:
            values = x.uids if key == "UID" else x.modseqs
            columns.append(list(map((lead + _BATCH_FORMATS[key]).__mod__, values)))
    width = len(columns)
    out: list[bytes] = [b""] * (n * width)
    for i, column in enumerate(columns):
        out[i::width] = column
    out.append(b")\r\n")
    return b"".join(out)


def _flags(w: ResponseWriter, x: r.FlagsResponse) -> bytes:
    return b"* FLAGS " + w.atoms(x.flags) + b"\r\n"


def _delimiter(d: str | None) -> bytes:
    return b"NIL" if d is None else string_bytes(d, False)


def _list(w: ResponseWriter, x: r.ListResponse) -> bytes:
    out = [b"* LIST ", w.atoms(x.attributes), b" ", _delimiter(x.delimiter), b" ", mailbox_bytes(x.mailbox, w.utf8)]
    if x.extended:
        items: list[bytes] = []
        for name, values in x.extended:
            vals = [mailbox_bytes(v, w.utf8) if name == "OLDNAME" else string_bytes(v, w.utf8) for v in values]
            items.append(string_bytes(name, False) + b" (" + b" ".join(vals) + b")")
        out.append(b" (" + b" ".join(items) + b")")
    out.append(b"\r\n")
    return b"".join(out)


def _lsub(w: ResponseWriter, x: r.LsubResponse) -> bytes:
    return (
        b"* LSUB " + w.atoms(x.attributes) + b" " + _delimiter(x.delimiter) + b" "
        + mailbox_bytes(x.mailbox, w.utf8) + b"\r\n"
    )


def _status(w: ResponseWriter, x: r.StatusResponse) -> bytes:
    items = b" ".join(b"%s (%s)" % (w.atom(k), w.atom(v.id)) if isinstance(v, r.ObjectId) else b"%s %d" % (w.atom(k), v)
                      for k, v in x.items)
    return b"* STATUS " + mailbox_bytes(x.mailbox, w.utf8) + b" (" + items + b")\r\n"


def _numbers(name: bytes, numbers: tuple[int, ...], modseq: int | None) -> bytes:
    out = b"* " + name + b"".join(b" %d" % n for n in numbers)
    if modseq is not None:
        out += b" (MODSEQ %d)" % modseq
    return out + b"\r\n"


def _search(w: ResponseWriter, x: r.SearchResponse) -> bytes:
    return _numbers(b"SEARCH", x.numbers, x.modseq)


def _sort(w: ResponseWriter, x: r.SortResponse) -> bytes:
    return _numbers(b"SORT", x.numbers, x.modseq)


def _esearch(w: ResponseWriter, x: r.EsearchResponse) -> bytes:
    out = [b"* ESEARCH"]
    if x.tag is not None:
        out.append(b" (TAG " + string_bytes(x.tag, False) + b")")
    if x.uid:
        out.append(b" UID")
    for name, value in x.results:
        out.append(b" " + w.atom(name) + b" " + _esearch_value(value))
    return b"".join(out) + b"\r\n"


def _esearch_value(value: r.EsearchValue) -> bytes:
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, r.PartialResult):
        results = b"NIL" if value.results is None else str(value.results).encode()
        return b"(" + str(value.range).encode() + b" " + results + b")"
    if isinstance(value, r.ContextChange):
        return b"(" + b" ".join(b"%d %s" % (pos, str(seq).encode()) for pos, seq in value.pairs) + b")"
    return str(value).encode()


def _thread_bytes(thread: r.Thread) -> bytes:
    """Iterative: a reply chain thousands of messages deep must not exhaust the Python stack."""
    out: list[bytes] = [b"("]
    stack: list[tuple[r.Thread, int]] = [(thread, 0)]
    while stack:
        node, i = stack.pop()
        while i < len(node):
            item = node[i]
            after_number = i > 0 and isinstance(node[i - 1], int)
            i += 1
            if isinstance(item, int):
                out.append((b" %d" if after_number else b"%d") % item)
                continue
            if after_number:
                out.append(b" ")
            out.append(b"(")
            stack.append((node, i))
            node, i = item, 0
        out.append(b")")
    return b"".join(out)


def _thread(w: ResponseWriter, x: r.ThreadResponse) -> bytes:
    return b"* THREAD" + (b" " if x.threads else b"") + b"".join(_thread_bytes(t) for t in x.threads) + b"\r\n"


def _pairs(w: ResponseWriter, params: tuple[tuple[str, str | None], ...] | None, mailboxes: bool) -> bytes:
    if params is None:
        return b"NIL"
    items: list[bytes] = []
    for key, value in params:
        k = mailbox_bytes(key, w.utf8) if mailboxes else string_bytes(key, w.utf8)
        v = b"NIL" if value is None else string_bytes(value, w.utf8)
        items.append(b"(" + k + b" " + v + b")" if mailboxes else k + b" " + v)
    return b"(" + (b"" if mailboxes else b" ").join(items) + b")"


def _id(w: ResponseWriter, x: r.IdResponse) -> bytes:
    return b"* ID " + _pairs(w, x.params, False) + b"\r\n"


def _namespace(w: ResponseWriter, x: r.NamespaceResponse) -> bytes:
    return b"* NAMESPACE " + b" ".join(_pairs(w, ns, True) for ns in (x.personal, x.other, x.shared)) + b"\r\n"


def _xstate(w: ResponseWriter, x: r.XStateResponse) -> bytes:
    return b"* X-STATE " + encode_str(x.token) + b"\r\n"


def _quota(w: ResponseWriter, x: r.QuotaResponse) -> bytes:
    items = b" ".join(b"%s %d %d" % (w.atom(name), usage, limit) for name, usage, limit in x.resources)
    return b"* QUOTA " + string_bytes(x.root, w.utf8) + b" (" + items + b")\r\n"


def _quotaroot(w: ResponseWriter, x: r.QuotaRootResponse) -> bytes:
    roots = b"".join(b" " + string_bytes(root, w.utf8) for root in x.roots)
    return b"* QUOTAROOT " + mailbox_bytes(x.mailbox, w.utf8) + roots + b"\r\n"


def metadata_value(value: bytes | None) -> bytes:
    """An RFC 5464 value: NIL, quoted when plain ASCII allows, else a literal (literal8 if it has NUL)."""
    if value is None:
        return b"NIL"
    if len(value) <= 1024 and _QUOTABLE.fullmatch(value):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return (b"~{%d}\r\n" if b"\x00" in value else b"{%d}\r\n") % len(value) + value


def _metadata(w: ResponseWriter, x: r.MetadataResponse) -> bytes:
    items = b" ".join(astring_text(name).encode() + b" " + metadata_value(value) for name, value in x.entries)
    return b"* METADATA " + mailbox_bytes(x.mailbox, w.utf8) + b" (" + items + b")\r\n"


def _metadata_changed(w: ResponseWriter, x: r.MetadataChangedResponse) -> bytes:
    names = b" ".join(astring_text(name).encode() for name in x.entries)
    return b"* METADATA " + mailbox_bytes(x.mailbox, w.utf8) + b" " + names + b"\r\n"


_WRITERS: dict[type, Callable[[ResponseWriter, Any], bytes]] = {
    r.TaggedResponse: _tagged,
    r.UntaggedStatus: _untagged,
    r.ContinuationResponse: _continuation,
    r.CapabilityResponse: _caps,
    r.EnabledResponse: _enabled,
    r.ExistsResponse: _exists,
    r.RecentResponse: _recent,
    r.ExpungeResponse: _expunge,
    r.VanishedResponse: _vanished,
    r.FetchResponse: _fetch,
    r.UidFetchResponse: _uidfetch,
    r.FetchFlagsBatch: _fetch_flags_batch,
    r.FetchResponses: _fetches,
    r.FetchData: lambda w, x: x.data,
    r.FlagsResponse: _flags,
    r.ListResponse: _list,
    r.LsubResponse: _lsub,
    r.StatusResponse: _status,
    r.SearchResponse: _search,
    r.SortResponse: _sort,
    r.EsearchResponse: _esearch,
    r.ThreadResponse: _thread,
    r.IdResponse: _id,
    r.NamespaceResponse: _namespace,
    r.XStateResponse: _xstate,
    r.QuotaResponse: _quota,
    r.QuotaRootResponse: _quotaroot,
    r.MetadataResponse: _metadata,
    r.MetadataChangedResponse: _metadata_changed,
}
