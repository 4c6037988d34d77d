"""Running a parsed Sieve script against one message: :func:`evaluate`.

An interpreter over sievelib's command tree (``grammar.py``). It reads the message and the envelope and
decides; it does no I/O. What must persist (vacation replies sent, message ids seen) is read through a
:class:`Memory` and returned as :class:`~imapd.sieve.actions.Memo` values for the caller to record once
the actions are carried out. A script that fails at run time yields the implicit keep and the error.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

from sievelib import commands as sc

from imapd.sieve.actions import (
    Action,
    Discard,
    FileInto,
    Keep,
    Memo,
    Redirect,
    Reject,
    SieveResult,
)
from imapd.sieve.grammar import SieveSyntaxError, decode_list, decode_number, decode_string, parse_script
from imapd.sieve.matching import MatchError, expand_variables, match_any, quote_wildcards
from imapd.sieve.message import MessageView, address_part, split_address

__all__ = ["REDIRECT_HEADER", "Envelope", "Memory", "SieveError", "SieveLimits", "evaluate"]

log = logging.getLogger("imapd.sieve")

DAY = 24 * 3600.0


class SieveError(Exception):
    """A run-time error (RFC 5228 2.10.6): the script's actions are dropped, the message is kept."""


class Memory(Protocol):
    """What earlier deliveries left behind, per user (``state.SieveState`` keeps it on disk)."""

    def seen(self, kind: str, key: str, now: float) -> bool: ...


class _NoMemory:
    def seen(self, kind: str, key: str, now: float) -> bool:
        return False


@dataclass(frozen=True)
class Envelope:
    """The SMTP/LMTP envelope: ``mail_from`` is "" for the null return path ``<>``."""

    mail_from: str
    rcpt_to: str
    auth: str = ""


@dataclass(frozen=True)
class SieveLimits:
    max_actions: int = 32
    max_redirects: int = 4
    max_vacation_days: int = 30
    min_vacation_seconds: int = 3600
    max_duplicate_seconds: int = 30 * 24 * 3600


class _Stop(Exception):
    pass


@dataclass
class _Run:
    message: MessageView
    envelope: Envelope
    memory: Memory
    now: float
    limits: SieveLimits
    own_addresses: tuple[str, ...]
    mailbox_exists: Callable[[str], bool]
    required: set[str] = field(default_factory=set)
    variables: dict[str, str] = field(default_factory=dict)
    matches: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    memos: list[Memo] = field(default_factory=list)
    implicit_keep: bool = True
    discarded: bool = False
    counted: int = 0
    redirects: int = 0
    vacation_done: bool = False
    duplicates: dict[str, bool] = field(default_factory=dict)


def evaluate(script: str | bytes | list[sc.Command], envelope: Envelope, message: bytes, *,
             memory: Memory | None = None, now: float | None = None, limits: SieveLimits | None = None,
             own_addresses: tuple[str, ...] = (), mailbox_exists: Callable[[str], bool] | None = None,
             user: str = "", script_name: str = "") -> SieveResult:
    """The actions ``script`` takes for ``message`` delivered with ``envelope``.

    ``script`` is the source or a tree from :func:`~imapd.sieve.grammar.parse_script`. Never raises
    for a bad script or a run-time error: the result is then the implicit keep, with ``error`` set and
    the error logged with ``user`` and ``script_name``.
    """
    run = _Run(MessageView(message), envelope, memory or _NoMemory(), time.time() if now is None else now,
               limits or SieveLimits(), own_addresses, mailbox_exists or (lambda _name: False))
    try:
        tree = parse_script(script) if isinstance(script, str | bytes) else script
        with contextlib.suppress(_Stop):
            _block(run, tree)
        result = _finish(run)
    except (SieveError, SieveSyntaxError, MatchError) as exc:
        log.error("sieve script %r of user %r failed, keeping the message: %s", script_name, user, exc)
        return SieveResult([Keep()], [], str(exc))
    except Exception as exc:  # a bug of ours or a tree we did not foresee: still never lose the message
        log.exception("sieve script %r of user %r failed unexpectedly, keeping the message", script_name, user)
        return SieveResult([Keep()], [], f"internal error: {exc!r}")
    return result


