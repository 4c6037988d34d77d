from __future__ import annotations

import msgspec
import pytest
from hypothesis import given

from statecodec import (
    MailboxView,
    SessionState,
    TokenInvalid,
    UidRanges,
    UidSet,
    UnsupportedVersion,
    pack,
    unpack,
)

from .strategies import session_states


@given(session_states())
def test_pack_round_trip(state: SessionState) -> None:
    assert unpack(pack(state)) == state


def test_wire_form_is_tagged_array() -> None:
    state = SessionState.create("u", 7, enabled=["qresync", "CONDSTORE", "x-foo"])
    assert msgspec.msgpack.decode(pack(state)) == [1, "u", 7, 0b11, ["X-FOO"], None]
    assert state.enabled == {"CONDSTORE", "QRESYNC", "X-FOO"}


def test_unknown_version_is_unsupported() -> None:
    data = msgspec.msgpack.encode([2, "u", 7, 0, [], None, "a future field"])
    with pytest.raises(UnsupportedVersion) as info:
        unpack(data)
    assert info.value.version == 2


def test_same_version_with_extra_fields_is_rejected() -> None:
    # a v1 decoder ignores nothing: extra elements need a new version tag
    data = msgspec.msgpack.encode([1, "u", 7, 0, [], None, "extra"])
    with pytest.raises(TokenInvalid):
        unpack(data)


def test_v1_with_trailing_defaults_omitted_reads() -> None:
    assert unpack(msgspec.msgpack.encode([1, "u", 7])) == SessionState("u", 7)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x90",
        b"\xc0",
        msgspec.msgpack.encode(["1", "u"]),
        msgspec.msgpack.encode([1, "u", -1]),
        msgspec.msgpack.encode([1, "u", 1, 0, [], ["m", b"", 2**32, False, 1, 0, 0, [0, b""]]]),
        msgspec.msgpack.encode([1, "u", 1, 0, [], ["m", b"", 1, False, 1, 0, 0, [9, b""]]]),
        msgspec.msgpack.encode([1, "u", 1, 0, [], ["m", b"", 1, False, 1, 0, 0, [0, b"\x80"]]]),
    ],
)
def test_garbage_is_invalid(data: bytes) -> None:
    with pytest.raises(TokenInvalid):
        unpack(data)


def test_pack_validates_ranges() -> None:
    mailbox = MailboxView("INBOX", b"id", 2**32, False, 1, 0, 0, UidRanges.from_set(UidSet()))
    with pytest.raises(ValueError):
        pack(SessionState("u", 1, mailbox=mailbox))
