"""SORT (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO) as a pure function over cached metadata.

Nothing here reads a message file: every key comes from the index row (UID, INTERNALDATE, size) and the
cached :class:`imapd.mime.MessageMetadata`.

Semantics:

- ARRIVAL is INTERNALDATE; DATE is the Date header in UTC (``meta.date``), INTERNALDATE when the header
  is missing or unparsable; SIZE is the RFC822.SIZE.
- FROM/TO/CC compare the local part of the first address, SUBJECT the base subject, DISPLAYFROM/DISPLAYTO
  the display name of the first address (its addr-spec when it has none). Missing values are ``""``,
  which collates first.
- Strings collate with i;unicode-casemap (RFC 5051), approximated as: ASCII lower-cased; anything else
  case-folded (full Unicode case folding) then NFKD-normalised.
- Messages equal on every key are ordered by sequence number, ascending, whatever REVERSE says: REVERSE
  applies to its own key only. UIDs grow with sequence numbers, so the UID is the final key.

Speed: one sort of one int per message, whatever the keys. Every key becomes a column of non-negative
ints, computed once per row in a list comprehension: numbers shifted to start at 0 (Unix times then
stay on CPython's fast path for small ints), strings replaced by their rank among the distinct values.
A key whose REVERSE differs from the first key's is mirrored (``high - value``), and the columns are
combined into one int per row in mixed radix (``rank1 * count2 + rank2``...). The UID list, already in
sequence order, is then sorted once with the first key's direction: the sort is stable, also reversed,
so messages equal on every key stay in sequence order. The key function only feeds the precomputed
column in order; no Python code runs per comparison.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter

import msgspec

from imapd.mime.structs import MessageMetadata
from imapd.protocol.commands import SortKey

__all__ = ["SORT_KEYS", "SortRow", "UnknownSortKey", "casemap", "sent_date", "sort_messages"]


class SortRow(msgspec.Struct, frozen=True, gc=False):
    """What SORT and THREAD know about one message.

    ``number`` is what a THREAD response shows for the message (the sequence number for THREAD, the UID
    for UID THREAD); ``internaldate`` is Unix seconds; ``size`` is RFC822.SIZE.
    """

    number: int
    uid: int
    internaldate: int
    size: int
    meta: MessageMetadata


class UnknownSortKey(ValueError):
    """A sort key this module does not know (the parser should have refused it)."""


def casemap(text: str) -> str:
    """The i;unicode-casemap comparison form of ``text`` (see the module docstring)."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKD", text.casefold())


def sent_date(row: SortRow) -> int:
    """RFC 5256 sent date: the Date header in UTC, else INTERNALDATE."""
    date = row.meta.date
    return row.internaldate if date is None else date


# Each key becomes a column: one value per row, computed in one list comprehension.


def _arrival(rows: list[SortRow]) -> list[int]:
    return [r.internaldate for r in rows]


def _date(rows: list[SortRow]) -> list[int]:
    return [r.internaldate if (d := r.meta.date) is None else d for r in rows]


def _size(rows: list[SortRow]) -> list[int]:
    return [r.size for r in rows]


def _subject(rows: list[SortRow]) -> list[str]:
    # base_subject is already extracted and case-folded
    return [s if (s := r.meta.base_subject).isascii() else unicodedata.normalize("NFKD", s) for r in rows]


def _from(rows: list[SortRow]) -> list[str]:
    return [casemap(r.meta.from_mailbox) for r in rows]


def _to(rows: list[SortRow]) -> list[str]:
    return [casemap(r.meta.to_mailbox) for r in rows]


def _cc(rows: list[SortRow]) -> list[str]:
    return [casemap(r.meta.cc_mailbox) for r in rows]


def _display_from(rows: list[SortRow]) -> list[str]:
    return [casemap(r.meta.from_display) for r in rows]


def _display_to(rows: list[SortRow]) -> list[str]:
    return [casemap(r.meta.to_display) for r in rows]


_NUMERIC: dict[str, Callable[[list[SortRow]], list[int]]] = {
    "ARRIVAL": _arrival,
    "DATE": _date,
    "SIZE": _size,
}
_STRING: dict[str, Callable[[list[SortRow]], list[str]]] = {
    "SUBJECT": _subject,
    "FROM": _from,
    "TO": _to,
    "CC": _cc,
    "DISPLAYFROM": _display_from,
    "DISPLAYTO": _display_to,
}
SORT_KEYS = frozenset(_NUMERIC) | frozenset(_STRING)
"""Every sort key :func:`sort_messages` accepts (upper case)."""

_uid: Callable[[SortRow], int] = attrgetter("uid")

def _ranks(rows: list[SortRow], key: SortKey, flip: bool) -> tuple[list[int], int]:
    """The column of ``key`` as non-negative ints in the key's order (mirrored when ``flip``), and the
    number of distinct values they can take (the radix for combining columns)."""
    name = key.key.upper()
    numeric = _NUMERIC.get(name)
    if numeric is not None:
        values = numeric(rows)
        low, high = min(values), max(values)
        if flip:
            return [high - v for v in values], high - low + 1
        return ([v - low for v in values] if low else values), high - low + 1
    strings = _STRING.get(name)
    if strings is None:
        raise UnknownSortKey(key.key)
    column = strings(rows)
    distinct = sorted(set(column))
    count = len(distinct)
    if flip:
        rank = {text: count - 1 - i for i, text in enumerate(distinct)}
    else:
        rank = {text: i for i, text in enumerate(distinct)}
    return [rank[text] for text in column], count


def _feeder(column: list[int]) -> Callable[[object], int]:
    """A key function that returns ``column`` item by item: ``list.sort`` calls its key exactly once
    per element, in list order, before comparing anything."""
    next_value = iter(column).__next__
    return lambda _: next_value()


def sort_messages(rows: Iterable[SortRow], keys: Sequence[SortKey]) -> list[int]:
    """UIDs of ``rows`` in RFC 5256 SORT order for ``keys`` (the caller maps them to sequence numbers
    for a plain SORT). Raises :class:`UnknownSortKey` for a key outside :data:`SORT_KEYS`."""
    for key in keys:
        if key.key.upper() not in SORT_KEYS:
            raise UnknownSortKey(key.key)
    rows = list(rows)
    uids = [r.uid for r in rows]
    if uids != sorted(uids):  # the implicit last key: sequence number (UID) ascending
        rows.sort(key=_uid)
        uids = [r.uid for r in rows]
    if not rows or not keys:
        return uids
    reverse = keys[0].reverse  # sort in the first key's direction; mirror the keys that go the other way
    combined, _ = _ranks(rows, keys[0], False)
    for key in keys[1:]:
        column, radix = _ranks(rows, key, key.reverse != reverse)
        combined = [high * radix + low for high, low in zip(combined, column, strict=True)]
    uids.sort(key=_feeder(combined), reverse=reverse)  # stable, also reversed: equal keys keep UID order
    return uids
