"""Parses one serialized server response back into its typed object (tests, a proxy, a test client).

Quoted strings come back as ``str``, literals as ``bytes``, literal8 as :class:`Literal8`, bare atoms as
:class:`Atom` (numbers as ``int``, NIL as ``None``), parenthesised lists as tuples.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .. import mutf7
from . import responses as r
from .commands import PartialRange
from .response_codes import (
    NUMBER_CODES,
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
from .sequence import SequenceSet
from .values import Atom, Literal8, Value

__all__ = ["ResponseParseError", "parse_response"]

_ATOM = re.compile(rb"[^\x00-\x20\x7f(){\"\]]+")
_FETCH_KEY = re.compile(rb"[A-Za-z0-9.\-]+(\[[^\]]*\])?(<[0-9]+>)?")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n]|\\["\\])*)"')
_UNESCAPE = re.compile(rb'\\(["\\])')
_LITERAL = re.compile(rb"(~?)\{([0-9]+)\}\r\n")
_NUM = re.compile(rb"[0-9]+")


class ResponseParseError(ValueError):
    pass


class _Cursor:
    def __init__(self, data: bytes, utf8: bool) -> None:
        self.data = data
        self.pos = 0
        self.utf8 = utf8

    def take(self, s: bytes) -> bool:
        if self.data.startswith(s, self.pos):
            self.pos += len(s)
            return True
        return False

    def expect(self, s: bytes) -> None:
        if not self.take(s):
            raise ResponseParseError(f"expected {s!r} at {self.pos}: {self.data[self.pos:self.pos + 20]!r}")

    def match(self, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
        m = pattern.match(self.data, self.pos)
        if m is None:
            raise ResponseParseError(f"unexpected input at {self.pos}: {self.data[self.pos:self.pos + 20]!r}")
        self.pos = m.end()
        return m

    def atom(self) -> str:
        return self.match(_ATOM).group().decode()

    def number(self) -> int:
        return int(self.match(_NUM).group())

    def rest_line(self) -> bytes:
        end = self.data.index(b"\r\n", self.pos)
        out = self.data[self.pos : end]
        self.pos = end + 2
        return out

    def value(self) -> Value:
        c = self.data[self.pos : self.pos + 1]
        if c == b"(":
            self.pos += 1
            items: list[Value] = []
            while not self.take(b")"):
                if items:
                    self.expect(b" ")
                items.append(self.value())
            return tuple(items)
        if c == b'"':
            raw = self.match(_QUOTED).group(1)
            return _UNESCAPE.sub(rb"\1", raw).decode("utf-8", "surrogateescape")
        m = _LITERAL.match(self.data, self.pos)
        if m is not None:
            n = int(m.group(2))
            data = self.data[m.end() : m.end() + n]
            self.pos = m.end() + n
            return Literal8(data) if m.group(1) else data
        text = self.atom()
        if text.isdigit():
            return int(text)
        if text == "NIL":
            return None
        return Atom(text)

    def string(self) -> str:
        v = self.value()
        if isinstance(v, bytes):
            return v.decode("utf-8", "surrogateescape")
        if not isinstance(v, str):
            raise ResponseParseError("expected a string")
        return v

    def nstring(self) -> str | None:
        v = self.value()
        return None if v is None else v.decode() if isinstance(v, bytes) else str(v)

    def mailbox(self) -> str:
        name = self.string()
        return name if self.utf8 else mutf7.decode(name)

    def atom_list(self) -> tuple[str, ...]:
        v = self.value()
        if not isinstance(v, tuple):
            raise ResponseParseError("expected a list")
        return tuple(x.text if isinstance(x, Atom) else str(x) for x in v)


def parse_response(data: bytes, *, utf8: bool = False) -> r.Response:
    """Parse exactly one response (with its CRLF and any literals)."""
    cur = _Cursor(data, utf8)
    result = _parse(cur)
    if cur.pos != len(data):
        raise ResponseParseError(f"trailing data at {cur.pos}")
    return result


def _text_and_code(cur: _Cursor) -> tuple[str, ResponseCode | None]:
    if cur.take(b"\r\n"):
        return "", None
    cur.expect(b" ")
    code = None
    if cur.take(b"["):
        code = _code(cur)
        if cur.take(b"\r\n"):
            return "", code
        cur.expect(b" ")
    return cur.rest_line().decode("utf-8", "replace"), code


def _code(cur: _Cursor) -> ResponseCode:
    name = cur.atom()
    if name in NUMBER_CODES:
        cur.expect(b" ")
        code: ResponseCode = NumberCode(name, cur.number())
    elif name == "APPENDUID":
        cur.expect(b" ")
        v = cur.number()
        cur.expect(b" ")
        code = AppendUidCode(v, SequenceSet.parse(cur.atom()))
    elif name == "COPYUID":
        cur.expect(b" ")
        v = cur.number()
        cur.expect(b" ")
        src = SequenceSet.parse(cur.atom())
        cur.expect(b" ")
        code = CopyUidCode(v, src, SequenceSet.parse(cur.atom()))
    elif name == "INPROGRESS" and cur.take(b" ("):
        tag = cur.string()
        numbers: list[int | None] = []
        for _ in range(2):
            cur.expect(b" ")
            numbers.append(None if cur.take(b"NIL") else cur.number())
        cur.expect(b")")
        code = InProgressCode(tag, numbers[0], numbers[1])
    elif name == "MODIFIED":
        cur.expect(b" ")
        code = ModifiedCode(SequenceSet.parse(cur.atom()))
    elif name == "PERMANENTFLAGS":
        cur.expect(b" ")
        code = PermanentFlagsCode(cur.atom_list())
    elif name == "CAPABILITY":
        caps: list[str] = []
        while cur.take(b" "):
            caps.append(cur.atom())
        code = CapabilityCode(tuple(caps))
    elif name == "BADCHARSET":
        charsets: tuple[str, ...] = ()
        if cur.take(b" "):
            charsets = cur.atom_list()
        code = BadCharsetCode(charsets)
    else:
        text = None
        if cur.take(b" "):
            end = cur.data.index(b"]", cur.pos)
            text = cur.data[cur.pos : end].decode("utf-8", "replace")
            cur.pos = end
        code = Code(name, text)
    cur.expect(b"]")
    return code


def _parse(cur: _Cursor) -> r.Response:
    if cur.take(b"+"):
        if cur.take(b"\r\n"):
            return r.ContinuationResponse("")
        cur.expect(b" ")
        return r.ContinuationResponse(cur.rest_line().decode("utf-8", "replace"))
    if not cur.take(b"* "):
        tag = cur.atom()
        cur.expect(b" ")
        status = cur.atom()
        text, code = _text_and_code(cur)
        return r.TaggedResponse(tag, status, text, code)
    if cur.data[cur.pos : cur.pos + 1].isdigit():
        n = cur.number()
        cur.expect(b" ")
        kind = cur.atom().upper()
        if kind in ("FETCH", "UIDFETCH"):
            cur.expect(b" (")
            items: list[tuple[str, Value]] = []
            while not cur.take(b")"):
                if items:
                    cur.expect(b" ")
                key = cur.match(_FETCH_KEY).group().decode()
                cur.expect(b" ")
                items.append((key, cur.value()))
            cur.expect(b"\r\n")
            return r.FetchResponse(n, items) if kind == "FETCH" else r.UidFetchResponse(n, items)
        cur.expect(b"\r\n")
        if kind == "EXISTS":
            return r.ExistsResponse(n)
        if kind == "RECENT":
            return r.RecentResponse(n)
        if kind == "EXPUNGE":
            return r.ExpungeResponse(n)
        raise ResponseParseError(f"unknown numbered response {kind}")
    kind = cur.atom().upper()
    if kind in ("OK", "NO", "BAD", "BYE", "PREAUTH"):
        text, code = _text_and_code(cur)
        return r.UntaggedStatus(kind, text, code)
    handler = _UNTAGGED.get(kind)
    if handler is None:
        raise ResponseParseError(f"unknown response {kind}")
    result = handler(cur)
    cur.expect(b"\r\n")
    return result


def _atoms_to_eol(cur: _Cursor) -> tuple[str, ...]:
    out: list[str] = []
    while cur.take(b" "):
        out.append(cur.atom())
    return tuple(out)


def _numbers(cur: _Cursor) -> tuple[tuple[int, ...], int | None]:
    nums: list[int] = []
    modseq = None
    while cur.take(b" "):
        if cur.take(b"(MODSEQ "):
            modseq = cur.number()
            cur.expect(b")")
        else:
            nums.append(cur.number())
    return tuple(nums), modseq


def _list_like(cur: _Cursor) -> tuple[tuple[str, ...], str | None, str]:
    cur.expect(b" ")
    attrs = cur.atom_list()
    cur.expect(b" ")
    delim = cur.nstring()
    cur.expect(b" ")
    return attrs, delim, cur.mailbox()


def _list(cur: _Cursor) -> r.Response:
    attrs, delim, name = _list_like(cur)
    ext: list[tuple[str, tuple[str, ...]]] = []
    if cur.take(b" ("):
        while not cur.take(b")"):
            if ext:
                cur.expect(b" ")
            key = cur.string()
            cur.expect(b" (")
            vals: list[str] = []
            while not cur.take(b")"):
                if vals:
                    cur.expect(b" ")
                vals.append(cur.mailbox() if key == "OLDNAME" else cur.string())
            ext.append((key, tuple(vals)))
    return r.ListResponse(attrs, delim, name, tuple(ext))


def _lsub(cur: _Cursor) -> r.Response:
    return r.LsubResponse(*_list_like(cur))


def _status(cur: _Cursor) -> r.Response:
    cur.expect(b" ")
    name = cur.mailbox()
    cur.expect(b" (")
    items: list[tuple[str, int | r.ObjectId]] = []
    while not cur.take(b")"):
        if items:
            cur.expect(b" ")
        key = cur.atom()
        cur.expect(b" ")
        if cur.take(b"("):  # RFC 8474 MAILBOXID (id)
            items.append((key, r.ObjectId(cur.atom())))
            cur.expect(b")")
        else:
            items.append((key, cur.number()))
    return r.StatusResponse(name, tuple(items))


def _esearch(cur: _Cursor) -> r.Response:
    tag = None
    uid = False
    results: list[tuple[str, r.EsearchValue]] = []
    if cur.take(b" (TAG "):
        tag = cur.string()
        cur.expect(b")")
    while cur.take(b" "):
        name = cur.atom()
        if name == "UID" and not results:
            uid = True
            continue
        cur.expect(b" ")
        results.append((name, _esearch_value(cur, name)))
    return r.EsearchResponse(tag, uid, tuple(results))


def _esearch_value(cur: _Cursor, name: str) -> r.EsearchValue:
    """One return data value: a number, a set (ALL), ``(range set|NIL)`` (PARTIAL) or ``(pos set ...)``
    (ADDTO, REMOVEFROM)."""
    if name == "PARTIAL":
        cur.expect(b"(")
        first, _, last = cur.atom().partition(":")
        cur.expect(b" ")
        raw = cur.atom()
        cur.expect(b")")
        return r.PartialResult(PartialRange(int(first), int(last)), None if raw == "NIL" else SequenceSet.parse(raw))
    if name in ("ADDTO", "REMOVEFROM"):
        cur.expect(b"(")
        pairs: list[tuple[int, SequenceSet]] = []
        while not cur.take(b")"):
            if pairs:
                cur.expect(b" ")
            pos = cur.number()
            cur.expect(b" ")
            pairs.append((pos, SequenceSet.parse(cur.atom())))
        return r.ContextChange(tuple(pairs))
    raw = cur.atom()
    return SequenceSet.parse(raw) if name == "ALL" else int(raw)


def _thread_list(cur: _Cursor) -> r.Thread:
    cur.expect(b"(")
    items: list[int | r.Thread] = []
    while not cur.take(b")"):
        if cur.data[cur.pos : cur.pos + 1] == b"(":
            items.append(_thread_list(cur))
        else:
            if items and isinstance(items[-1], int):
                cur.expect(b" ")
            elif items:
                raise ResponseParseError("number after nested thread")
            if cur.take(b"("):
                cur.pos -= 1
                continue
            items.append(cur.number())
            cur.take(b" ") if cur.data[cur.pos : cur.pos + 2] == b" (" else None
    return tuple(items)


def _thread(cur: _Cursor) -> r.Response:
    threads: list[r.Thread] = []
    if cur.take(b" "):
        while cur.data[cur.pos : cur.pos + 1] == b"(":
            threads.append(_thread_list(cur))
    return r.ThreadResponse(tuple(threads))


def _pairs(cur: _Cursor) -> tuple[tuple[str, str | None], ...] | None:
    v = cur.value()
    if v is None:
        return None
    if not isinstance(v, tuple) or len(v) % 2:
        raise ResponseParseError("bad parameter list")
    out: list[tuple[str, str | None]] = []
    for k, val in zip(v[::2], v[1::2], strict=True):
        out.append((_as_str(k), None if val is None else _as_str(val)))
    return tuple(out)


def _as_str(v: Value) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "surrogateescape")
    if isinstance(v, Atom):
        return v.text
    return str(v)


def _id(cur: _Cursor) -> r.Response:
    cur.expect(b" ")
    return r.IdResponse(_pairs(cur))


def _namespace_list(cur: _Cursor) -> tuple[tuple[str, str | None], ...] | None:
    if cur.take(b"NIL"):
        return None
    cur.expect(b"(")
    out: list[tuple[str, str | None]] = []
    while cur.take(b"("):
        prefix = cur.mailbox()
        cur.expect(b" ")
        out.append((prefix, cur.nstring()))
        cur.expect(b")")
    cur.expect(b")")
    return tuple(out)


def _namespace(cur: _Cursor) -> r.Response:
    lists = []
    for _ in range(3):
        cur.expect(b" ")
        lists.append(_namespace_list(cur))
    return r.NamespaceResponse(*lists)


def _search(cur: _Cursor) -> r.Response:
    return r.SearchResponse(*_numbers(cur))


def _sort(cur: _Cursor) -> r.Response:
    return r.SortResponse(*_numbers(cur))


def _vanished(cur: _Cursor) -> r.Response:
    cur.expect(b" ")
    earlier = cur.take(b"(EARLIER) ")
    return r.VanishedResponse(SequenceSet.parse(cur.atom()), earlier)


def _flags(cur: _Cursor) -> r.Response:
    cur.expect(b" ")
    return r.FlagsResponse(cur.atom_list())


def _xstate(cur: _Cursor) -> r.Response:
    cur.expect(b" ")
    return r.XStateResponse(cur.atom())


_UNTAGGED: dict[str, Callable[[_Cursor], r.Response]] = {
    "CAPABILITY": lambda cur: r.CapabilityResponse(_atoms_to_eol(cur)),
    "ENABLED": lambda cur: r.EnabledResponse(_atoms_to_eol(cur)),
    "FLAGS": _flags,
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "SEARCH": _search,
    "SORT": _sort,
    "ESEARCH": _esearch,
    "THREAD": _thread,
    "ID": _id,
    "NAMESPACE": _namespace,
    "VANISHED": _vanished,
    "X-STATE": _xstate,
}
