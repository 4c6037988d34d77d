from __future__ import annotations

import random
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statecodec import (
    UidFingerprint,
    UidRanges,
    UidSet,
    UidSetFormatError,
    compact_uids,
    fingerprint,
    known_uids_match,
)
from statecodec.uidset import MAX_UID

from .strategies import small_uid_sets, uid_ranges


@given(small_uid_sets())
def test_round_trip_sorted_uids(uids: list[int]) -> None:
    s = UidSet.from_sorted_array(array("I", uids))
    assert list(s) == uids
    assert s.to_array() == array("I", uids)
    assert len(s) == len(uids)
    data = s.to_bytes()
    assert len(data) == s.encoded_size()
    back = UidSet.from_bytes(data)
    assert back == s
    assert list(back) == uids
    assert UidSet.from_uids(reversed(uids)) == s
    assert UidSet.from_ranges(s.ranges()) == s


@given(uid_ranges())
def test_round_trip_ranges_full_32bit(ranges: list[tuple[int, int]]) -> None:
    s = UidSet.from_ranges(ranges)
    assert list(s.ranges()) == ranges
    back = UidSet.from_bytes(s.to_bytes())
    assert list(back.ranges()) == ranges
    assert len(back) == sum(e - s_ + 1 for s_, e in ranges)
    for start, end in ranges:
        assert start in back and end in back
        assert (start - 1 in back) == (start > 0 and any(a <= start - 1 <= b for a, b in ranges))


@given(uid_ranges(max_ranges=5))
def test_from_sorted_array_finds_runs(ranges: list[tuple[int, int]]) -> None:
    # keep arrays small: expand ranges only when they are short
    ranges = [(s, min(e, s + 50)) for s, e in ranges]
    expected = UidSet.from_ranges(ranges)
    arr = expected.to_array()
    assert UidSet.from_sorted_array(arr) == expected


@given(st.binary(max_size=40))
def test_from_bytes_never_crashes(data: bytes) -> None:
    try:
        s = UidSet.from_bytes(data)
    except UidSetFormatError:
        return
    assert s.to_bytes() == data  # the encoding is canonical


def test_edges() -> None:
    assert UidSet.from_bytes(b"") == UidSet() and UidSet().to_bytes() == b""
    top = UidSet.from_ranges([(0, 0), (MAX_UID, MAX_UID)])
    assert UidSet.from_bytes(top.to_bytes()) == top
    full = UidSet.from_ranges([(0, MAX_UID)])
    assert len(full) == 2**32 and len(full.to_bytes()) == 6
    assert UidSet.from_ranges([(1, 4), (5, 9), (3, 3), (11, 11)]).to_sequence_set() == "1:9,11"
    with pytest.raises(UidSetFormatError):
        UidSet.from_bytes(b"\x80")  # truncated
    with pytest.raises(UidSetFormatError):
        UidSet.from_bytes(b"\x01")  # odd count
    with pytest.raises(UidSetFormatError):
        UidSet.from_bytes(b"\x81\x00\x00")  # non-minimal
    with pytest.raises(UidSetFormatError):
        UidSet.from_bytes(b"\xff\xff\xff\xff\x0f\x01")  # beyond 2^32-1
    with pytest.raises(ValueError):
        UidSet.from_sorted_array(array("I", [3, 2]))
    with pytest.raises(ValueError):
        UidSet.from_ranges([(5, 4)])


def test_100k_with_gaps_is_tiny() -> None:
    gaps = {500, 20_000, 30_000, 77_777, 99_999}
    uids = array("I", (u for u in range(1, 100_006) if u not in gaps))
    known = compact_uids(uids, uidnext=100_006)
    assert isinstance(known, UidRanges)
    print(f"\n100k UIDs, 5 gaps: {len(known.data)} bytes")
    assert len(known.data) <= 32
    assert known.to_set().to_array() == uids


def test_irregular_falls_back_to_fingerprint() -> None:
    rng = random.Random(7)
    uids = array("I", sorted(rng.sample(range(1, 200_000), 100_000)))
    known = compact_uids(uids, uidnext=200_000)
    assert isinstance(known, UidFingerprint)
    assert (known.count, known.uidnext) == (100_000, 200_000)
    assert known.matches(uids) and known_uids_match(known, uids)
    other = array("I", uids)
    other[500] += 1 if other[500] + 1 != other[501] else 0
    assert other == uids or not known.matches(other)
    assert not known.matches(uids[:-1])
    dropped = array("I", uids[1:])
    dropped.append(199_999 if uids[-1] != 199_999 else 199_998)
    assert not known.matches(sorted(dropped))


@given(small_uid_sets(), st.integers(0, 3))
def test_known_uids_match_both_forms(uids: list[int], cap_index: int) -> None:
    cap = [0, 4, 16, 1000][cap_index]
    uidnext = (uids[-1] + 1) if uids else 1
    known = compact_uids(uids, uidnext=uidnext, max_bytes=cap)
    assert known_uids_match(known, uids)
    assert fingerprint(uids, uidnext=uidnext).matches(array("I", uids))
    if uids:
        assert not known_uids_match(known, uids[1:])
        assert not known_uids_match(known, [*uids, uids[-1] + 1])


def test_fingerprint_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        fingerprint([3, 2], uidnext=10)
    with pytest.raises(ValueError):
        fingerprint([3, 12], uidnext=10)
    with pytest.raises(ValueError):
        compact_uids([1, 10], uidnext=10)
