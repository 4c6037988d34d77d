"""Unsolicited updates of the selected mailbox: small typed events and the one place that renders them.

The view (``view.py``) decides *what* the client must learn and in which order; this module decides *how
it is said*. Every untagged FETCH that reports a flag change, whoever caused it (another session, an
external agent, this session's STORE, a FETCH that set ``\\Seen``, the catch-up of a QRESYNC SELECT or
an X-STATE RESTORE), is built by :func:`flag_fetch`, so they cannot drift apart again. Its rules:

- RFC 7162 3.2.4 (we advertise QRESYNC): once a CONDSTORE-enabling command was issued (ENABLE QRESYNC
  is one, 3.2.3), every untagged FETCH caused by a flag change carries both ``UID`` and ``MODSEQ``:
  STORE (with or without UNCHANGEDSINCE), a FETCH that implicitly set ``\\Seen``, or an external agent.
  Without CONDSTORE a flag update is ``FLAGS`` alone (RFC 3501 7.4.2), plus ``UID`` when the command
  that caused it was a UID command (RFC 3501 6.4.8).
- ``\\Recent`` is added per session, from the view's :class:`~imapd.session.recent.RecentUids`; an
  IMAP4rev2 session (RFC 9051) holds none, and ``Session.send_updates`` leaves ``RECENT`` out for it.
- RFC 7162 3.2.10: with QRESYNC enabled, expunges are reported as ``VANISHED``, never ``EXPUNGE``.
- A keyword must be in the client's ``FLAGS`` before a FETCH shows it (RFC 3501 7.2.6), so a grown
  keyword list is reported (``FLAGS`` and ``PERMANENTFLAGS``) before the flag changes that use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imapd.protocol.flags import STORABLE_SYSTEM_FLAGS
from imapd.protocol.response_codes import PermanentFlagsCode
from imapd.protocol.responses import (
    EsearchResponse,
    ExistsResponse,
    ExpungeResponse,
    FetchResponse,
    FlagsResponse,
    RecentResponse,
    Response,
    UntaggedStatus,
    VanishedResponse,
)
from imapd.protocol.sequence import SequenceSet
from imapd.protocol.values import Atom, Value

if TYPE_CHECKING:
    from imapd.session.view import SelectedView
    from imapd.store.mailbox import Mailbox

__all__ = [
    "ContextUpdate",
    "Exists",
    "Expunge",
    "FlagChange",
    "Keywords",
    "Recent",
    "Update",
    "Vanished",
    "as_update",
    "flag_fetch",
    "flag_list_responses",
    "mailbox_flags",
    "render",
]


@dataclass(frozen=True, slots=True)
class Expunge:
    """``* seq EXPUNGE``, sent highest first so each number is valid when it is sent."""

    seq: int


@dataclass(frozen=True, slots=True)
class Vanished:
    """``* VANISHED uids`` (RFC 7162 3.2.10) instead of EXPUNGE once QRESYNC is enabled."""

    uids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Exists:
    """``* n EXISTS``: the mailbox grew."""

    count: int


@dataclass(frozen=True, slots=True)
class Recent:
    """``* n RECENT`` (RFC 3501 7.3.2): sent with every EXISTS, the count of this session's \\Recent."""

    count: int


@dataclass(frozen=True, slots=True)
class Keywords:
    """The mailbox's keyword list grew: ``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` again."""

    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContextUpdate:
    """ADDTO/REMOVEFROM of a live search (RFC 5267 4.3), built by ``contexts.py`` when it is placed."""

    response: EsearchResponse


@dataclass(frozen=True, slots=True)
class FlagChange:
    """Message ``seq`` (UID ``uid``) has new flags: an untagged FETCH built by :func:`flag_fetch`."""

    seq: int
    uid: int


Update = Expunge | Vanished | Exists | Recent | Keywords | FlagChange | ContextUpdate


def as_update(update: Update | tuple[Any, ...]) -> Update:
    """Accept the tuple form older callers build (``("EXPUNGE", seq)``, ``("FETCH", seq, uid)``, ...)."""
    if not isinstance(update, tuple):
        return update
    kind = update[0]
    if kind == "EXPUNGE":
        return Expunge(update[1])
    if kind == "VANISHED":
        return Vanished(tuple(update[1]))
    if kind == "EXISTS":
        return Exists(update[1])
    if kind == "RECENT":
        return Recent(update[1])
    if kind == "FETCH":
        return FlagChange(update[1], update[2])
    raise ValueError(f"unknown update {update!r}")


def mailbox_flags(mailbox: Mailbox) -> tuple[str, ...]:
    """What ``* FLAGS`` lists: the storable system flags, then every keyword of the mailbox."""
    return (*STORABLE_SYSTEM_FLAGS, *mailbox.keywords())


def flag_list_responses(flags: tuple[str, ...], *, readonly: bool) -> list[Response]:
    """``* FLAGS (...)`` and ``* OK [PERMANENTFLAGS (...)]``, as SELECT sends them."""
    if readonly:
        permanent = UntaggedStatus("OK", "No permanent flags permitted", PermanentFlagsCode(()))
    else:
        permanent = UntaggedStatus("OK", "Flags permitted", PermanentFlagsCode((*flags, "\\*")))
    return [FlagsResponse(flags), permanent]


def flag_fetch(view: SelectedView, seq: int, uid: int, *, condstore: bool, uid_command: bool = False,
               flags: bool = True) -> FetchResponse | None:
    """The untagged FETCH that reports message ``uid``'s flags after a change (the rules above).

    ``uid_command``: the change came from a UID STORE (its FETCH carries UID, RFC 3501 6.4.8);
    ``flags=False``: STORE .SILENT under CONDSTORE, which still reports the new MODSEQ (RFC 7162 3.1.3).
    None when the message is gone.
    """
    mailbox = view.mailbox
    current = mailbox.flags(uid)
    if current is None:
        return None
    items: list[tuple[str, Value]] = []
    if condstore or uid_command:
        items.append(("UID", uid))
    if flags:
        items.append(("FLAGS", flag_atoms(view, uid, current)))
    if condstore:
        items.append(("MODSEQ", [mailbox.modseq(uid) or 0]))
    return FetchResponse(seq, items)


def flag_atoms(view: SelectedView, uid: int, flags: Iterable[str]) -> list[Value]:
    """The FLAGS value for this session: the stored flags, and ``\\Recent`` if it is Recent here."""
    out: list[Value] = [Atom(f) for f in flags]
    if uid in view.recent:
        out.append(Atom("\\Recent"))
    return out


def render(view: SelectedView, updates: Sequence[Update | tuple[Any, ...]], *,
           condstore: bool) -> Iterable[Response]:
    """The responses for ``updates``, in order."""
    for raw in updates:
        update = as_update(raw)
        if isinstance(update, FlagChange):
            response = flag_fetch(view, update.seq, update.uid, condstore=condstore)
            if response is not None:
                yield response
        elif isinstance(update, Expunge):
            yield ExpungeResponse(update.seq)
        elif isinstance(update, Vanished):
            if update.uids:
                yield VanishedResponse(SequenceSet.of(update.uids))
        elif isinstance(update, Exists):
            yield ExistsResponse(update.count)
        elif isinstance(update, Recent):
            yield RecentResponse(update.count)
        elif isinstance(update, ContextUpdate):
            yield update.response
        else:
            yield from flag_list_responses(update.flags, readonly=view.readonly)