def _finish(run: _Run) -> SieveResult:
    actions = list(run.actions)
    rejected = any(isinstance(a, Reject) for a in actions)
    if rejected and any(isinstance(a, Keep | FileInto) for a in actions):
        raise SieveError("reject cannot be combined with keep or fileinto")
    if run.implicit_keep:
        actions.append(Keep(tuple(run.flags)))
    if run.discarded and not any(isinstance(a, Keep | FileInto | Redirect | Reject) for a in actions):
        actions.append(Discard())
    return SieveResult(_merge(actions), run.memos)


def _merge(actions: list[Action]) -> list[Action]:
    """RFC 5228 2.10.3: one delivery per mailbox (keep is fileinto INBOX), one redirect per address."""
    out: list[Action] = []
    seen: set[tuple[str, str]] = set()
    for action in actions:
        key: tuple[str, str] | None = None
        if isinstance(action, Keep | FileInto):
            key = ("store", "INBOX" if action.mailbox.upper() == "INBOX" else action.mailbox)
        elif isinstance(action, Redirect):
            key = ("redirect", action.address.lower())
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        out.append(action)
    return out


# -- control -------------------------------------------------------------------------------------------------
def _block(run: _Run, nodes: list[sc.Command]) -> None:
    taken = False  # whether the preceding if/elsif of this chain ran
    for node in nodes:
        name = node.name
        if name == "if":
            taken = _test(run, node.arguments["test"])
            if taken:
                _block(run, node.children)
        elif name == "elsif":
            if not taken:
                taken = _test(run, node.arguments["test"])
                if taken:
                    _block(run, node.children)
        elif name == "else":
            if not taken:
                _block(run, node.children)
            taken = True
        else:
            _action(run, node)


# -- values --------------------------------------------------------------------------------------------------
def _str(run: _Run, value: Any) -> str:
    text = decode_string(value)
    if "variables" in run.required:
        text = expand_variables(text, run.variables, run.matches)
    return text


def _list(run: _Run, value: Any) -> list[str]:
    items = decode_list(value)
    if "variables" in run.required:
        items = [expand_variables(v, run.variables, run.matches) for v in items]
    return items


def _tag_value(run: _Run, node: sc.Command, name: str) -> str | None:
    if name not in node.extra_arguments:
        return None
    return _str(run, node.extra_arguments[name])


def _match_args(run: _Run, node: sc.Command) -> tuple[str, str, str | None]:
    match_type = str(node.arguments.get("match-type", ":is")).lower()
    relation = None
    if match_type in (":count", ":value"):
        relation = decode_string(node.extra_arguments.get("match-type", "")).lower()
    comparator = "i;ascii-casemap"
    if "comparator" in node.extra_arguments and node.arguments.get("comparator") == ":comparator":
        comparator = decode_string(node.extra_arguments["comparator"]).lower()
    return match_type, comparator, relation


def _compare(run: _Run, node: sc.Command, values: list[str], keys: list[str]) -> bool:
    match_type, comparator, relation = _match_args(run, node)
    ok, captured = match_any(values, keys, match_type, comparator, relation)
    if ok and captured is not None and "variables" in run.required:
        run.matches = captured
    return ok


# -- tests ---------------------------------------------------------------------------------------------------
def _test(run: _Run, node: sc.Command) -> bool:
    name = node.name
    handler = _TESTS.get(name)
    if handler is None:
        raise SieveError(f"unsupported test {name}")
    return handler(run, node)


def _t_true(run: _Run, node: sc.Command) -> bool:
    return True


def _t_false(run: _Run, node: sc.Command) -> bool:
    return False


def _t_not(run: _Run, node: sc.Command) -> bool:
    return not _test(run, node.arguments["test"])


def _t_allof(run: _Run, node: sc.Command) -> bool:
    return all(_test(run, t) for t in node.arguments["tests"])


