"""Compact UID sets: sorted ranges as delta varints, or a fingerprint when too irregular.

Wire form of a range list (``UidSet.to_bytes``): a sequence of unsigned LEB128 varints, two per range::

    start_0, end_0 - start_0, start_1 - end_0 - 2, end_1 - start_1, ...

Ranges are sorted, disjoint and never adjacent (``start_i >= end_(i-1) + 2``), so every delta is
``>= 0`` and each set has exactly one encoding (varints must be minimal). The empty set is ``b""``.
A 100,000-message mailbox with a handful of gaps takes a few dozen bytes.

When a set is too irregular for a size cap, :func:`compact_uids` returns a :class:`UidFingerprint`
instead: ``(count, uidnext, 64-bit BLAKE2b of the sorted UIDs)``. The receiver cannot list the UIDs
back, but can check a candidate list it rebuilt (e.g. current UIDs below ``uidnext`` plus those
expunged since the saved MODSEQ) with :meth:`UidFingerprint.matches`.
"""

from __future__ import annotations

import hashlib
import operator
import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Annotated, Final, TypeAlias

import msgspec

__all__ = [
    "DEFAULT_MAX_RANGE_BYTES",
    "MAX_UID",
    "UID_TYPECODE",
    "KnownUids",
    "UidFingerprint",
    "UidRanges",
    "UidSet",
    "UidSetFormatError",
    "compact_uids",
    "fingerprint",
    "known_uids_match",
]

MAX_UID: Final = 0xFFFFFFFF
"""Largest UID (RFC 9051: a UID is a 32-bit unsigned number)."""

UID_TYPECODE: Final[str] = "I" if array("I").itemsize == 4 else "L"
"""``array`` typecode of 32-bit unsigned ints on this platform (``'I'`` everywhere that matters)."""

DEFAULT_MAX_RANGE_BYTES: Final = 64
"""Default cap on the range encoding before :func:`compact_uids` falls back to a fingerprint."""

_MAX_VARINT_BYTES: Final = 5  # 32-bit values need at most 5 LEB128 bytes
_HASH_PERSON: Final = b"statecodec.uids1"  # BLAKE2b personalisation, 16 bytes

UidArray: TypeAlias = "array[int]"


class UidSetFormatError(ValueError):
    """A byte string is not a valid range encoding."""


def _is_strictly_increasing(uids: Sequence[int]) -> bool:
    return all(map(operator.lt, uids, islice(uids, 1, None)))


def _run_end(uids: Sequence[int], i: int, n: int) -> int:
    """Index of the last element of the run of consecutive UIDs starting at ``i``.

    For strictly increasing ints ``uids[j] - j`` never decreases, so "``uids[j] - j == uids[i] - i``"
    holds on a prefix of ``[i, n)``: gallop, then binary search. O(log run length).
    """
    base = uids[i] - i
    lo, step = i, 1
    while lo + step < n and uids[lo + step] - (lo + step) == base:
        lo += step
        step *= 2
    hi = min(lo + step, n)  # first index known (or assumed) outside the run
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if uids[mid] - mid == base:
            lo = mid
        else:
            hi = mid
    return lo


