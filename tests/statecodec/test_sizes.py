"""Token size targets: under 300 bytes for a SELECTED session with a handful of UID gaps."""

from __future__ import annotations

import pytest

from statecodec import KeyRing, UidRanges, encode, pack

from .helpers import MAILBOX, USER, mailbox_session


@pytest.mark.parametrize("bound", [b"", bytes(16)], ids=["unbound", "bound-to-ipv6"])
@pytest.mark.parametrize("messages", [1_000, 10_000, 100_000])
def test_token_size(messages: int, bound: bytes) -> None:
    state = mailbox_session(messages, gaps=5, bound_address=bound)
    assert len(USER) == 20 and len(MAILBOX) == 20
    assert state.mailbox is not None and isinstance(state.mailbox.known_uids, UidRanges)
    token = encode(state, KeyRing.generate())
    print(
        f"\n{messages:>7} messages, 5 gaps: token {len(token)} bytes "
        f"(msgpack {len(pack(state))}, uid ranges {len(state.mailbox.known_uids.data)})"
    )
    assert len(token) < 300


def test_irregular_mailbox_stays_small() -> None:
    state = mailbox_session(100_000, gaps=20_000)
    token = encode(state, KeyRing.generate())
    print(f"\n 100000 messages, 20000 gaps (fingerprint): token {len(token)} bytes")
    assert len(token) < 300
