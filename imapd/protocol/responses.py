"""Typed server responses: status (tagged and untagged), continuation, and data responses.

Construct them in the session and hand them to :meth:`ServerConnection.send`. Examples::

    TaggedResponse("a1", "OK", "SELECT completed", NumberCode("UIDNEXT", 42))
    FetchResponse(3, [("UID", 17), ("FLAGS", [Atom("\\\\Seen")]), ("BODY[]", b"...")])
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from .commands import PartialRange
from .response_codes import ResponseCode
from .sequence import SequenceSet
from .values import Value

__all__ = [
    "MetadataChangedResponse",
    "CapabilityResponse",
    "ContinuationResponse",
    "EnabledResponse",
    "ContextChange",
    "EsearchResponse",
    "EsearchValue",
    "PartialResult",
    "ExistsResponse",
    "ExpungeResponse",
    "FetchFlagsBatch",
    "FetchResponse",
    "FetchResponses",
    "FetchData",
    "UidFetchResponse",
    "FlagsResponse",
    "IdResponse",
    "ListResponse",
    "MetadataResponse",
    "LsubResponse",
    "NamespaceResponse",
    "ObjectId",
    "QuotaResponse",
    "QuotaRootResponse",
    "RecentResponse",
    "Response",
    "SearchResponse",
    "SortResponse",
    "StatusResponse",
    "TaggedResponse",
    "Thread",
    "ThreadResponse",
    "UntaggedStatus",
    "VanishedResponse",
    "XStateResponse",
]

Thread = tuple["int | Thread", ...]
"""One thread in RFC 5256 form: ``(3 6 (4 23)(44 7 96))`` is ``(3, 6, (4, 23), (44, 7, 96))``."""

NamespaceList = tuple[tuple[str, str | None], ...] | None


class TaggedResponse(msgspec.Struct, frozen=True):
    """``tag OK|NO|BAD [code] text``."""

    tag: str
    status: str
    text: str = ""
    code: ResponseCode | None = None


class UntaggedStatus(msgspec.Struct, frozen=True):
    """``* OK|NO|BAD|BYE|PREAUTH [code] text``."""

    status: str
    text: str = ""
    code: ResponseCode | None = None


class ContinuationResponse(msgspec.Struct, frozen=True):
    """``+ text`` (for SASL challenges, pass the base64 text)."""

    text: str = ""


class CapabilityResponse(msgspec.Struct, frozen=True):
    capabilities: tuple[str, ...]


class EnabledResponse(msgspec.Struct, frozen=True):
    capabilities: tuple[str, ...]


class ExistsResponse(msgspec.Struct, frozen=True):
    count: int


class RecentResponse(msgspec.Struct, frozen=True):
    count: int


class ExpungeResponse(msgspec.Struct, frozen=True):
    seq: int


class VanishedResponse(msgspec.Struct, frozen=True):
    """RFC 7162 ``* VANISHED [(EARLIER)] uids``."""

    uids: SequenceSet
    earlier: bool = False


class FetchResponse(msgspec.Struct, frozen=True):
    """``* seq FETCH (key value ...)``; keys are written as given (``"BODY[HEADER]<0>"``, ``"UID"``)."""

    seq: int
    items: Sequence[tuple[str, Value]]


class UidFetchResponse(msgspec.Struct, frozen=True):
    """``* uid UIDFETCH (key value ...)`` (RFC 9586): FETCH data numbered by UID, once UIDONLY is enabled."""

    uid: int
    items: Sequence[tuple[str, Value]]


class FetchFlagsBatch(msgspec.Struct, frozen=True):
    """Many ``* seq FETCH (...)`` responses that carry only UID, FLAGS and MODSEQ, in the order of ``keys``
    (each of ``"UID"``, ``"FLAGS"``, ``"MODSEQ"``, repeats allowed), given as parallel columns.

    The same bytes as one :class:`FetchResponse` per message, written in one call: FETCH 1:* (FLAGS) of
    100,000 messages would otherwise build 100,000 response objects."""

    keys: tuple[str, ...]
    seqs: Sequence[int]
    uids: Sequence[int]
    flags: Sequence[tuple[str, ...]]
    modseqs: Sequence[int]
    uidfetch: bool = False
    """``* uid UIDFETCH (...)`` lines instead (RFC 9586 UIDONLY; ``seqs`` unused then)."""


class FetchResponses(msgspec.Struct, frozen=True):
    """Consecutive FETCH (or UIDFETCH) responses written in one call: the same bytes as sending each, one
    trip through the session and connection instead of one per message (a page of 50 envelopes)."""

    responses: Sequence[FetchResponse | UidFetchResponse]


class FetchData(msgspec.Struct, frozen=True):
    """FETCH responses already serialized (``FetchPlan.wire``), written as they are."""

    data: bytes


class FlagsResponse(msgspec.Struct, frozen=True):
    flags: tuple[str, ...]


class ListResponse(msgspec.Struct, frozen=True):
    """``* LIST (attrs) delim name [(ext-items)]``; ``extended`` holds e.g. ``("CHILDINFO", ("SUBSCRIBED",))``
    (values are written as lists of strings) or ``("OLDNAME", (name,))``."""

    attributes: tuple[str, ...]
    delimiter: str | None
    mailbox: str
    extended: tuple[tuple[str, tuple[str, ...]], ...] = ()


class LsubResponse(msgspec.Struct, frozen=True):
    attributes: tuple[str, ...]
    delimiter: str | None
    mailbox: str


class ObjectId(msgspec.Struct, frozen=True):
    """An RFC 8474 object id as a STATUS value: ``MAILBOXID (id)``."""

    id: str


class StatusResponse(msgspec.Struct, frozen=True):
    mailbox: str
    items: tuple[tuple[str, int | ObjectId], ...]


class SearchResponse(msgspec.Struct, frozen=True):
    """``* SEARCH n...`` with the RFC 7162 ``(MODSEQ n)`` suffix when ``modseq`` is set."""

    numbers: tuple[int, ...]
    modseq: int | None = None


class PartialResult(msgspec.Struct, frozen=True):
    """``PARTIAL (range results)`` (RFC 5267 4.4, RFC 9394): the range as requested, then the results
    in it, or NIL (``results`` None) when it holds none."""

    range: PartialRange
    results: SequenceSet | None


class ContextChange(msgspec.Struct, frozen=True):
    """The payload of ``ADDTO`` / ``REMOVEFROM`` (RFC 5267 4.3.3-4.3.4): ``(position set ...)``, pairs
    processed in order; position 0 for an unsorted SEARCH context."""

    pairs: tuple[tuple[int, SequenceSet], ...]


EsearchValue = int | SequenceSet | PartialResult | ContextChange


class EsearchResponse(msgspec.Struct, frozen=True):
    """RFC 4731 ``* ESEARCH (TAG "t") [UID] MIN n MAX n COUNT n ALL set MODSEQ n``, with RFC 5267
    ``PARTIAL``, ``ADDTO`` and ``REMOVEFROM``."""

    tag: str | None
    uid: bool
    results: tuple[tuple[str, EsearchValue], ...]


class SortResponse(msgspec.Struct, frozen=True):
    numbers: tuple[int, ...]
    modseq: int | None = None


class ThreadResponse(msgspec.Struct, frozen=True):
    threads: tuple[Thread, ...]


class IdResponse(msgspec.Struct, frozen=True):
    params: tuple[tuple[str, str | None], ...] | None


class NamespaceResponse(msgspec.Struct, frozen=True):
    personal: NamespaceList
    other: NamespaceList = None
    shared: NamespaceList = None


class XStateResponse(msgspec.Struct, frozen=True):
    """``* X-STATE token``: the signed session state for a later ``X-STATE RESTORE``."""

    token: str


class QuotaResponse(msgspec.Struct, frozen=True):
    """RFC 9208 ``* QUOTA root (resource usage limit ...)``."""

    root: str
    resources: tuple[tuple[str, int, int], ...]


class QuotaRootResponse(msgspec.Struct, frozen=True):
    """RFC 9208 ``* QUOTAROOT mailbox root ...``."""

    mailbox: str
    roots: tuple[str, ...]


class MetadataResponse(msgspec.Struct, frozen=True):
    """RFC 5464 ``* METADATA mailbox (entry value ...)``; ``""`` is the server, a None value is NIL."""

    mailbox: str
    entries: tuple[tuple[str, bytes | None], ...]


class MetadataChangedResponse(msgspec.Struct, frozen=True):
    """RFC 5464 4.4.2 unsolicited ``* METADATA mailbox entry...`` (names only: they changed)."""

    mailbox: str
    entries: tuple[str, ...]


Response = (
    TaggedResponse
    | UntaggedStatus
    | ContinuationResponse
    | CapabilityResponse
    | EnabledResponse
    | ExistsResponse
    | RecentResponse
    | ExpungeResponse
    | UidFetchResponse
    | VanishedResponse
    | FetchResponse
    | FetchFlagsBatch
    | FetchResponses
    | FetchData
    | FlagsResponse
    | ListResponse
    | LsubResponse
    | StatusResponse
    | SearchResponse
    | EsearchResponse
    | SortResponse
    | ThreadResponse
    | IdResponse
    | NamespaceResponse
    | XStateResponse
    | QuotaResponse
    | QuotaRootResponse
    | MetadataResponse
    | MetadataChangedResponse
)
