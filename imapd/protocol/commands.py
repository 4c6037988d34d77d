"""One immutable object per IMAP command, as the parser hands them to the session.

Every command carries ``tag``. UID variants are the same class with ``uid=True``. Mailbox names are
Unicode ``str`` (mUTF-7 already decoded unless UTF8=ACCEPT is on); INBOX in any case is ``"INBOX"``.
"""

from __future__ import annotations

import datetime

import msgspec

from .fetch_items import FetchItem
from .search_keys import SearchKey
from .sequence import SequenceSet

__all__ = [
    "Notify",
    "NotifyEvent",
    "NotifyGroup",
    "Append",
    "AppendMessage",
    "Authenticate",
    "CatenatePart",
    "CatenateText",
    "CatenateUrl",
    "CancelUpdate",
    "Capability",
    "Check",
    "Close",
    "Command",
    "Compress",
    "Copy",
    "Create",
    "Delete",
    "Enable",
    "Examine",
    "Expunge",
    "Fetch",
    "GetMetadata",
    "GetQuota",
    "GetQuotaRoot",
    "Id",
    "Idle",
    "List",
    "Login",
    "Logout",
    "Lsub",
    "Move",
    "Namespace",
    "Noop",
    "PartialRange",
    "QresyncParams",
    "Rename",
    "Replace",
    "Search",
    "Select",
    "SetMetadata",
    "SetQuota",
    "Sort",
    "SortKey",
    "StartTLS",
    "Status",
    "Store",
    "Subscribe",
    "Thread",
    "Unauthenticate",
    "Unselect",
    "Unsubscribe",
    "XStateRestore",
    "XStateRevoke",
    "XStateSave",
]


class _Cmd(msgspec.Struct, frozen=True):
    tag: str


# --- any state ---------------------------------------------------------------------------------------
class Capability(_Cmd, frozen=True):
    pass


class Noop(_Cmd, frozen=True):
    pass


class Logout(_Cmd, frozen=True):
    pass


class Id(_Cmd, frozen=True):
    """RFC 2971; ``params`` is None for ``ID NIL``. Values may be None (NIL)."""

    params: tuple[tuple[str, str | None], ...] | None = None


class Enable(_Cmd, frozen=True):
    """RFC 5161; capability names upper-cased."""

    capabilities: tuple[str, ...] = ()


# --- not authenticated ---------------------------------------------------------------------------------
class StartTLS(_Cmd, frozen=True):
    pass


class Compress(_Cmd, frozen=True):
    """RFC 4978; the mechanism upper-cased (only DEFLATE is defined)."""

    mechanism: str


class Authenticate(_Cmd, frozen=True):
    """``initial_response`` (SASL-IR): None when absent, ``b""`` for ``=``."""

    mechanism: str
    initial_response: bytes | None = None


class Login(_Cmd, frozen=True):
    username: str
    password: str


# --- authenticated --------------------------------------------------------------------------------------
class Unauthenticate(_Cmd, frozen=True):
    """RFC 8437: back to not authenticated state on the same connection."""