def _put_varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _varint_size(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


class UidSet:
    """An immutable set of UIDs held as sorted, disjoint, non-adjacent inclusive ranges."""

    __slots__ = ("_count", "_ends", "_starts")

    _starts: UidArray
    _ends: UidArray
    _count: int

    def __init__(self) -> None:
        self._starts = array(UID_TYPECODE)
        self._ends = array(UID_TYPECODE)
        self._count = 0

    @classmethod
    def _from_normalized(cls, starts: UidArray, ends: UidArray) -> UidSet:
        self = cls.__new__(cls)
        self._starts = starts
        self._ends = ends
        self._count = sum(ends) - sum(starts) + len(starts)
        return self

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_sorted_array(cls, uids: Sequence[int], *, check: bool = True) -> UidSet:
        """Fast path from a strictly increasing UID sequence (typically ``array('I')``).

        Cost is O(ranges * log n) plus an O(n) C-speed order check that ``check=False`` skips
        (only for input known to be sorted and unique; otherwise the result is wrong).
        """
        if check:
            if not _is_strictly_increasing(uids):
                raise ValueError("UIDs must be strictly increasing")
            if uids and (uids[0] < 0 or uids[-1] > MAX_UID):
                raise ValueError("UID out of range 0..2^32-1")
        starts, ends = array(UID_TYPECODE), array(UID_TYPECODE)
        i, n = 0, len(uids)
        while i < n:
            j = _run_end(uids, i, n)
            starts.append(uids[i])
            ends.append(uids[j])
            i = j + 1
        return cls._from_normalized(starts, ends)

    @classmethod
    def from_uids(cls, uids: Iterable[int]) -> UidSet:
        """From UIDs in any order, duplicates allowed."""
        return cls.from_sorted_array(array(UID_TYPECODE, sorted(set(uids))))

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> UidSet:
        """From inclusive ``(start, end)`` ranges in any order; overlapping/adjacent ones merge."""
        merged: list[list[int]] = []
        for start, end in sorted(ranges):
            if not 0 <= start <= end <= MAX_UID:
                raise ValueError(f"bad UID range {start}:{end}")
            if merged and start <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return cls._from_normalized(
            array(UID_TYPECODE, (r[0] for r in merged)), array(UID_TYPECODE, (r[1] for r in merged))
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> UidSet:
        """Decode the range encoding; raises :class:`UidSetFormatError` on any malformed input."""
        values: list[int] = []
        value = shift = nbytes = 0
        for byte in data:
            value |= (byte & 0x7F) << shift
            nbytes += 1
            if byte & 0x80:
                shift += 7
                if nbytes >= _MAX_VARINT_BYTES:
                    raise UidSetFormatError("varint too long")
                continue
            if byte == 0 and nbytes > 1:
                raise UidSetFormatError("non-minimal varint")
            values.append(value)
            value = shift = nbytes = 0
        if nbytes:
            raise UidSetFormatError("truncated varint")
        if len(values) % 2:
            raise UidSetFormatError("odd number of varints")
        starts, ends = array(UID_TYPECODE), array(UID_TYPECODE)
        prev_end = -2  # so the first start is its own delta: start_0 = -2 + 2 + delta
        for k in range(0, len(values), 2):
            start = prev_end + 2 + values[k]
            end = start + values[k + 1]
            if end > MAX_UID:
                raise UidSetFormatError("UID beyond 2^32-1")
            starts.append(start)
            ends.append(end)
            prev_end = end
        return cls._from_normalized(starts, ends)

    # -- encoding -----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        out = bytearray()
        prev_end = -2
        for start, end in zip(self._starts, self._ends, strict=True):
            _put_varint(out, start - prev_end - 2)
            _put_varint(out, end - start)
            prev_end = end
        return bytes(out)

    def encoded_size(self) -> int:
        """``len(self.to_bytes())`` without building it."""
        size, prev_end = 0, -2
        for start, end in zip(self._starts, self._ends, strict=True):
            size += _varint_size(start - prev_end - 2) + _varint_size(end - start)
            prev_end = end
        return size

    def to_array(self) -> UidArray:
        """All UIDs, ascending, as ``array('I')``."""
        out = array(UID_TYPECODE)
        for start, end in zip(self._starts, self._ends, strict=True):
            out.extend(range(start, end + 1))
        return out

    def to_sequence_set(self) -> str:
        """IMAP sequence-set syntax, e.g. ``"1:4,7,9:12"``; ``""`` when empty."""
        return ",".join(
            str(s) if s == e else f"{s}:{e}" for s, e in zip(self._starts, self._ends, strict=True)
        )

    # -- queries ------------------------------------------------------------------------------

    def ranges(self) -> Iterator[tuple[int, int]]:
        """Inclusive ``(start, end)`` ranges in ascending order."""
        return zip(self._starts, self._ends, strict=True)

    @property
    def range_count(self) -> int:
        return len(self._starts)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        for start, end in zip(self._starts, self._ends, strict=True):
            yield from range(start, end + 1)

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        k = bisect_right(self._starts, uid) - 1
        return k >= 0 and uid <= self._ends[k]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UidSet):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    def __hash__(self) -> int:
        return hash((self._starts.tobytes(), self._ends.tobytes()))

    def __repr__(self) -> str:
        text = self.to_sequence_set()
        if len(text) > 60:
            text = text[:57] + "..."
        return f"UidSet({text!r}, count={self._count})"


# -- wire structs -------------------------------------------------------------------------------

_U32 = Annotated[int, msgspec.Meta(ge=0, le=MAX_UID)]
_UidNext = Annotated[int, msgspec.Meta(ge=0, le=MAX_UID + 1)]
_U64 = Annotated[int, msgspec.Meta(ge=0)]  # msgpack itself caps at 2^64-1


class UidRanges(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True, tag=0):
    """Exact UID set in the range encoding (see module docstring)."""

    data: bytes

    def __post_init__(self) -> None:  # also runs when msgspec decodes: malformed data is rejected
        UidSet.from_bytes(self.data)

    @classmethod
    def from_set(cls, uids: UidSet) -> UidRanges:
        return cls(uids.to_bytes())

    def to_set(self) -> UidSet:
        return UidSet.from_bytes(self.data)


class UidFingerprint(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True, tag=1):
    """Checksum of a UID set too irregular to carry: count, the UIDNEXT it was taken under, and a
    64-bit BLAKE2b of the sorted UIDs as little-endian uint32."""

    count: _U32
    uidnext: _UidNext
    uid_hash: _U64

    def matches(self, sorted_uids: Sequence[int]) -> bool:
        """Whether a strictly increasing candidate list is the fingerprinted set."""
        if len(sorted_uids) != self.count:
            return False
        if sorted_uids and sorted_uids[-1] >= self.uidnext:
            return False
        arr = _as_u32_array(sorted_uids)
        if not _is_strictly_increasing(arr):
            return False
        return _hash_sorted(arr) == self.uid_hash


KnownUids: TypeAlias = UidRanges | UidFingerprint
"""The UIDs a client knows: exact ranges, or a fingerprint."""


def _as_u32_array(uids: Sequence[int]) -> UidArray:
    if isinstance(uids, array) and uids.typecode == UID_TYPECODE:
        return uids
    return array(UID_TYPECODE, uids)


def _hash_sorted(arr: UidArray) -> int:
    if sys.byteorder == "big":
        arr = array(UID_TYPECODE, arr)
        arr.byteswap()
    digest = hashlib.blake2b(arr.tobytes(), digest_size=8, person=_HASH_PERSON).digest()
    return int.from_bytes(digest, "big")


def fingerprint(sorted_uids: Sequence[int], *, uidnext: int) -> UidFingerprint:
    """Fingerprint of a strictly increasing UID list, all below ``uidnext``."""
    arr = _as_u32_array(sorted_uids)
    if not _is_strictly_increasing(arr):
        raise ValueError("UIDs must be strictly increasing")
    if arr and arr[-1] >= uidnext:
        raise ValueError("UID not below uidnext")
    return UidFingerprint(count=len(arr), uidnext=uidnext, uid_hash=_hash_sorted(arr))


def compact_uids(
    sorted_uids: Sequence[int],
    *,
    uidnext: int,
    max_bytes: int = DEFAULT_MAX_RANGE_BYTES,
    check: bool = True,
) -> KnownUids:
    """The UIDs a client knows, as exact ranges when they fit in ``max_bytes``, else a fingerprint.

    ``sorted_uids`` must be strictly increasing and below ``uidnext`` (``array('I')`` is fastest).
    Range detection stops as soon as the cap is exceeded, so an irregular 100k set costs one O(n)
    order check and a hash, not a full range scan. ``check=False`` skips the order check (only for
    input known to be strictly increasing; otherwise the result is wrong).
    """
    arr = _as_u32_array(sorted_uids)
    if check and not _is_strictly_increasing(arr):
        raise ValueError("UIDs must be strictly increasing")
    if arr and arr[-1] >= uidnext:
        raise ValueError("UID not below uidnext")
    out = bytearray()
    i, n, prev_end = 0, len(arr), -2
    while i < n:
        j = _run_end(arr, i, n)
        _put_varint(out, arr[i] - prev_end - 2)
        _put_varint(out, arr[j] - arr[i])
        if len(out) > max_bytes:
            return UidFingerprint(count=n, uidnext=uidnext, uid_hash=_hash_sorted(arr))
        prev_end = arr[j]
        i = j + 1
    return UidRanges(bytes(out))


def known_uids_match(known: KnownUids, sorted_uids: Sequence[int]) -> bool:
    """Whether a rebuilt, strictly increasing candidate list equals the saved known UIDs."""
    if isinstance(known, UidRanges):
        try:
            saved = known.to_set()
        except UidSetFormatError:
            return False
        arr = _as_u32_array(sorted_uids)
        if not _is_strictly_increasing(arr):
            return False
        return len(saved) == len(arr) and saved == UidSet.from_sorted_array(arr, check=False)
    return known.matches(sorted_uids)
