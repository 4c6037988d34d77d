"""SAVE never issues a token RESTORE rejects, whatever SEARCHRES ``$`` holds: a ``$`` too large for
:data:`MAX_SEARCH_RESULT_BYTES` is left out (and the server says so), everything else round-trips."""

from __future__ import annotations

import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st

from statecodec import (
    MAX_SEARCH_RESULT_BYTES,
    KeyRing,
    MailboxView,
    SessionState,
    UidRanges,
    UidSet,
    bounded_search_result,
    decode,
    encode,
)
from statecodec.signing import MAX_TOKEN_LENGTH
from statecodec.uidset import MAX_UID

from .strategies import mailbox_views, session_states

KEYS = KeyRing.generate()

search_sets = st.one_of(
    st.lists(st.integers(1, MAX_UID), max_size=3000),  # scattered anywhere
    st.lists(st.integers(1, 60_000), max_size=3000),  # scattered in a big mailbox
    st.lists(st.tuples(st.integers(1, 2**31), st.integers(0, 5000)), max_size=400).map(  # runs
        lambda runs: [u for start, n in runs for u in range(start, start + n)][:20_000]),
)


PLAIN = SessionState.create("u", 1)
VIEW = MailboxView("INBOX", b"id", 1, False, 1, 0, 0, UidRanges(b""))


@settings(deadline=None)
@given(search_sets, session_states(), mailbox_views())
@example(list(range(1, 100_001, 2)), PLAIN, VIEW)  # the 50k scattered UIDs of issue 16.4: dropped
@example(list(range(1, 200_001)), PLAIN, VIEW)  # one long run: kept
def test_every_issued_token_decodes(uids: list[int], state: SessionState, view: MailboxView) -> None:
    whole = UidSet.from_uids(uids)
    search = bounded_search_result(whole)
    if search is None:
        assert len(whole.to_bytes()) > MAX_SEARCH_RESULT_BYTES
    else:
        assert search.to_set() == whole
    state = msgspec.structs.replace(state, mailbox=msgspec.structs.replace(view, search_result=search))
    token = encode(state, KEYS)
    assert len(token) <= MAX_TOKEN_LENGTH
    assert decode(token, KEYS, max_age=60) == state
    # user and mailbox names of up to 40 characters: a token stays well under a pre-login line limit
    assert len(token) < 1500


def test_cap_is_a_few_hundred_scattered_uids() -> None:
    assert bounded_search_result(UidSet.from_uids(range(1, 500, 2))) is not None  # 250 UIDs
    assert bounded_search_result(UidSet.from_uids(range(1, 1200, 2))) is None  # 600 UIDs
    assert bounded_search_result(None) is None