class QresyncParams(msgspec.Struct, frozen=True):
    """``(QRESYNC (uidvalidity modseq [known-uids] [(seq-match uid-match)]))`` from RFC 7162."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


class Select(_Cmd, frozen=True):
    mailbox: str
    condstore: bool = False
    qresync: QresyncParams | None = None


class Examine(_Cmd, frozen=True):
    mailbox: str
    condstore: bool = False
    qresync: QresyncParams | None = None


class Create(_Cmd, frozen=True):
    """``special_use`` from ``(USE (\\Sent ...))`` (RFC 6154)."""

    mailbox: str
    special_use: tuple[str, ...] = ()


class Delete(_Cmd, frozen=True):
    mailbox: str


class Rename(_Cmd, frozen=True):
    mailbox: str
    new_name: str


class Subscribe(_Cmd, frozen=True):
    mailbox: str


class Unsubscribe(_Cmd, frozen=True):
    mailbox: str


class List(_Cmd, frozen=True):
    """LIST, with LIST-EXTENDED (RFC 5258), SPECIAL-USE and LIST-STATUS (RFC 5819) options.

    ``selection`` and ``return_options`` are upper-cased option names; ``status_items`` is the
    ``RETURN (STATUS (...))`` item list, or None when STATUS was not requested.
    """

    reference: str
    patterns: tuple[str, ...]
    selection: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    status_items: tuple[str, ...] | None = None


class Lsub(_Cmd, frozen=True):
    reference: str
    pattern: str


class Namespace(_Cmd, frozen=True):
    pass


class Status(_Cmd, frozen=True):
    """Items upper-cased: MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE DELETED."""

    mailbox: str
    items: tuple[str, ...]


class CatenateText(msgspec.Struct, frozen=True):
    """``TEXT literal`` of a CATENATE (RFC 4469); ``utf8`` for ``UTF8 (~{n})`` (RFC 6855 4)."""

    data: bytes
    utf8: bool = False


class CatenateUrl(msgspec.Struct, frozen=True):
    """``URL astring`` of a CATENATE: the URL as the client sent it, since ``[BADURL]`` echoes it."""

    url: str


CatenatePart = CatenateText | CatenateUrl


class AppendMessage(msgspec.Struct, frozen=True):
    """One message of a (MULTI)APPEND; ``binary`` for literal8, ``utf8`` for ``UTF8 (~{n})``.

    With ``CATENATE (...)`` (RFC 4469) ``data`` is empty and ``catenate`` holds the parts, which the
    session assembles (URLs need the store)."""

    data: bytes
    flags: tuple[str, ...] = ()
    internaldate: datetime.datetime | None = None
    binary: bool = False
    utf8: bool = False
    catenate: tuple[CatenatePart, ...] | None = None


class Append(_Cmd, frozen=True):
    mailbox: str
    messages: tuple[AppendMessage, ...]


class Replace(_Cmd, frozen=True):
    """``[UID] REPLACE number mailbox message`` (RFC 8508): append ``message`` to ``mailbox``, then
    expunge message ``number`` (a sequence number, or a UID with ``uid``) of the selected mailbox."""

    number: int
    mailbox: str
    message: AppendMessage
    uid: bool = False


class Idle(_Cmd, frozen=True):
    pass


# --- selected -------------------------------------------------------------------------------------------
class Check(_Cmd, frozen=True):
    pass


class Close(_Cmd, frozen=True):
    pass


class Unselect(_Cmd, frozen=True):
    pass


class Expunge(_Cmd, frozen=True):
    """``EXPUNGE`` or ``UID EXPUNGE set`` (UIDPLUS)."""

    uid: bool = False
    sequence: SequenceSet | None = None


class PartialRange(msgspec.Struct, frozen=True):
    """RFC 9394 ``partial-range`` as the client wrote it: ``1:500`` (positions from the first result) or
    ``-1:-100`` (from the last: -1 is the last result). Both bounds have the same sign; ``500:400`` is
    ``400:500``. Kept as written, because the PARTIAL return data echoes the requested range."""

    first: int
    last: int

    def __str__(self) -> str:
        return f"{self.first}:{self.last}"

    def bounds(self, count: int) -> tuple[int, int]:
        """The 0-based ``[start, stop)`` slice of a result of ``count`` items this range selects."""
        low, high = sorted((abs(self.first), abs(self.last)))
        if self.first > 0:
            return min(low - 1, count), min(high, count)
        return max(count - high, 0), max(count - low + 1, 0)


class Search(_Cmd, frozen=True):
    """``return_options`` is None for a plain SEARCH, a tuple (maybe empty) for ESEARCH's RETURN; ``PARTIAL``
    among them comes with its range in ``partial`` (RFC 5267 4.4, RFC 9394)."""

    criteria: SearchKey
    uid: bool = False
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    partial: PartialRange | None = None


class Fetch(_Cmd, frozen=True):
    sequence: SequenceSet
    items: tuple[FetchItem, ...]
    uid: bool = False
    changedsince: int | None = None
    vanished: bool = False
    partial: PartialRange | None = None
    """RFC 9394 3.3: only this range of the messages the set names (in UID order)."""


class Store(_Cmd, frozen=True):
    """``mode`` is "+" (add), "-" (remove) or "" (replace)."""

    sequence: SequenceSet
    mode: str
    flags: tuple[str, ...]
    uid: bool = False
    silent: bool = False
    unchangedsince: int | None = None


class Copy(_Cmd, frozen=True):
    sequence: SequenceSet
    mailbox: str
    uid: bool = False


class Move(_Cmd, frozen=True):
    sequence: SequenceSet
    mailbox: str
    uid: bool = False


class SortKey(msgspec.Struct, frozen=True):
    """ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO, optionally REVERSE."""

    key: str
    reverse: bool = False


class Sort(_Cmd, frozen=True):
    keys: tuple[SortKey, ...]
    charset: str
    criteria: SearchKey
    uid: bool = False
    return_options: tuple[str, ...] | None = None
    partial: PartialRange | None = None


class CancelUpdate(_Cmd, frozen=True):
    """RFC 5267 4.3.5 ``CANCELUPDATE "tag" ...``: stop the updates of these searching commands."""

    tags: tuple[str, ...]


class Thread(_Cmd, frozen=True):
    algorithm: str
    charset: str
    criteria: SearchKey
    uid: bool = False


class XStateSave(_Cmd, frozen=True):
    quiet: bool = False
    """``X-STATE SAVE QUIET``: only when no update is pending, else NO and nothing sent (docs/x-state.md 2.5)."""


class XStateRestore(_Cmd, frozen=True):
    token: str
    pending: bool = False
    """``X-STATE RESTORE token PENDING``: the saved view back, the catch-up left pending (docs/x-state.md 2.5)."""


class XStateRevoke(_Cmd, frozen=True):
    """``X-STATE REVOKE [token]``: end the lineage of ``token``, or of the session's own state."""

    token: str | None = None


