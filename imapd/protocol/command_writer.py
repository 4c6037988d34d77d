"""Serializes command objects to bytes (for a test client or proxy, and for round-trip tests).

Literals are written non-synchronizing (``{n+}``, LITERAL+) so the output can be fed to the parser
in one piece; ``parse(write(cmd)) == cmd`` holds for every command the parser can produce.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from . import commands as c
from .fetch_items import BinarySize, FetchBody, FetchItem, FetchPreview
from .notify_parser import write_notify
from .reader import MONTHS
from .search_keys import (
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
from .values import format_internaldate
from .wire import astring_text, mailbox_bytes, string_bytes

__all__ = ["write_command"]

_FLAG_NAMES = {
    ("\\Answered", True): "ANSWERED",
    ("\\Deleted", True): "DELETED",
    ("\\Draft", True): "DRAFT",
    ("\\Flagged", True): "FLAGGED",
    ("\\Seen", True): "SEEN",
    ("\\Recent", True): "RECENT",
    ("\\Answered", False): "UNANSWERED",
    ("\\Deleted", False): "UNDELETED",
    ("\\Draft", False): "UNDRAFT",
    ("\\Flagged", False): "UNFLAGGED",
    ("\\Seen", False): "UNSEEN",
    ("\\Recent", False): "OLD",
}


def write_command(cmd: c.Command, *, utf8: bool = False) -> bytes:
    """The wire form of ``cmd`` including its CRLF."""
    body = _WRITERS[type(cmd)](cmd, utf8)
    return cmd.tag.encode() + b" " + body + b"\r\n"


def _s(value: str | bytes, utf8: bool) -> bytes:
    return string_bytes(value, utf8, plus=True)


def _mb(name: str, utf8: bool) -> bytes:
    return mailbox_bytes(name, utf8, plus=True)


def _flags(flags: tuple[str, ...]) -> bytes:
    return b"(" + " ".join(flags).encode() + b")"


def _fetch_item(item: FetchItem, utf8: bool) -> bytes:
    if isinstance(item, FetchBody):
        return item.request_key().encode()
    if isinstance(item, (BinarySize, FetchPreview)):
        return item.request_key().encode()
    return item.name.encode()


def _date(d: Any) -> bytes:
    return f"{d.day}-{MONTHS[d.month - 1].title()}-{d.year:04d}".encode()


def _key(k: SearchKey, utf8: bool) -> bytes:
    if isinstance(k, SearchAnd):
        return b"(" + b" ".join(_key(x, utf8) for x in k.keys) + b")"
    if isinstance(k, SearchAll):
        return b"ALL"
    if isinstance(k, SearchFlag):
        name = _FLAG_NAMES.get((k.flag, k.present))
        if name is not None:
            return name.encode()
        return (b"KEYWORD " if k.present else b"UNKEYWORD ") + k.flag.encode()
    if isinstance(k, SearchText):
        return k.key.encode() + b" " + _s(k.value, utf8)
    if isinstance(k, SearchHeader):
        return b"HEADER " + astring_text(k.field).encode() + b" " + _s(k.value, utf8)
    if isinstance(k, SearchDate):
        return k.key.encode() + b" " + _date(k.date)
    if isinstance(k, SearchSize):
        return b"LARGER %d" % k.size if k.larger else b"SMALLER %d" % k.size
    if isinstance(k, SearchSequence):
        return (b"UID " if k.uid else b"") + str(k.sequence).encode()
    if isinstance(k, SearchModSeq):
        entry = b"" if k.entry is None else _s(k.entry[0], utf8) + b" " + k.entry[1].encode() + b" "
        return b"MODSEQ " + entry + b"%d" % k.modseq
    if isinstance(k, SearchSaveDateSupported):
        return b"SAVEDATESUPPORTED"
    if isinstance(k, SearchObjectId):
        return k.key.encode() + b" " + k.id.encode()
    if isinstance(k, SearchWithin):
        return (b"OLDER %d" if k.older else b"YOUNGER %d") % k.seconds
    if isinstance(k, SearchNot):
        return b"NOT " + _key(k.key, utf8)
    if isinstance(k, SearchOr):
        return b"OR " + _key(k.left, utf8) + b" " + _key(k.right, utf8)
    raise TypeError(f"not a search key: {k!r}")


def _criteria(k: SearchKey, utf8: bool) -> bytes:
    if isinstance(k, SearchAnd) and len(k.keys) > 1:
        return b" ".join(_key(x, utf8) for x in k.keys)
    return _key(k, utf8)


def _returns(opts: tuple[str, ...] | None, partial: c.PartialRange | None = None) -> bytes:
    if opts is None:
        return b""
    words = [f"PARTIAL {partial}" if o == "PARTIAL" and partial is not None else o for o in opts]
    return b" RETURN (" + " ".join(words).encode() + b")"


def _uid(cmd: Any, name: bytes) -> bytes:
    return (b"UID " if cmd.uid else b"") + name


def _simple(name: bytes) -> Callable[[Any, bool], bytes]:
    return lambda cmd, utf8: name


def _select_params(cmd: c.Select | c.Examine) -> bytes:
    params: list[bytes] = []
    if cmd.condstore:
        params.append(b"CONDSTORE")
    q = cmd.qresync
    if q is not None:
        inner = b"%d %d" % (q.uidvalidity, q.modseq)
        if q.known_uids is not None:
            inner += b" " + str(q.known_uids).encode()
        if q.seq_match is not None:
            inner += b" (" + str(q.seq_match[0]).encode() + b" " + str(q.seq_match[1]).encode() + b")"
        params.append(b"QRESYNC (" + inner + b")")
    return b" (" + b" ".join(params) + b")" if params else b""


def _append_message(m: c.AppendMessage, utf8: bool) -> bytes:
    out = b""
    if m.flags:
        out += _flags(m.flags) + b" "
    if m.internaldate is not None:
        out += b'"' + format_internaldate(m.internaldate).encode() + b'" '
    if m.catenate is not None:
        return out + b"CATENATE (" + b" ".join(_catenate_part(p) for p in m.catenate) + b")"
    lit = (b"~{%d+}\r\n" if m.binary or m.utf8 else b"{%d+}\r\n") % len(m.data) + m.data
    return out + (b"UTF8 (" + lit + b")" if m.utf8 else lit)


def _catenate_part(p: c.CatenatePart) -> bytes:
    if isinstance(p, c.CatenateUrl):
        return b"URL " + string_bytes(p.url, False, plus=True)
    if p.utf8:
        return b"UTF8 (~{%d+}\r\n" % len(p.data) + p.data + b")"
    return b"TEXT {%d+}\r\n" % len(p.data) + p.data


def _id_params(cmd: c.Id, utf8: bool) -> bytes:
    if cmd.params is None:
        return b"ID NIL"
    items = [_s(k, utf8) + b" " + (b"NIL" if v is None else _s(v, utf8)) for k, v in cmd.params]
    return b"ID (" + b" ".join(items) + b")"


def _list(cmd: c.List, utf8: bool) -> bytes:
    out = b"LIST "
    if cmd.selection:
        out += b"(" + " ".join(cmd.selection).encode() + b") "
    out += _mb(cmd.reference, utf8) + b" "
    pats = [_mb(p, utf8) for p in cmd.patterns]
    out += pats[0] if len(pats) == 1 else b"(" + b" ".join(pats) + b")"
    if cmd.return_options or cmd.status_items is not None:
        opts = [
            b"STATUS (" + " ".join(cmd.status_items or ()).encode() + b")" if o == "STATUS" else o.encode()
            for o in cmd.return_options
        ]
        out += b" RETURN (" + b" ".join(opts) + b")"
    return out


def _authenticate(cmd: c.Authenticate, utf8: bool) -> bytes:
    out = b"AUTHENTICATE " + cmd.mechanism.encode()
    if cmd.initial_response is not None:
        out += b" " + (base64.b64encode(cmd.initial_response) if cmd.initial_response else b"=")
    return out


def _create(cmd: c.Create, utf8: bool) -> bytes:
    out = b"CREATE " + _mb(cmd.mailbox, utf8)
    return out + (b" (USE " + _flags(cmd.special_use) + b")" if cmd.special_use else b"")


def _fetch(cmd: c.Fetch, utf8: bool) -> bytes:
    items = [_fetch_item(i, utf8) for i in cmd.items]
    out = _uid(cmd, b"FETCH ") + str(cmd.sequence).encode() + b" (" + b" ".join(items) + b")"
    mods: list[bytes] = []
    if cmd.changedsince is not None:
        mods.append(b"CHANGEDSINCE %d" % cmd.changedsince)
    if cmd.vanished:
        mods.append(b"VANISHED")
    if cmd.partial is not None:
        mods.append(b"PARTIAL " + str(cmd.partial).encode())
    return out + (b" (" + b" ".join(mods) + b")" if mods else b"")


def _store(cmd: c.Store, utf8: bool) -> bytes:
    out = _uid(cmd, b"STORE ") + str(cmd.sequence).encode() + b" "
    if cmd.unchangedsince is not None:
        out += b"(UNCHANGEDSINCE %d) " % cmd.unchangedsince
    item = cmd.mode.encode() + b"FLAGS" + (b".SILENT" if cmd.silent else b"")
    return out + item + b" " + _flags(cmd.flags)


def _search(cmd: c.Search, utf8: bool) -> bytes:
    out = _uid(cmd, b"SEARCH") + _returns(cmd.return_options, cmd.partial)
    if cmd.charset is not None:
        out += b" CHARSET " + cmd.charset.encode()
    return out + b" " + _criteria(cmd.criteria, utf8)


def _sort(cmd: c.Sort, utf8: bool) -> bytes:
    keys = b" ".join((b"REVERSE " if k.reverse else b"") + k.key.encode() for k in cmd.keys)
    return (
        _uid(cmd, b"SORT") + _returns(cmd.return_options, cmd.partial) + b" (" + keys + b") " + cmd.charset.encode()
        + b" " + _criteria(cmd.criteria, utf8)
    )


def _metadata_value(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    return (b"~{%d+}\r\n" % len(value) + value) if b"\x00" in value else _s(value, False)


def _getmetadata(cmd: c.GetMetadata, utf8: bool) -> bytes:
    opts = []
    if cmd.maxsize is not None:
        opts.append(b"MAXSIZE %d" % cmd.maxsize)
    if cmd.depth != 0:
        opts.append(b"DEPTH " + (b"infinity" if cmd.depth is None else b"%d" % cmd.depth))
    options = b"(" + b" ".join(opts) + b") " if opts else b""
    entries = b" ".join(_s(e, utf8) for e in cmd.entries)
    return b"GETMETADATA " + options + _mb(cmd.mailbox, utf8) + b" (" + entries + b")"


def _setmetadata(cmd: c.SetMetadata, utf8: bool) -> bytes:
    pairs = b" ".join(_s(name, utf8) + b" " + _metadata_value(value) for name, value in cmd.entries)
    return b"SETMETADATA " + _mb(cmd.mailbox, utf8) + b" (" + pairs + b")"


_WRITERS: dict[type, Callable[[Any, bool], bytes]] = {
    c.Capability: _simple(b"CAPABILITY"),
    c.Noop: _simple(b"NOOP"),
    c.Logout: _simple(b"LOGOUT"),
    c.StartTLS: _simple(b"STARTTLS"),
    c.Compress: lambda cmd, u: b"COMPRESS " + cmd.mechanism.encode(),
    c.Namespace: _simple(b"NAMESPACE"),
    c.Idle: _simple(b"IDLE"),
    c.Check: _simple(b"CHECK"),
    c.Close: _simple(b"CLOSE"),
    c.Unselect: _simple(b"UNSELECT"),
    c.CancelUpdate: lambda cmd, u: b"CANCELUPDATE " + b" ".join(string_bytes(t, u) for t in cmd.tags),
    c.Unauthenticate: _simple(b"UNAUTHENTICATE"),
    c.XStateSave: lambda cmd, u: b"X-STATE SAVE QUIET" if cmd.quiet else b"X-STATE SAVE",
    c.XStateRestore: lambda cmd, u: b"X-STATE RESTORE " + cmd.token.encode() + (b" PENDING" if cmd.pending else b""),
    c.XStateRevoke: lambda cmd, u: b"X-STATE REVOKE" + (b" " + cmd.token.encode() if cmd.token else b""),
    c.Id: _id_params,
    c.Enable: lambda cmd, u: b"ENABLE " + " ".join(cmd.capabilities).encode(),
    c.Authenticate: _authenticate,
    c.Login: lambda cmd, u: b"LOGIN " + _s(cmd.username, u) + b" " + _s(cmd.password, u),
    c.Select: lambda cmd, u: b"SELECT " + _mb(cmd.mailbox, u) + _select_params(cmd),
    c.Examine: lambda cmd, u: b"EXAMINE " + _mb(cmd.mailbox, u) + _select_params(cmd),
    c.Create: _create,
    c.Delete: lambda cmd, u: b"DELETE " + _mb(cmd.mailbox, u),
    c.Rename: lambda cmd, u: b"RENAME " + _mb(cmd.mailbox, u) + b" " + _mb(cmd.new_name, u),
    c.Subscribe: lambda cmd, u: b"SUBSCRIBE " + _mb(cmd.mailbox, u),
    c.Unsubscribe: lambda cmd, u: b"UNSUBSCRIBE " + _mb(cmd.mailbox, u),
    c.List: _list,
    c.Lsub: lambda cmd, u: b"LSUB " + _mb(cmd.reference, u) + b" " + _mb(cmd.pattern, u),
    c.Status: lambda cmd, u: b"STATUS " + _mb(cmd.mailbox, u) + b" (" + " ".join(cmd.items).encode() + b")",
    c.Append: lambda cmd, u: b"APPEND " + _mb(cmd.mailbox, u) + b"".join(
        b" " + _append_message(m, u) for m in cmd.messages
    ),
    c.Replace: lambda cmd, u: _uid(cmd, b"REPLACE ") + b"%d " % cmd.number + _mb(cmd.mailbox, u) + b" "
    + _append_message(cmd.message, u),
    c.Expunge: lambda cmd, u: b"UID EXPUNGE " + str(cmd.sequence).encode() if cmd.uid else b"EXPUNGE",
    c.Search: _search,
    c.Fetch: _fetch,
    c.Store: _store,
    c.Copy: lambda cmd, u: _uid(cmd, b"COPY ") + str(cmd.sequence).encode() + b" " + _mb(cmd.mailbox, u),
    c.Move: lambda cmd, u: _uid(cmd, b"MOVE ") + str(cmd.sequence).encode() + b" " + _mb(cmd.mailbox, u),
    c.Sort: _sort,
    c.Thread: lambda cmd, u: _uid(cmd, b"THREAD ") + cmd.algorithm.encode() + b" " + cmd.charset.encode()
    + b" " + _criteria(cmd.criteria, u),
    c.GetQuota: lambda cmd, u: b"GETQUOTA " + _s(cmd.root, u),
    c.GetQuotaRoot: lambda cmd, u: b"GETQUOTAROOT " + _mb(cmd.mailbox, u),
    c.SetQuota: lambda cmd, u: b"SETQUOTA " + _s(cmd.root, u) + b" ("
    + b" ".join(b"%s %d" % (name.encode(), limit) for name, limit in cmd.limits) + b")",
    c.GetMetadata: _getmetadata,
    c.SetMetadata: _setmetadata,
    c.Notify: write_notify,
}