def _t_anyof(run: _Run, node: sc.Command) -> bool:
    return any(_test(run, t) for t in node.arguments["tests"])


def _t_exists(run: _Run, node: sc.Command) -> bool:
    return all(run.message.exists(h) for h in _list(run, node.arguments["header-names"]))


def _t_size(run: _Run, node: sc.Command) -> bool:
    limit = decode_number(node.arguments["limit"])
    size = len(run.message.data)
    return size > limit if node.arguments["comparator"].lower() == ":over" else size < limit


def _t_header(run: _Run, node: sc.Command) -> bool:
    values = [v for h in _list(run, node.arguments["header-names"]) for v in run.message.values(h)]
    return _compare(run, node, values, _list(run, node.arguments["key-list"]))


def _t_address(run: _Run, node: sc.Command) -> bool:
    part = str(node.arguments.get("address-part", ":all")).lower()
    values: list[str] = []
    for h in _list(run, node.arguments["header-list"]):
        for local, domain in run.message.addresses(h):
            value = address_part(local, domain, part)
            if value is not None:
                values.append(value)
    return _compare(run, node, values, _list(run, node.arguments["key-list"]))


def _t_envelope(run: _Run, node: sc.Command) -> bool:
    part = str(node.arguments.get("address-part", ":all")).lower()
    values: list[str] = []
    for h in _list(run, node.arguments["header-list"]):
        h = h.lower()
        raw = {"from": run.envelope.mail_from, "to": run.envelope.rcpt_to, "auth": run.envelope.auth}.get(h)
        if raw is None:
            continue
        if raw == "":  # the null return path: "" for every part (RFC 5228 5.4)
            values.append("")
            continue
        value = address_part(*split_address(raw), part)
        if value is not None:
            values.append(value)
    return _compare(run, node, values, _list(run, node.arguments["key-list"]))


def _t_body(run: _Run, node: sc.Command) -> bool:
    transform = str(node.arguments.get("body-transform", ":text")).lower()
    types = ["text"]
    if transform == ":content":
        types = _list(run, node.extra_arguments["body-transform"])
    return _compare(run, node, run.message.body_texts(transform, types), _list(run, node.arguments["key-list"]))


def _t_hasflag(run: _Run, node: sc.Command) -> bool:
    if "variable-list" in node.arguments:
        flags = _split_flags(" ".join(run.variables.get(v.lower(), "")
                                      for v in decode_list(node.arguments["variable-list"])))
    else:
        flags = run.flags
    return _compare(run, node, flags, _list(run, node.arguments["list-of-flags"]))


def _t_string(run: _Run, node: sc.Command) -> bool:
    values = _list(run, node.arguments["source"])
    match_type, _, _ = _match_args(run, node)
    if match_type == ":count":  # RFC 5229 5: empty strings are not counted
        values = [v for v in values if v]
    return _compare(run, node, values, _list(run, node.arguments["key-list"]))


def _t_mailboxexists(run: _Run, node: sc.Command) -> bool:
    return all(run.mailbox_exists(name) for name in _list(run, node.arguments["mailbox-names"]))


def _t_date(run: _Run, node: sc.Command) -> bool:
    header = _str(run, node.arguments["header-name"])
    when = run.message.date(header)
    if when is None:
        return False
    return _date_test(run, node, when, original=node.arguments.get("zone") == ":originalzone")


def _t_currentdate(run: _Run, node: sc.Command) -> bool:
    return _date_test(run, node, datetime.fromtimestamp(run.now, UTC), original=False)


def _date_test(run: _Run, node: sc.Command, when: datetime, *, original: bool) -> bool:
    zone = _tag_value(run, node, "zone") if node.arguments.get("zone") == ":zone" else None
    if zone is not None:
        when = when.astimezone(_parse_zone(zone))
    elif not original:
        when = when.astimezone()  # the server's local zone (RFC 5260 4.1)
    part = _str(run, node.arguments["date-part"]).lower()
    value = _date_part(when, part)
    if value is None:
        raise SieveError(f"unknown date-part {part!r}")
    return _compare(run, node, [value], _list(run, node.arguments["key-list"]))


