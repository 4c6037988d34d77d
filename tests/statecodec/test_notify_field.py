"""State version 4 carries the session's NOTIFY registration as text; version 3 arrays still decode."""

from __future__ import annotations

import msgspec
import pytest

from statecodec import SessionState, TokenInvalid, pack, unpack


def test_notify_round_trips() -> None:
    text = "NOTIFY SET STATUS (SELECTED (MessageNew (UID) MessageExpunge)) (PERSONAL (MessageNew MessageExpunge))"
    state = SessionState.create("alice", 3, enabled=["CONDSTORE"], notify=text)
    assert unpack(pack(state)).notify == text


def test_version_3_decodes_without_notify() -> None:
    old = msgspec.msgpack.encode([3, "alice", 3, 0, [], None, b"l" * 8, b""])
    state = unpack(old)
    assert type(state) is SessionState and state.notify == "" and state.lineage == b"l" * 8


def test_version_3_with_a_version_4_field_is_refused() -> None:
    bad = msgspec.msgpack.encode([3, "alice", 3, 0, [], None, b"", b"", "NOTIFY NONE"])
    with pytest.raises(TokenInvalid):
        unpack(bad)
