"""Turns one framed command (``[line, literal, ..., line]``) into a command object, in a single pass."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

from . import commands as c
from .fetch_parser import parse_fetch_items
from .flags import FlagError, normalize_flag
from .metadata_parser import parse_getmetadata, parse_setmetadata
from .notify_parser import parse_notify
from .quota_parser import parse_getquota, parse_getquotaroot, parse_setquota
from .reader import ParseError, TokenReader
from .search_keys import SearchKey
from .search_parser import parse_search_criteria
from .sequence import MAX_NUMBER, SequenceSet

__all__ = ["CommandParseError", "parse_command"]

_TAG = re.compile(rb"[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c\x7e]+")
_NAME = re.compile(rb"[A-Za-z0-9\-.]+")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_STATE_TOKEN = re.compile(rb"[A-Za-z0-9\-_.]+")
_FLAG = re.compile(rb"\\?[^\x00-\x20\x7f-\xff(){%*\"\\\]]+")

STATUS_ITEMS = frozenset(
    {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE", "DELETED", "APPENDLIMIT",
     "DELETED-STORAGE", "MAILBOXID"}
)
SELECTION_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
SEARCH_RETURN = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "CONTEXT", "UPDATE", "PARTIAL"})
SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})
SPECIAL_USE = {f.upper(): f for f in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")}


class CommandParseError(Exception):
    def __init__(self, tag: str | None, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.tag = tag
        self.text = text
        self.code = code


def parse_command(parts: list[bytes], *, utf8: bool = False, max_nesting: int = 64) -> c.Command:
    """Parse a complete command; raise :class:`CommandParseError` (tag included when known)."""
    tag: str | None = None
    try:
        r = TokenReader(parts, utf8=utf8, max_nesting=max_nesting)
        m = _TAG.match(r.line)
        if m is None:
            raise ParseError("Missing or invalid tag")
        r.pos = m.end()
        tag = m.group().decode("ascii")
        r.check_no_nul()
        r.sp()
        name = r._match(_NAME, "a command name").decode().upper()
        uid = False
        if name == "UID":
            r.sp()
            name = r._match(_NAME, "a command name").decode().upper()
            if name not in _UID_COMMANDS:
                raise ParseError(f"UID {name} is not a command")
            uid = True
        handler = _COMMANDS.get(name)
        if handler is None:
            raise ParseError(f"Unknown command {name}")
        cmd = handler(r, tag, uid)
        r.end()
        return cmd
    except ParseError as exc:
        raise CommandParseError(tag, exc.text, exc.code) from None
    except RecursionError:
        raise CommandParseError(tag, "Too deeply nested", "LIMIT") from None


Handler = Callable[[TokenReader, str, bool], c.Command]


def _no_args(cls: Callable[[str], c.Command]) -> Handler:
    return lambda r, tag, uid: cls(tag)


def _flag(r: TokenReader, *, storable: bool = True) -> str:
    raw = r._match(_FLAG, "a flag").decode("ascii")
    try:
        return normalize_flag(raw, storable=storable)
    except FlagError as exc:
        raise ParseError(str(exc)) from None


def _flag_list(r: TokenReader) -> tuple[str, ...]:
    r.open()
    flags: list[str] = []
    if not r.take(b")"):
        flags.append(_flag(r))
        while not r.take(b")"):
            r.sp()
            flags.append(_flag(r))
    r.depth -= 1
    return tuple(dict.fromkeys(flags))


def _atom_list(r: TokenReader, *, empty_ok: bool = True) -> list[str]:
    """``"(" [atom *(SP atom)] ")"``, upper-cased."""
    r.open()
    out: list[str] = []
    if r.take(b")"):
        if not empty_ok:
            raise ParseError("Empty list")
    else:
        out.append(r.keyword())
        while not r.take(b")"):
            r.sp()
            out.append(r.keyword())
    r.depth -= 1
    return out


# --- any state -------------------------------------------------------------------------------------------
def _id(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    if r.peek() != 0x28:
        if r.keyword() != "NIL":
            raise ParseError("Expected ID parameter list or NIL")
        return c.Id(tag, None)
    r.open()
    params: list[tuple[str, str | None]] = []
    # Lenient like Dovecot: aioimaplib sends ``ID ( "name" "x" )`` with spaces inside the parentheses.
    while r.take(b" "):
        pass
    while not r.take(b")"):
        if params:
            r.sp()
            while r.take(b" "):
                pass
            if r.take(b")"):
                break
        key = r.text(r.string())
        r.sp()
        value = r.nstring()
        params.append((key, None if value is None else r.text(value)))
        if len(params) > 30:
            raise ParseError("Too many ID parameters")
    r.depth -= 1
    return c.Id(tag, tuple(params))


def _compress(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    return c.Compress(tag, r.keyword())


def _enable(r: TokenReader, tag: str, uid: bool) -> c.Command:
    caps: list[str] = []
    while not r.at_end():
        r.sp()
        caps.append(r.keyword())
    if not caps:
        raise ParseError("ENABLE needs at least one capability")
    return c.Enable(tag, tuple(caps))


def _authenticate(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    mech = r.keyword()
    initial: bytes | None = None
    if not r.at_end():
        r.sp()
        raw = r._match(_BASE64, "base64 data")
        if raw == b"=":
            initial = b""
        else:
            try:
                initial = base64.b64decode(raw, validate=True) if raw else None
            except (binascii.Error, ValueError):
                raise ParseError("Invalid base64") from None
            if initial is None:
                raise ParseError("Expected base64 data")
    return c.Authenticate(tag, mech, initial)


def _login(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    user = r.astring_str()
    r.sp()
    return c.Login(tag, user, r.astring_str())


# --- authenticated ------------------------------------------------------------------------------------------
def _select_params(r: TokenReader) -> tuple[bool, c.QresyncParams | None]:
    condstore = False
    qresync: c.QresyncParams | None = None
    if r.at_end():
        return condstore, qresync
    r.sp()
    r.open()
    while True:
        name = r.keyword()
        if name == "CONDSTORE":
            condstore = True
        elif name == "QRESYNC":
            r.sp()
            r.open()
            uidvalidity = r.number(nonzero=True)
            r.sp()
            modseq = r.number(nonzero=True, bits=64)
            known = None
            match = None
            if r.take(b" "):
                if r.peek() != 0x28:
                    known = r.sequence_set()
                    if r.take(b" "):
                        match = _seq_match(r)
                else:
                    match = _seq_match(r)
            r.close()
            qresync = c.QresyncParams(uidvalidity, modseq, known, match)
        else:
            raise ParseError(f"Unknown SELECT parameter {name}")
        if r.take(b")"):
            break
        r.sp()
    r.depth -= 1
    return condstore, qresync


def _seq_match(r: TokenReader) -> tuple[SequenceSet, SequenceSet]:
    r.open()
    seqs = r.sequence_set()
    r.sp()
    uids = r.sequence_set()
    r.close()
    return seqs, uids


def _select(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    condstore, qresync = _select_params(r)
    return c.Select(tag, mailbox, condstore, qresync)


def _examine(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    condstore, qresync = _select_params(r)
    return c.Examine(tag, mailbox, condstore, qresync)


def _create(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    uses: list[str] = []
    if not r.at_end():
        r.sp()
        r.open()
        if r.keyword() != "USE":
            raise ParseError("Unknown CREATE parameter")
        r.sp()
        r.open()
        while not r.take(b")"):
            if uses:
                r.sp()
            flag = SPECIAL_USE.get(r._match(_FLAG, "a special-use flag").decode().upper())
            if flag is None:
                raise ParseError("Unknown special-use attribute", "USEATTR")
            uses.append(flag)
        r.depth -= 1
        r.close()
    return c.Create(tag, mailbox, tuple(uses))


def _one_mailbox(cls: Callable[[str, str], c.Command]) -> Handler:
    def handler(r: TokenReader, tag: str, uid: bool) -> c.Command:
        r.sp()
        return cls(tag, r.mailbox())

    return handler


def _rename(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    old = r.mailbox()
    r.sp()
    return c.Rename(tag, old, r.mailbox())


def _pattern(r: TokenReader) -> str:
    return r.mailbox_name(r.list_mailbox(), normalize_inbox=False)


def _list(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    selection: list[str] = []
    if r.peek() == 0x28:
        selection = _atom_list(r)
        for opt in selection:
            if opt not in SELECTION_OPTIONS:
                raise ParseError(f"Unknown LIST selection option {opt}")
        r.sp()
    reference = r.mailbox_name(r.astring(), normalize_inbox=False)
    r.sp()
    patterns: list[str] = []
    if r.peek() == 0x28:
        r.open()
        patterns.append(_pattern(r))
        while not r.take(b")"):
            r.sp()
            patterns.append(_pattern(r))
        r.depth -= 1
    else:
        patterns.append(_pattern(r))
    returns: list[str] = []
    status: tuple[str, ...] | None = None
    if not r.at_end():
        r.sp()
        if r.keyword() != "RETURN":
            raise ParseError("Expected RETURN")
        r.sp()
        r.open()
        while not r.take(b")"):
            if returns:
                r.sp()
            opt = r.keyword()
            if opt not in RETURN_OPTIONS:
                raise ParseError(f"Unknown LIST return option {opt}")
            if opt == "STATUS":
                r.sp()
                status = _status_items(r)
            returns.append(opt)
        r.depth -= 1
    return c.List(tag, reference, tuple(patterns), tuple(selection), tuple(returns), status)


def _lsub(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    reference = r.mailbox_name(r.astring(), normalize_inbox=False)
    r.sp()
    return c.Lsub(tag, reference, _pattern(r))


def _status_items(r: TokenReader) -> tuple[str, ...]:
    items = _atom_list(r, empty_ok=False)
    for item in items:
        if item not in STATUS_ITEMS:
            raise ParseError(f"Unknown STATUS item {item}")
    return tuple(items)


def _status(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    return c.Status(tag, mailbox, _status_items(r))


def _append(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    messages: list[c.AppendMessage] = []
    while not r.at_end() or not messages:  # RFC 3502 MULTIAPPEND: one or more messages
        r.sp()
        if messages:  # lenient: IMAPClient's multiappend sends two spaces between two literals
            r.take(b" ")
        messages.append(_append_message(r))
    return c.Append(tag, mailbox, tuple(messages))


def _append_message(r: TokenReader) -> c.AppendMessage:
    """``[flag-list SP] [date-time SP] append-data`` (RFC 4466 append-message)."""
    flags: tuple[str, ...] = ()
    date = None
    if r.peek() == 0x28:
        flags = _flag_list(r)
        r.sp()
    if r.peek() == 0x22:
        date = r.date_time()
        r.sp()
    if r.peek() in (0x43, 0x63):  # "CATENATE" (RFC 4469)
        if r.keyword() != "CATENATE":
            raise ParseError("Expected message literal")
        r.sp()
        return c.AppendMessage(b"", flags, date, catenate=_catenate_parts(r))
    if r.peek() in (0x55, 0x75):  # "UTF8"
        if r.keyword() != "UTF8":
            raise ParseError("Expected message literal")
        return c.AppendMessage(_utf8_literal(r), flags, date, True, True)
    binary = r.peek() == 0x7E
    if r.peek() not in (0x7B, 0x7E):
        raise ParseError("Expected message literal")
    return c.AppendMessage(r.string(allow_binary=True), flags, date, binary)


def _utf8_literal(r: TokenReader) -> bytes:
    """What follows ``"UTF8"``: ``SP "(" literal8 ")"`` (RFC 6855 4)."""
    r.sp()
    r.open()
    if r.peek() != 0x7E:
        raise ParseError("UTF8 APPEND data must be a literal8")
    data = r.string(allow_binary=True)
    r.close()
    return data


def _catenate_parts(r: TokenReader) -> tuple[c.CatenatePart, ...]:
    """``"(" cat-part *(SP cat-part) ")"``; cat-part is ``TEXT literal``, ``URL astring`` or
    ``UTF8 (literal8)``."""
    r.open()
    parts: list[c.CatenatePart] = []
    while True:
        kind = r.keyword()
        if kind == "UTF8":
            parts.append(c.CatenateText(_utf8_literal(r), utf8=True))
        elif kind == "TEXT":
            r.sp()
            if r.peek() != 0x7B:
                raise ParseError("CATENATE TEXT must be a literal")
            parts.append(c.CatenateText(r.string()))
        elif kind == "URL":
            r.sp()
            raw = r.astring()
            if not raw.isascii():
                raise ParseError("A URL is ASCII")
            parts.append(c.CatenateUrl(raw.decode("ascii")))
        else:
            raise ParseError(f"Unknown CATENATE part {kind}")
        if r.take(b")"):
            break
        r.sp()
    r.depth -= 1
    return tuple(parts)


def _replace(r: TokenReader, tag: str, uid: bool) -> c.Command:
    """RFC 8508: ``REPLACE SP seq-number SP mailbox append-message`` (one message, no MULTIAPPEND)."""
    r.sp()
    number = r.number(nonzero=True)
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    return c.Replace(tag, number, mailbox, _append_message(r), uid)


# --- selected -------------------------------------------------------------------------------------------------
def _expunge(r: TokenReader, tag: str, uid: bool) -> c.Command:
    if uid:
        r.sp()
        return c.Expunge(tag, True, r.sequence_set())
    return c.Expunge(tag)


def _return_opts(r: TokenReader) -> tuple[tuple[str, ...] | None, c.PartialRange | None]:
    """``SP RETURN (opts)`` if present (ESEARCH, ESORT, CONTEXT, PARTIAL): the option names and the
    ``PARTIAL`` range. At most one of PARTIAL and ALL (RFC 5267 4.4, RFC 9394 3.1)."""
    if r.line[r.pos : r.pos + 8].upper() != b" RETURN ":
        return None, None
    r.pos += 8
    r.open()
    opts: list[str] = []
    partial = None
    while not r.take(b")"):
        if opts:
            r.sp()
        opt = r.keyword()
        if opt not in SEARCH_RETURN:
            raise ParseError(f"Unknown RETURN option {opt}")
        if opt == "PARTIAL":
            r.sp()
            partial = partial_range(r)
        if opt in ("PARTIAL", "ALL") and ("PARTIAL" in opts or "ALL" in opts):
            raise ParseError("At most one of PARTIAL and ALL")
        opts.append(opt)
    r.depth -= 1
    return tuple(dict.fromkeys(opts)), partial


_PARTIAL_RANGE = re.compile(rb"([1-9][0-9]{0,9}):([1-9][0-9]{0,9})(?![0-9])|-([1-9][0-9]{0,9}):-([1-9][0-9]{0,9})(?![0-9])")


def partial_range(r: TokenReader) -> c.PartialRange:
    """RFC 9394 ``partial-range``: ``nz-number ":" nz-number`` or ``"-" nz-number ":" "-" nz-number``,
    never ``*``, 0 or mixed signs."""
    m = _PARTIAL_RANGE.match(r.line, r.pos)
    if m is None:
        raise ParseError("Invalid PARTIAL range")
    r.pos = m.end()
    sign = 1 if m.group(1) is not None else -1
    a, b = (int(g) for g in (m.groups()[:2] if sign == 1 else m.groups()[2:]))
    if max(a, b) > MAX_NUMBER:
        raise ParseError("Invalid PARTIAL range")
    return c.PartialRange(sign * a, sign * b)


def _cancel_update(r: TokenReader, tag: str, uid: bool) -> c.Command:
    """RFC 5267 ``"CANCELUPDATE" 1*(SP quoted)``."""
    tags: list[str] = []
    while not r.at_end() or not tags:
        r.sp()
        raw = r.quoted()
        if raw is None:
            raise ParseError("Expected a quoted tag")
        tags.append(r.text(raw))
    return c.CancelUpdate(tag, tuple(dict.fromkeys(tags)))


def _charset(r: TokenReader) -> str:
    raw = r.astring()
    if not raw or not raw.isascii():
        raise ParseError("Invalid charset")
    return raw.decode("ascii").upper()


def _search(r: TokenReader, tag: str, uid: bool) -> c.Command:
    returns, partial = _return_opts(r)
    charset = None
    if r.line[r.pos : r.pos + 9].upper() == b" CHARSET ":
        r.pos += 9
        charset = _charset(r)
    criteria: SearchKey = parse_search_criteria(r, charset)
    return c.Search(tag, criteria, uid, charset, returns, partial)


def _fetch(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    seq = r.sequence_set()
    r.sp()
    items = parse_fetch_items(r)
    changedsince = None
    vanished = False
    partial = None
    if not r.at_end():
        r.sp()
        r.open()
        while True:
            name = r.keyword()
            if name == "CHANGEDSINCE":
                r.sp()
                changedsince = r.number(bits=64)
            elif name == "VANISHED":
                vanished = True
            elif name == "PARTIAL" and partial is None:
                r.sp()
                partial = partial_range(r)
            else:
                raise ParseError(f"Unknown FETCH modifier {name}")
            if r.take(b")"):
                break
            r.sp()
        r.depth -= 1
        if vanished and (not uid or changedsince is None):
            raise ParseError("VANISHED needs UID FETCH with CHANGEDSINCE")
    return c.Fetch(tag, seq, items, uid, changedsince, vanished, partial)


def _store(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    seq = r.sequence_set()
    r.sp()
    unchanged = None
    if r.peek() == 0x28:
        r.open()
        if r.keyword() != "UNCHANGEDSINCE":
            raise ParseError("Unknown STORE modifier")
        r.sp()
        unchanged = r.number(bits=64)
        r.close()
        r.sp()
    mode = ""
    if r.peek() in (0x2B, 0x2D):
        mode = chr(r.peek())
        r.pos += 1
    item = r.keyword()
    if item not in ("FLAGS", "FLAGS.SILENT"):
        raise ParseError("Expected FLAGS or FLAGS.SILENT")
    r.sp()
    if r.peek() == 0x28:
        flags = _flag_list(r)
    else:
        found = [_flag(r)]
        while r.take(b" "):
            found.append(_flag(r))
        flags = tuple(dict.fromkeys(found))
    return c.Store(tag, seq, mode, flags, uid, item == "FLAGS.SILENT", unchanged)


def _copy_like(cls: type[c.Copy] | type[c.Move]) -> Handler:
    def handler(r: TokenReader, tag: str, uid: bool) -> c.Command:
        r.sp()
        seq = r.sequence_set()
        r.sp()
        return cls(tag, seq, r.mailbox(), uid)

    return handler


def _sort(r: TokenReader, tag: str, uid: bool) -> c.Command:
    returns, partial = _return_opts(r)
    r.sp()
    r.open()
    keys: list[c.SortKey] = []
    reverse = False
    while True:
        name = r.keyword()
        if name == "REVERSE" and not reverse:
            reverse = True
        elif name in SORT_KEYS:
            keys.append(c.SortKey(name, reverse))
            reverse = False
            if r.take(b")"):
                break
        else:
            raise ParseError(f"Unknown sort key {name}")
        r.sp()
    r.depth -= 1
    r.sp()
    charset = _charset(r)
    return c.Sort(tag, tuple(keys), charset, parse_search_criteria(r, charset), uid, returns, partial)


def _thread(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    algorithm = r.keyword()
    r.sp()
    charset = _charset(r)
    return c.Thread(tag, algorithm, charset, parse_search_criteria(r, charset), uid)


def _x_state(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    action = r.keyword()
    if action == "SAVE":
        if r.at_end():
            return c.XStateSave(tag)
        r.sp()
        if r.keyword() != "QUIET":
            raise ParseError("Expected X-STATE SAVE [QUIET]")
        return c.XStateSave(tag, quiet=True)
    if action == "RESTORE":
        r.sp()
        token = r._match(_STATE_TOKEN, "a state token").decode("ascii")
        if r.at_end():
            return c.XStateRestore(tag, token)
        r.sp()
        if r.keyword() != "PENDING":
            raise ParseError("Expected X-STATE RESTORE token [PENDING]")
        return c.XStateRestore(tag, token, pending=True)
    if action == "REVOKE":
        if r.at_end():
            return c.XStateRevoke(tag)
        r.sp()
        return c.XStateRevoke(tag, r._match(_STATE_TOKEN, "a state token").decode("ascii"))
    raise ParseError("Expected X-STATE SAVE, X-STATE RESTORE token or X-STATE REVOKE [token]")


_COMMANDS: dict[str, Handler] = {
    "CAPABILITY": _no_args(c.Capability),
    "NOOP": _no_args(c.Noop),
    "LOGOUT": _no_args(c.Logout),
    "ID": _id,
    "ENABLE": _enable,
    "STARTTLS": _no_args(c.StartTLS),
    "COMPRESS": _compress,
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "SELECT": _select,
    "EXAMINE": _examine,
    "CREATE": _create,
    "DELETE": _one_mailbox(c.Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(c.Subscribe),
    "UNSUBSCRIBE": _one_mailbox(c.Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "NAMESPACE": _no_args(c.Namespace),
    "STATUS": _status,
    "APPEND": _append,
    "REPLACE": _replace,
    "IDLE": _no_args(c.Idle),
    "CHECK": _no_args(c.Check),
    "CLOSE": _no_args(c.Close),
    "UNSELECT": _no_args(c.Unselect),
    "CANCELUPDATE": _cancel_update,
    "UNAUTHENTICATE": _no_args(c.Unauthenticate),
    "EXPUNGE": _expunge,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_like(c.Copy),
    "MOVE": _copy_like(c.Move),
    "SORT": _sort,
    "THREAD": _thread,
    "X-STATE": _x_state,
    "GETQUOTA": parse_getquota,
    "GETQUOTAROOT": parse_getquotaroot,
    "SETQUOTA": parse_setquota,
    "GETMETADATA": parse_getmetadata,
    "SETMETADATA": parse_setmetadata,
    "NOTIFY": parse_notify,
}
_UID_COMMANDS = frozenset({"FETCH", "STORE", "COPY", "MOVE", "SEARCH", "SORT", "THREAD", "EXPUNGE", "REPLACE"})