def _parse_zone(text: str) -> timezone:
    if len(text) != 5 or text[0] not in "+-" or not text[1:].isdigit():
        raise SieveError(f"bad time zone {text!r}")
    minutes = int(text[1:3]) * 60 + int(text[3:5])
    return timezone(timedelta(minutes=minutes if text[0] == "+" else -minutes))


def _zone_text(when: datetime) -> str:
    offset = when.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _date_part(when: datetime, part: str) -> str | None:
    """RFC 5260 4.2."""
    if part == "year":
        return f"{when.year:04d}"
    if part == "month":
        return f"{when.month:02d}"
    if part == "day":
        return f"{when.day:02d}"
    if part == "date":
        return when.strftime("%Y-%m-%d")
    if part == "julian":
        return str(int((when.date() - datetime(1858, 11, 17).date()).days))
    if part == "hour":
        return f"{when.hour:02d}"
    if part == "minute":
        return f"{when.minute:02d}"
    if part == "second":
        return f"{when.second:02d}"
    if part == "time":
        return when.strftime("%H:%M:%S")
    if part == "iso8601":
        zone = _zone_text(when)
        return when.strftime("%Y-%m-%dT%H:%M:%S") + f"{zone[:3]}:{zone[3:]}"
    if part == "std11":
        return when.strftime("%a, %d %b %Y %H:%M:%S ") + _zone_text(when)
    if part == "zone":
        return _zone_text(when)
    if part == "weekday":
        return str((when.weekday() + 1) % 7)
    return None


def _t_duplicate(run: _Run, node: sc.Command) -> bool:
    """RFC 7352: was this id seen within the period? The id is recorded when the script completes."""
    handle = _tag_value(run, node, "handle") or ""
    kind = str(node.arguments.get("id", "")).lower()
    if kind == ":uniqueid":
        unique = _tag_value(run, node, "id") or ""
    else:
        header = _tag_value(run, node, "id") if kind == ":header" else "Message-ID"
        values = run.message.values(header or "Message-ID")
        if not values:
            return False
        unique = values[0]
    seconds = decode_number(node.extra_arguments.get("seconds", str(7 * 24 * 3600)))
    seconds = max(0, min(seconds, run.limits.max_duplicate_seconds))
    key = hashlib.sha256(f"{handle}\0{unique}".encode()).hexdigest()
    if key in run.duplicates:
        return run.duplicates[key]
    seen = run.memory.seen("duplicate", key, run.now)
    run.duplicates[key] = seen
    if not seen or "last" in node.arguments:
        run.memos.append(Memo("duplicate", key, run.now + seconds))
    return seen


_TESTS: dict[str, Callable[[_Run, sc.Command], bool]] = {
    "true": _t_true, "false": _t_false, "not": _t_not, "allof": _t_allof, "anyof": _t_anyof,
    "exists": _t_exists, "size": _t_size, "header": _t_header, "address": _t_address,
    "envelope": _t_envelope, "body": _t_body, "hasflag": _t_hasflag, "string": _t_string,
    "mailboxexists": _t_mailboxexists, "date": _t_date, "currentdate": _t_currentdate,
    "duplicate": _t_duplicate,
}


# -- actions -------------------------------------------------------------------------------------------------
def _split_flags(text: str) -> list[str]:
    out: list[str] = []
    for flag in text.split():
        if flag.lower() not in (f.lower() for f in out):
            out.append(flag)
    return out


def _flags_arg(run: _Run, node: sc.Command) -> tuple[str, ...]:
    if "flags" in node.arguments and "flags" in node.extra_arguments:
        return tuple(_split_flags(" ".join(_list(run, node.extra_arguments["flags"]))))
    return tuple(run.flags)


def _count(run: _Run) -> None:
    run.counted += 1
    if run.counted > run.limits.max_actions:
        raise SieveError(f"more than {run.limits.max_actions} actions")


