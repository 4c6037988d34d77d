"""SORT and THREAD inputs from the store's in-memory key columns, never from message files.

- :func:`sort_uids` is the SORT fast path: it ranks the mailbox's :class:`~imapd.store.sortkeys.SortKeys`
  columns (numbers as they are; strings by collation rank of their distinct value, computed once per
  column and cached on the keys until a new distinct value appears) and calls
  :func:`imapd.session.sorting.sort_columns`. No per-message object is created.
- :func:`sort_rows` builds :class:`~imapd.session.sorting.SortRow` objects for THREAD (and any caller of
  :func:`~imapd.session.sorting.sort_messages`): one index query for INTERNALDATE, size and the metadata
  fields THREAD needs, ENVELOPE/BODYSTRUCTURE left undecoded.

Measured (100,000 messages, 2-core machine): ``UID SORT (REVERSE DATE) UTF-8 ALL`` in the store + session
went from about 3.9 s (a ``metadata()`` query and full decode per message) to a few tens of ms once the keys
are built; building them is one query (about 0.5-0.7 s at 100k, once per open mailbox per process).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING

from imapd.protocol.commands import SortKey
from imapd.session.sorting import STRING_FIELDS, SortRow, check_keys, numeric_ranks, sort_columns
from imapd.store.sortkeys import SortKeys, thread_rows

if TYPE_CHECKING:
    from imapd.store.mailbox import Mailbox

__all__ = ["sort_rows", "sort_uids"]

_NUMERIC_COLUMNS = {"ARRIVAL": "internaldate", "DATE": "date", "SIZE": "size"}


def _string_ranks(keys: SortKeys, name: str) -> tuple[array[int], int]:
    """Collation rank of every distinct value of the column of sort key ``name``, and their count."""
    field, form = STRING_FIELDS[name]
    values = keys.strings[field].values
    cache_key = (name, len(values))
    cached = keys.ranks.get(name)
    if cached is not None and cached[0] == cache_key:
        return cached[1], cached[2]
    forms = [form(v) for v in values]
    distinct = sorted(set(forms))
    rank = {text: i for i, text in enumerate(distinct)}
    ranks = array("I", [rank[f] for f in forms])
    keys.ranks[name] = (cache_key, ranks, len(distinct))
    return ranks, len(distinct)


def sort_uids(mailbox: Mailbox, uids: Sequence[int], keys: Sequence[SortKey]) -> list[int]:
    """``uids`` (ascending; UIDs no longer in the mailbox are dropped) in RFC 5256 SORT order for
    ``keys``; the same result as ``sort_messages(sort_rows(...), keys)``."""
    check_keys(keys)
    sk = mailbox.sort_keys()
    positions = sk.positions(uids)
    out = list(sk.uids) if positions is None else [sk.uids[p] for p in positions]

    def column(name: str, flip: bool) -> tuple[Sequence[int], int]:
        attr = _NUMERIC_COLUMNS.get(name)
        if attr is not None:
            data: array[int] = getattr(sk, attr)
            return numeric_ranks(data if positions is None else [data[p] for p in positions], flip)
        ranks, count = _string_ranks(sk, name)
        ids = sk.strings[STRING_FIELDS[name][0]].ids
        if positions is None:
            column_ranks = [ranks[i] for i in ids]
        else:
            column_ranks = [ranks[ids[p]] for p in positions]
        if flip:
            top = count - 1
            return [top - r for r in column_ranks], count
        return column_ranks, count

    return sort_columns(out, keys, column)


def sort_rows(mailbox: Mailbox, uids: Sequence[int], numbers: Sequence[int]) -> list[SortRow]:
    """SortRows of the ``uids`` that still exist, in ascending UID order; ``numbers[i]`` is what a THREAD
    response shows for ``uids[i]`` (its sequence number, or the UID for UID THREAD)."""
    number_of = dict(zip(uids, numbers, strict=True))
    return [SortRow(number_of[uid], uid, idate, size, fields)
            for uid, idate, size, fields in thread_rows(mailbox, uids)]
