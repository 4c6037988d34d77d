"""Hypothesis strategies for statecodec tests."""

from __future__ import annotations

from array import array

from hypothesis import strategies as st

from statecodec import (
    EXTENSION_REGISTRY,
    LiveSearch,
    MailboxView,
    SessionState,
    UidRanges,
    UidSet,
    compact_uids,
)
from statecodec.uidset import MAX_UID


@st.composite
def uid_ranges(draw: st.DrawFn, max_ranges: int = 20) -> list[tuple[int, int]]:
    """Sorted, disjoint, non-adjacent inclusive ranges anywhere in 0..2^32-1."""
    points = draw(st.lists(st.integers(0, MAX_UID), max_size=2 * max_ranges, unique=True))
    points.sort()
    if len(points) % 2:
        points.append(points[-1])  # a single-UID range at the end
    ranges = [(points[i], points[i + 1]) for i in range(0, len(points), 2)]
    # make them non-adjacent / non-overlapping by merging where needed
    merged: list[tuple[int, int]] = []
    for s, e in ranges:
        if merged and s <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def small_uid_sets() -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(1, 5000), max_size=300, unique=True).map(sorted)


extension_names = st.lists(
    st.one_of(
        st.sampled_from(EXTENSION_REGISTRY),
        st.text(st.sampled_from("ABCXYZ-=+0123"), min_size=1, max_size=12),
    ),
    max_size=6,
)


@st.composite
def mailbox_views(draw: st.DrawFn) -> MailboxView:
    uids = draw(small_uid_sets())
    uidnext = draw(st.integers((uids[-1] + 1) if uids else 1, MAX_UID + 1))
    known = compact_uids(array("I", uids), uidnext=uidnext, max_bytes=draw(st.sampled_from([8, 64, 4096])))
    search = draw(
        st.one_of(
            st.none(),
            st.lists(st.sampled_from(uids or [1]), unique=True).map(
                lambda u: UidRanges.from_set(UidSet.from_uids(u))
            ),
        )
    )
    return MailboxView(
        name=draw(st.text(max_size=40)),
        mailbox_id=draw(st.binary(max_size=24)),
        uidvalidity=draw(st.integers(1, MAX_UID)),
        read_only=draw(st.booleans()),
        uidnext=uidnext,
        message_count=len(uids),
        highest_modseq=draw(st.integers(0, 2**63 - 1)),
        known_uids=known,
        search_result=search,
        keywords_digest=draw(st.integers(0, MAX_UID)),
        recent=draw(st.none() | st.lists(st.sampled_from(uids or [1]), unique=True).map(
            lambda u: UidRanges.from_set(UidSet.from_uids(u)))),
        live_searches=tuple(draw(st.lists(st.builds(
            LiveSearch, st.sampled_from(["B01 UID SEARCH RETURN (UPDATE) FLAGGED",
                                         "S1 UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 UNSEEN"]),
            st.lists(st.sampled_from(uids or [1]), unique=True).map(lambda u: UidRanges.from_set(UidSet.from_uids(u)))),
            max_size=2))),
    )


@st.composite
def session_states(draw: st.DrawFn) -> SessionState:
    return SessionState.create(
        draw(st.text(min_size=1, max_size=40)),
        draw(st.integers(0, 2**63 - 1)),
        enabled=draw(extension_names),
        mailbox=draw(st.one_of(st.none(), mailbox_views())),
        lineage=draw(st.sampled_from([b"", b"\x00" * 16]) | st.binary(min_size=16, max_size=16)),
        bound_address=draw(st.sampled_from([b"", b"\x7f\x00\x00\x01"]) | st.binary(max_size=16)),
    )