def _action(run: _Run, node: sc.Command) -> None:
    name = node.name
    if name == "require":
        run.required.update(decode_list(node.arguments["capabilities"]))
    elif name == "stop":
        raise _Stop
    elif name == "keep":
        _count(run)
        run.actions.append(Keep(_flags_arg(run, node)))
        run.implicit_keep = False
    elif name == "discard":
        run.implicit_keep = False
        run.discarded = True
    elif name == "fileinto":
        _count(run)
        mailbox = _str(run, node.arguments["mailbox"])
        if not mailbox:
            raise SieveError("fileinto: empty mailbox name")
        run.actions.append(FileInto(mailbox, _flags_arg(run, node), "create" in node.arguments))
        if "copy" not in node.arguments:
            run.implicit_keep = False
    elif name == "redirect":
        _count(run)
        run.redirects += 1
        if run.redirects > run.limits.max_redirects:
            raise SieveError(f"more than {run.limits.max_redirects} redirects")
        address = _str(run, node.arguments["address"]).strip()
        if "@" not in address or any(c in address for c in "\r\n<> ,"):
            raise SieveError(f"redirect: {address!r} is not an address")
        if _redirected_before(run, address):
            log.warning("redirect to %s skipped: the message came back (%s)", address, REDIRECT_HEADER)
            return
        run.actions.append(Redirect(address))
        if "copy" not in node.arguments:
            run.implicit_keep = False
    elif name == "reject":
        _count(run)
        if run.vacation_done:
            raise SieveError("reject cannot be combined with vacation")
        run.actions.append(Reject(_str(run, node.arguments["text"])))
        run.implicit_keep = False
    elif name in ("setflag", "addflag", "removeflag"):
        _flag_action(run, node)
    elif name == "set":
        _set(run, node)
    elif name == "vacation":
        from imapd.sieve.vacation import vacation_action

        if run.vacation_done:
            raise SieveError("vacation may be used only once")
        if any(isinstance(a, Reject) for a in run.actions):
            raise SieveError("vacation cannot be combined with reject")
        run.vacation_done = True
        _count(run)
        vacation_action(run, node)
    else:
        raise SieveError(f"unsupported command {name}")


# Added to each redirected message (delivery.apply); a message that already names the address came back
# through a loop (RFC 5228 4.2 asks for loop control).
REDIRECT_HEADER = "X-Sieve-Redirected-To"


def _redirected_before(run: _Run, address: str) -> bool:
    return any(v.strip().lower() == address.lower() for v in run.message.values(REDIRECT_HEADER))


def _flag_action(run: _Run, node: sc.Command) -> None:
    given = _split_flags(" ".join(_list(run, node.arguments["list-of-flags"])))
    variable = None
    if "variable-name" in node.arguments:
        variable = decode_string(node.arguments["variable-name"]).lower()
        current = _split_flags(run.variables.get(variable, ""))
    else:
        current = run.flags
    if node.name == "setflag":
        new = given
    elif node.name == "addflag":
        new = _split_flags(" ".join([*current, *given]))
    else:
        drop = {f.lower() for f in given}
        new = [f for f in current if f.lower() not in drop]
    if variable is not None:
        run.variables[variable] = " ".join(new)
    else:
        run.flags = new


def _set(run: _Run, node: sc.Command) -> None:
    """RFC 5229 4: modifiers apply from the highest precedence (:length) down to :lower/:upper."""
    name = decode_string(node.arguments["name"]).lower()
    value = _str(run, node.arguments["value"])
    case = str(node.arguments.get("case", "")).lower()
    first = str(node.arguments.get("first-case", "")).lower()
    if case == ":lower":
        value = value.lower()
    elif case == ":upper":
        value = value.upper()
    if first == ":lowerfirst":
        value = value[:1].lower() + value[1:]
    elif first == ":upperfirst":
        value = value[:1].upper() + value[1:]
    if "quotewildcard" in node.arguments:
        value = quote_wildcards(value)
    if "length" in node.arguments:
        value = str(len(value))
    run.variables[name] = value