# --- QUOTA (RFC 9208) and METADATA (RFC 5464) --------------------------------------------------------------
class GetQuota(_Cmd, frozen=True):
    root: str


class GetQuotaRoot(_Cmd, frozen=True):
    mailbox: str


class SetQuota(_Cmd, frozen=True):
    root: str
    limits: tuple[tuple[str, int], ...]
    """``(resource name upper-cased, limit)``."""


class GetMetadata(_Cmd, frozen=True):
    """``mailbox`` is ``""`` for server entries; ``depth`` None is ``infinity``."""

    mailbox: str
    entries: tuple[str, ...]
    maxsize: int | None = None
    depth: int | None = 0


class SetMetadata(_Cmd, frozen=True):
    """A value of None (NIL) removes the entry."""

    mailbox: str
    entries: tuple[tuple[str, bytes | None], ...]


class NotifyEvent(msgspec.Struct, frozen=True):
    """One RFC 5465 event: a known one in the RFC's spelling (``MessageNew``), any other atom upper-cased
    (the session answers ``NO [BADEVENT]``); ``fetch`` only for MessageNew."""

    name: str
    fetch: tuple[FetchItem, ...] = ()


class NotifyGroup(msgspec.Struct, frozen=True):
    """``(filter events)``; ``filter`` upper-cased, ``mailboxes`` for SUBTREE/MAILBOXES, no events: NONE."""

    filter: str
    events: tuple[NotifyEvent, ...] = ()
    mailboxes: tuple[str, ...] = ()


class Notify(_Cmd, frozen=True):
    """``NOTIFY NONE`` (no groups) or ``NOTIFY SET [STATUS] group...`` (RFC 5465 3.1)."""

    groups: tuple[NotifyGroup, ...] = ()
    status: bool = False


Command = (
    Capability
    | Noop
    | Logout
    | Id
    | Enable
    | StartTLS
    | Compress
    | Authenticate
    | Login
    | Unauthenticate
    | Select
    | Examine
    | Create
    | Delete
    | Rename
    | Subscribe
    | Unsubscribe
    | List
    | Lsub
    | Namespace
    | Status
    | Append
    | Replace
    | Idle
    | Check
    | Close
    | Unselect
    | Expunge
    | Search
    | Fetch
    | Store
    | Copy
    | Move
    | Sort
    | Thread
    | CancelUpdate
    | XStateSave
    | XStateRestore
    | XStateRevoke
    | GetQuota
    | GetQuotaRoot
    | SetQuota
    | GetMetadata
    | SetMetadata
    | Notify
)
