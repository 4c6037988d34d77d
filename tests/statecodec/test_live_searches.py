"""Live searches (RFC 5267 contexts, state version 3) in a token: they round-trip, and with the largest
``$`` and the most live searches a server keeps, the token still fits RESTORE's line."""

from __future__ import annotations

import random

from statecodec import (
    MAX_LIVE_SEARCH_BYTES,
    MAX_SEARCH_RESULT_BYTES,
    KeyRing,
    LiveSearch,
    MailboxView,
    SessionState,
    UidRanges,
    UidSet,
    decode,
    encode,
)
from statecodec.signing import MAX_TOKEN_LENGTH

KEYS = KeyRing.generate()


def _scattered(count: int, seed: int) -> UidRanges:
    rng = random.Random(seed)
    return UidRanges.from_set(UidSet.from_uids(sorted(rng.sample(range(1, 4_000_000), count))))


def _fill(budget: int, seed: int) -> tuple[LiveSearch, ...]:
    """Live searches with scattered results, as many as ``budget`` bytes hold (what a server keeps)."""
    out: list[LiveSearch] = []
    n = 0
    while True:
        item = LiveSearch(f"C{n} UID SORT RETURN (UPDATE) (REVERSE DATE) UTF-8 UNSEEN UNKEYWORD $Junk",
                          _scattered(40, seed + n))
        cost = len(item.command) + len(item.result.data)
        if cost > budget:
            return tuple(out)
        out.append(item)
        budget -= cost
        n += 1


def test_largest_token_with_live_searches_fits_restore() -> None:
    search = _scattered(100, 1)
    while len(search.data) > MAX_SEARCH_RESULT_BYTES:
        search = UidRanges.from_set(UidSet.from_uids(list(search.to_set())[:-1]))
    live = _fill(MAX_LIVE_SEARCH_BYTES, 7)
    assert len(live) >= 4
    view = MailboxView("x" * 40, b"\x01" * 16, 1, False, 4_000_000, 3, 10, UidRanges.from_set(
        UidSet.from_uids([1, 5, 9])), search_result=search, live_searches=live)
    state = SessionState.create("u" * 40, 1, enabled=["QRESYNC"], mailbox=view, lineage=b"L" * 16)
    token = encode(state, KEYS)
    assert decode(token, KEYS, max_age=60) == state
    # RESTORE's line before login is 20 KiB (limits.preauth_max_line); the token is far below both limits.
    assert len(token) < 4096 < MAX_TOKEN_LENGTH
