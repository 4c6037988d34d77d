"""SEARCH criteria as a typed tree: And/Or/Not nodes over leaf keys.

Flag keys are normalised: ``UNSEEN`` is ``SearchFlag("\\Seen", False)``, ``KEYWORD x`` is
``SearchFlag("x", True)``, ``NEW`` is ``And(RECENT, UNSEEN)``. String values are ``str`` for
US-ASCII/UTF-8 (and no charset); for other charsets they stay ``bytes`` and the session decides
(decode, or answer ``NO [BADCHARSET]``).
"""

from __future__ import annotations

import datetime

import msgspec

from .sequence import SequenceSet

__all__ = [
    "DATE_KEYS",
    "TEXT_KEYS",
    "SearchAll",
    "SearchAnd",
    "SearchDate",
    "SearchFlag",
    "SearchHeader",
    "SearchKey",
    "SearchModSeq",
    "SearchNot",
    "SearchObjectId",
    "SearchOr",
    "SearchSaveDateSupported",
    "SearchSequence",
    "SearchSize",
    "SearchText",
    "SearchWithin",
]

TEXT_KEYS = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
DATE_KEYS = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE",
                       "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"})  # the last three: RFC 8514


class SearchAll(msgspec.Struct, frozen=True):
    """``ALL``."""


class SearchSaveDateSupported(msgspec.Struct, frozen=True):
    """``SAVEDATESUPPORTED`` (RFC 8514): every message if the mailbox keeps save dates, none otherwise."""


class SearchFlag(msgspec.Struct, frozen=True):
    """A flag or keyword that must be set (``present``) or not set."""

    flag: str
    present: bool = True


class SearchText(msgspec.Struct, frozen=True):
    """Substring search in a standard place: key is one of :data:`TEXT_KEYS`."""

    key: str
    value: str | bytes


class SearchHeader(msgspec.Struct, frozen=True):
    """``HEADER field-name string``."""

    field: str
    value: str | bytes


class SearchDate(msgspec.Struct, frozen=True):
    """Date comparison: key is one of :data:`DATE_KEYS`."""

    key: str
    date: datetime.date


class SearchSize(msgspec.Struct, frozen=True):
    """``LARGER n`` (larger=True) or ``SMALLER n``."""

    larger: bool
    size: int


class SearchSequence(msgspec.Struct, frozen=True):
    """A bare sequence set, or ``UID set``."""

    sequence: SequenceSet
    uid: bool = False


class SearchModSeq(msgspec.Struct, frozen=True):
    """``MODSEQ [entry-name entry-type] n`` (RFC 7162); entry is (name, "priv"/"shared"/"all")."""

    modseq: int
    entry: tuple[str, str] | None = None


class SearchWithin(msgspec.Struct, frozen=True):
    """``OLDER n`` (older=True) or ``YOUNGER n`` (RFC 5032): INTERNALDATE against the present, in seconds."""

    older: bool
    seconds: int


class SearchObjectId(msgspec.Struct, frozen=True):
    """``EMAILID id`` or ``THREADID id`` (RFC 8474): key is ``EMAILID`` or ``THREADID``."""

    key: str
    id: str


class SearchNot(msgspec.Struct, frozen=True):
    key: SearchKey


class SearchOr(msgspec.Struct, frozen=True):
    left: SearchKey
    right: SearchKey


class SearchAnd(msgspec.Struct, frozen=True):
    """All keys must match; a parenthesised list, or several top-level keys."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    SearchAll
    | SearchSaveDateSupported
    | SearchFlag
    | SearchText
    | SearchHeader
    | SearchDate
    | SearchSize
    | SearchSequence
    | SearchModSeq
    | SearchWithin
    | SearchObjectId
    | SearchNot
    | SearchOr
    | SearchAnd
)
