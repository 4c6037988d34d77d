from __future__ import annotations

import msgspec
import pytest
from hypothesis import given

from statecodec import (
    LiveSearch,
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
    state = SessionState.create("u", 7, enabled=["qresync", "CONDSTORE", "x-foo"], lineage=b"L" * 16,
                                bound_address=b"\x7f\x00\x00\x01")
    assert msgspec.msgpack.decode(pack(state)) == [4, "u", 7, 0b11, ["X-FOO"], None, b"L" * 16, b"\x7f\0\0\1",
                                                   ""]
    assert state.enabled == {"CONDSTORE", "QRESYNC", "X-FOO"}


def test_unknown_version_is_unsupported() -> None:
    data = msgspec.msgpack.encode([5, "u", 7, 0, [], None, b"", b"", "", "a future field"])
    with pytest.raises(UnsupportedVersion) as info:
        unpack(data)
    assert info.value.version == 5


@pytest.mark.parametrize("version", [1, 2, 3])
def test_same_version_with_extra_fields_is_rejected(version: int) -> None:
    # a decoder ignores nothing: extra elements need a new version tag
    fields: list[object] = [version, "u", 7, 0, [], None]
    if version >= 2:
        fields += [b"", b""]
    with pytest.raises(TokenInvalid):
        unpack(msgspec.msgpack.encode([*fields, "extra"]))
    with pytest.raises(TokenInvalid):
        unpack(msgspec.msgpack.encode([*fields, b"extra", b""]))


def test_v1_with_trailing_defaults_omitted_reads() -> None:
    assert unpack(msgspec.msgpack.encode([1, "u", 7])) == SessionState("u", 7)


def test_v1_state_upgrades_without_lineage() -> None:
    """A token issued before lineages (version 1) still reads, as a state with no lineage or binding."""
    v1 = msgspec.msgpack.encode([1, "u", 7, 0b1, [], ["INBOX", b"id", 9, False, 5, 4, 11, [0, b"\x01\x03"]]])
    state = unpack(v1)
    assert type(state) is SessionState and state.lineage == b"" and state.bound_address == b""
    assert state.mailbox is not None and state.mailbox.known_uids == UidRanges(b"\x01\x03")
    assert state.enabled == {"CONDSTORE"}


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


_V2_MAILBOX = ["INBOX", b"id", 9, False, 5, 4, 11, [0, b"\x01\x03"], None, 0, None]


def test_v2_state_upgrades_without_live_searches() -> None:
    state = unpack(msgspec.msgpack.encode([2, "u", 7, 0, [], _V2_MAILBOX, b"L" * 16, b""]))
    assert type(state) is SessionState and state.lineage == b"L" * 16
    assert state.mailbox is not None and state.mailbox.live_searches == ()


def test_v2_state_with_live_searches_is_invalid() -> None:
    live = [["B01 UID SEARCH RETURN (UPDATE) FLAGGED", [0, b"\x01\x03"]]]
    with pytest.raises(TokenInvalid):
        unpack(msgspec.msgpack.encode([2, "u", 7, 0, [], [*_V2_MAILBOX, live], b"", b""]))
    state = unpack(msgspec.msgpack.encode([3, "u", 7, 0, [], [*_V2_MAILBOX, live], b"", b""]))
    assert state.mailbox is not None
    assert state.mailbox.live_searches == (LiveSearch(live[0][0], UidRanges(b"\x01\x03")),)  # type: ignore[arg-type]
