"""SORT (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO) as a pure function over cached metadata.

Nothing here reads a message file: every key comes from the index row (UID, INTERNALDATE, size) and the
cached :class:`imapd.mime.MessageMetadata`.

Semantics:

- ARRIVAL is INTERNALDATE; DATE is the Date header in UTC (``meta.date``), INTERNALDATE when the header
  is missing or unparsable; SIZE is the RFC822.SIZE.
- FROM/TO/CC compare the local part of the first address, SUBJECT the base subject (RFC 5256 2.1),
  DISPLAYFROM/DISPLAYTO the display name of the first address (its addr-spec when it has none). Missing
  values are ``""``, which collates first.
- Strings collate with i;ascii-casemap (RFC 4790 9.2), the SORT default (RFC 5256 3, as we do not offer
  I18NLEVEL): ``a``-``z`` map to ``A``-``Z``, everything else compares as its octets (code points order
  as UTF-8 octets do). So ``[`` and ``_`` sort after the letters, not before as a lower-casing would.
- FROM/TO/CC/DISPLAYFROM/DISPLAYTO read the first address of the envelope; when it is a group
  (``Cc: group: a@b.example;``), that is the group name.
- Messages equal on every key are ordered by sequence number, ascending, whatever REVERSE says: REVERSE
  applies to its own key only. UIDs grow with sequence numbers, so the UID is the final key.

Speed: :func:`imapd.session.sortrows.sort_uids` runs :func:`sort_columns` over the mailbox's in-memory
key columns (:mod:`imapd.store.sortkeys`), string keys ranked once per distinct value; no row objects.
:func:`sort_messages` does the same from :class:`SortRow` objects. One sort of one int per message, whatever the keys. Every key becomes a column of non-negative
ints, computed once per row in a list comprehension: numbers shifted to start at 0 (Unix times then
stay on CPython's fast path for small ints), strings replaced by their rank among the distinct values.
A key whose REVERSE differs from the first key's is mirrored (``high - value``), and the columns are
combined into one int per row in mixed radix (``rank1 * count2 + rank2``...). The UID list, already in
sequence order, is then sorted once with the first key's direction: the sort is stable, also reversed,
so messages equal on every key stay in sequence order. The key function only feeds the precomputed
column in order; no Python code runs per comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter

import msgspec

from imapd.mime.structs import MessageMetadata
from imapd.protocol.commands import SortKey
from imapd.store.sortkeys import ThreadFields

__all__ = ["SORT_KEYS", "STRING_FIELDS", "Column", "SortRow", "UnknownSortKey", "casemap", "check_keys",
           "numeric_ranks", "sent_date", "sort_columns", "sort_messages", "string_ranks"]


class SortRow(msgspec.Struct, frozen=True, gc=False):
    """What SORT and THREAD know about one message.

    ``number`` is what a THREAD response shows for the message (the sequence number for THREAD, the UID
    for UID THREAD); ``internaldate`` is Unix seconds; ``size`` is RFC822.SIZE. ``meta`` is the full
    cached metadata, or the store's :class:`~imapd.store.sortkeys.ThreadFields` (the same fields minus
    ENVELOPE/BODYSTRUCTURE, which :func:`imapd.session.sortrows.sort_rows` does not decode).
    """

    number: int
    uid: int
    internaldate: int
    size: int
    meta: MessageMetadata | ThreadFields


class UnknownSortKey(ValueError):
    """A sort key this module does not know (the parser should have refused it)."""


_ASCII_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}


def casemap(text: str) -> str:
    """The i;ascii-casemap comparison form of ``text`` (see the module docstring)."""
    if text.isascii():
        return text.upper()
    return text.translate(_ASCII_UPPER)


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


STRING_FIELDS: dict[str, tuple[str, Callable[[str], str]]] = {
    "SUBJECT": ("base_subject", casemap),
    "FROM": ("from_mailbox", casemap),
    "TO": ("to_mailbox", casemap),
    "CC": ("cc_mailbox", casemap),
    "DISPLAYFROM": ("from_display", casemap),
    "DISPLAYTO": ("to_display", casemap),
}
"""String sort key -> (the ``MessageMetadata`` field it reads, its collation form)."""


def _strings(name: str) -> Callable[[list[SortRow]], list[str]]:
    field, form = STRING_FIELDS[name]
    get = attrgetter(field)
    return lambda rows: [form(get(r.meta)) for r in rows]


_NUMERIC: dict[str, Callable[[list[SortRow]], list[int]]] = {
    "ARRIVAL": _arrival,
    "DATE": _date,
    "SIZE": _size,
}
_STRING: dict[str, Callable[[list[SortRow]], list[str]]] = {name: _strings(name) for name in STRING_FIELDS}
SORT_KEYS = frozenset(_NUMERIC) | frozenset(_STRING)
"""Every sort key :func:`sort_messages` accepts (upper case)."""

_uid: Callable[[SortRow], int] = attrgetter("uid")

Column = Callable[[str, bool], tuple[Sequence[int], int]]
"""``column(key name, flip)``: the key's values as non-negative ints in the key's order (mirrored when
``flip``) and the number of values they can take (the radix for combining columns)."""


def numeric_ranks(values: Sequence[int], flip: bool) -> tuple[Sequence[int], int]:
    """A numeric column as a :data:`Column` result (shifted to start at 0, or mirrored)."""
    if not values:
        return [], 1
    low, high = min(values), max(values)
    if flip:
        return [high - v for v in values], high - low + 1
    return ([v - low for v in values] if low else values), high - low + 1


def string_ranks(column: Sequence[str], flip: bool) -> tuple[list[int], int]:
    """A column of collation forms as a :data:`Column` result (ranks among the distinct values)."""
    distinct = sorted(set(column))
    count = len(distinct)
    if flip:
        rank = {text: count - 1 - i for i, text in enumerate(distinct)}
    else:
        rank = {text: i for i, text in enumerate(distinct)}
    return [rank[text] for text in column], count


def _row_column(rows: list[SortRow]) -> Column:
    def column(name: str, flip: bool) -> tuple[Sequence[int], int]:
        numeric = _NUMERIC.get(name)
        if numeric is not None:
            return numeric_ranks(numeric(rows), flip)
        return string_ranks(_STRING[name](rows), flip)

    return column


def _feeder(column: Sequence[int]) -> Callable[[object], int]:
    """A key function that returns ``column`` item by item: ``list.sort`` calls its key exactly once
    per element, in list order, before comparing anything."""
    next_value = iter(column).__next__
    return lambda _: next_value()


def check_keys(keys: Sequence[SortKey]) -> None:
    """Raise :class:`UnknownSortKey` for a key outside :data:`SORT_KEYS`."""
    for key in keys:
        if key.key.upper() not in SORT_KEYS:
            raise UnknownSortKey(key.key)


def sort_columns(uids: list[int], keys: Sequence[SortKey], column: Column) -> list[int]:
    """Sort ``uids`` (ascending, unique; sorted in place and returned) by ``keys``, whose values
    ``column`` gives aligned with ``uids``. The core of :func:`sort_messages`, also used by
    :mod:`imapd.session.sortrows` over the mailbox's in-memory key columns."""
    if not uids or not keys:
        return uids
    reverse = keys[0].reverse  # sort in the first key's direction; mirror the keys that go the other way
    combined, _ = column(keys[0].key.upper(), False)
    for key in keys[1:]:
        values, radix = column(key.key.upper(), key.reverse != reverse)
        combined = [high * radix + low for high, low in zip(combined, values, strict=True)]
    uids.sort(key=_feeder(combined), reverse=reverse)  # stable, also reversed: equal keys keep UID order
    return uids


def sort_messages(rows: Iterable[SortRow], keys: Sequence[SortKey]) -> list[int]:
    """UIDs of ``rows`` in RFC 5256 SORT order for ``keys`` (the caller maps them to sequence numbers
    for a plain SORT). Raises :class:`UnknownSortKey` for a key outside :data:`SORT_KEYS`."""
    check_keys(keys)
    rows = list(rows)
    uids = [r.uid for r in rows]
    if uids != sorted(uids):  # the implicit last key: sequence number (UID) ascending
        rows.sort(key=_uid)
        uids = [r.uid for r in rows]
    return sort_columns(uids, keys, _row_column(rows))
