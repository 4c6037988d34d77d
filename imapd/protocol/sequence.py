"""Sequence sets (RFC 3501 ``sequence-set``, RFC 5182 ``$``) kept symbolic until a mailbox size is known.

A client may send ``1:4294967295`` or ``1:*``; we never expand a set into a list. ``*`` stays ``None``
in the ranges and ``$`` (the saved SEARCHRES result) is a distinct flag, so the session resolves both
against the view it holds.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

import msgspec

__all__ = ["MAX_NUMBER", "SequenceSet"]

MAX_NUMBER = 4294967295

Bound = int | None  # None is "*"


def _parse_number(text: str) -> Bound:
    if text == "*":
        return None
    if not text.isdigit() or not text.isascii() or text[0] == "0":
        raise ValueError(f"invalid sequence number {text!r}")
    value = int(text)
    if value > MAX_NUMBER:
        raise ValueError(f"sequence number {text!r} out of range")
    return value


class SequenceSet(msgspec.Struct, frozen=True):
    """Ranges of message numbers or UIDs; ``None`` as a bound means ``*``, ``saved`` means ``$``."""

    ranges: tuple[tuple[Bound, Bound], ...] = ()
    saved: bool = False

    @classmethod
    def parse(cls, text: str) -> SequenceSet:
        """Parse the wire form; raise ValueError on anything the grammar forbids."""
        if text == "$":
            return cls(saved=True)
        if not text:
            raise ValueError("empty sequence set")
        out: list[tuple[Bound, Bound]] = []
        for item in text.split(","):
            lo, sep, hi = item.partition(":")
            first = _parse_number(lo)
            out.append((first, _parse_number(hi) if sep else first))
        return cls(tuple(out))

    @classmethod
    def of(cls, numbers: Iterable[int]) -> SequenceSet:
        """Build the most compact set holding ``numbers`` (for APPENDUID, COPYUID, VANISHED, ESEARCH)."""
        return cls.in_order(sorted(set(numbers)))

    @classmethod
    def in_order(cls, numbers: Iterable[int]) -> SequenceSet:
        """``numbers`` in the order given (ESORT ALL, CONTEXT=SORT ADDTO): only ascending runs become
        ranges, as RFC 5267 3.2 asks (``23765,23764``, never ``23765:23764``)."""
        ranges: list[tuple[Bound, Bound]] = []
        for n in numbers:
            if ranges:
                lo, hi = ranges[-1]
                assert hi is not None
                if n == hi + 1:
                    ranges[-1] = (lo, n)
                    continue
            ranges.append((n, n))
        return cls(tuple(ranges))

    def __str__(self) -> str:
        if self.saved:
            return "$"
        parts: list[str] = []
        for lo, hi in self.ranges:
            a = "*" if lo is None else str(lo)
            if lo == hi:
                parts.append(a)
            else:
                parts.append(a + ":" + ("*" if hi is None else str(hi)))
        return ",".join(parts)

    def resolve(self, largest: int, *, clip: bool = True) -> tuple[tuple[int, int], ...]:
        """Sorted, merged, inclusive ranges with ``*`` replaced by ``largest``.

        ``clip`` drops numbers above ``largest`` (what UID sets want; for message numbers the session
        should first call :meth:`exceeds` and answer BAD).
        """
        if self.saved:
            raise ValueError("'$' must be resolved by the session from its saved search result")
        pairs: list[tuple[int, int]] = []
        for lo, hi in self.ranges:
            a = largest if lo is None else lo
            b = largest if hi is None else hi
            if a > b:
                a, b = b, a
            if clip:
                a = max(a, 1)
                b = min(b, largest)
                if a > b:
                    continue
            pairs.append((a, b))
        pairs.sort()
        merged: list[tuple[int, int]] = []
        for a, b in pairs:
            if merged and a <= merged[-1][1] + 1:
                if b > merged[-1][1]:
                    merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        return tuple(merged)

    def exceeds(self, largest: int) -> bool:
        """True when an explicit number is above ``largest`` (a BAD for message sequence numbers)."""
        return any(b is not None and b > largest for r in self.ranges for b in r)

    def iter(self, largest: int) -> Iterator[int]:
        """Iterate the resolved numbers in ascending order, lazily."""
        for a, b in self.resolve(largest):
            yield from range(a, b + 1)

    def contains(self, number: int, largest: int) -> bool:
        """Membership without expansion (resolve once and bisect if you test many numbers)."""
        merged = self.resolve(largest)
        i = bisect.bisect_right(merged, (number, MAX_NUMBER + 1)) - 1
        return i >= 0 and merged[i][0] <= number <= merged[i][1]

    def count(self, largest: int) -> int:
        """How many numbers the set holds once resolved."""
        return sum(b - a + 1 for a, b in self.resolve(largest))
