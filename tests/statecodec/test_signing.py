from __future__ import annotations

import hashlib
import re
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode

from statecodec import (
    CURRENT_VERSION,
    KeyRing,
    SessionState,
    TokenError,
    TokenExpired,
    TokenInvalid,
    UnsupportedVersion,
    decode,
    encode,
    pack,
)
from statecodec.signing import FLAG_DEFLATE, FLAG_RAW

from .helpers import mailbox_session
from .strategies import session_states

T0 = 1_750_000_000.0
KEYS = KeyRing([b"k" * 32])
ATOM = re.compile(r"[A-Za-z0-9._-]+")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
SUBSTITUTES = ALPHABET + ".=+/ \x00\x7fé"


def _decode(token: str, **kw: float) -> SessionState:
    kw.setdefault("now", T0)
    kw.setdefault("max_age", 3600)
    return decode(token, KEYS, **kw)  # type: ignore[arg-type]


@given(session_states())
def test_round_trip(state: SessionState) -> None:
    token = encode(state, KEYS, now=T0)
    assert ATOM.fullmatch(token)
    assert _decode(token) == state


@pytest.mark.parametrize("state", [SessionState("u", 0), mailbox_session(1000)])
def test_every_single_char_change_is_rejected(state: SessionState) -> None:
    """Exhaustive: every position, every other URL-safe char plus a few hostile ones."""
    token = encode(state, KEYS, now=T0)
    assert _decode(token) == state
    tried = 0
    for i, original in enumerate(token):
        for sub in SUBSTITUTES:
            if sub == original:
                continue
            tampered = token[:i] + sub + token[i + 1 :]
            with pytest.raises(TokenInvalid):
                _decode(tampered)
            tried += 1
    assert tried > 64 * len(token)


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(session_states(), st.data())
def test_random_single_byte_changes_rejected(state: SessionState, data: st.DataObject) -> None:
    token = encode(state, KEYS, now=T0)
    raw = bytearray(token.encode("ascii"))
    i = data.draw(st.integers(0, len(raw) - 1))
    b = data.draw(st.integers(0, 255).filter(lambda x: x != raw[i]))
    raw[i] = b
    with pytest.raises(TokenInvalid):
        _decode(raw.decode("latin-1"))


@pytest.mark.parametrize("state", [SessionState("u", 0), mailbox_session(10_000)])
def test_every_truncation_and_extension_is_rejected(state: SessionState) -> None:
    token = encode(state, KEYS, now=T0)
    for n in range(len(token)):
        with pytest.raises(TokenInvalid):
            _decode(token[:n])
        with pytest.raises(TokenInvalid):
            _decode(token[n:] if n else token[1:])
    for extra in ("A", ".", "AAAA", "=", "\n"):
        with pytest.raises(TokenInvalid):
            _decode(token + extra)


def test_signature_spare_bits_are_not_malleable() -> None:
    token = encode(SessionState("u", 0), KEYS, now=T0)
    head, sig = token[:-1], token[-1]
    # these decode to the same 32 bytes in a lenient base64 decoder
    same = [c for c in ALPHABET if base64_decode(token[-43:-1] + c) == base64_decode(token[-43:])]
    assert len(same) == 4 and sig in same
    for c in same:
        if c != sig:
            with pytest.raises(TokenInvalid):
                _decode(head + c)


def test_other_key_and_purpose_rejected() -> None:
    state = mailbox_session(100)
    token = encode(state, KEYS, now=T0)
    with pytest.raises(TokenInvalid):
        decode(token, KeyRing.generate(), max_age=60, now=T0)
    with pytest.raises(TokenInvalid):
        _decode(encode(state, KEYS, purpose="handoff", now=T0))
    assert (
        decode(encode(state, KEYS, purpose="handoff", now=T0), KEYS, max_age=1, purpose="handoff", now=T0)
        == state
    )


def test_key_rotation() -> None:
    old = KeyRing.generate()
    token = encode(SessionState("u", 1), old, now=T0)
    rotated = old.rotate()
    assert decode(token, rotated, max_age=60, now=T0) == SessionState("u", 1)  # old key verifies
    new_token = encode(SessionState("u", 1), rotated, now=T0)
    with pytest.raises(TokenInvalid):
        decode(new_token, old, max_age=60, now=T0)  # signed by the new key
    retired = rotated.retire(1)
    assert retired.keys == (rotated.signing_key,)
    with pytest.raises(TokenExpired):  # revoked, not forged: the client is told to log in again
        decode(token, retired, max_age=60, now=T0)
    assert decode(new_token, retired, max_age=60, now=T0) == SessionState("u", 1)
    with pytest.raises(TokenInvalid):  # a retired key never makes a tampered token acceptable
        decode(token[:-2] + ("AA" if not token.endswith("AA") else "BA"), retired, max_age=60, now=T0)
    with pytest.raises(TokenInvalid):
        decode(token, KeyRing(retired.keys), max_age=60, now=T0)  # retired key forgotten: unknown


def test_max_age_boundary() -> None:
    token = encode(SessionState("u", 1), KEYS, now=T0)
    assert _decode(token, now=T0 + 600, max_age=600) == SessionState("u", 1)
    with pytest.raises(TokenExpired) as info:
        _decode(token, now=T0 + 600.001, max_age=600)
    assert info.value.response_code == "X-STATE-EXPIRED"
    with pytest.raises(TokenExpired):
        _decode(token, now=T0 + 10**7, max_age=600)
    assert _decode(token, now=T0, max_age=0) == SessionState("u", 1)


def test_clock_skew_boundary() -> None:
    token = encode(SessionState("u", 1), KEYS, now=T0)
    assert _decode(token, now=T0 - 30) == SessionState("u", 1)  # default skew 30s
    with pytest.raises(TokenInvalid):
        _decode(token, now=T0 - 30.001)
    assert _decode(token, now=T0 - 120, clock_skew=120) == SessionState("u", 1)
    with pytest.raises(TokenInvalid):
        _decode(token, now=T0 - 1, clock_skew=0)
    with pytest.raises(ValueError):
        _decode(token, clock_skew=-1)


def test_issue_time_is_whole_seconds() -> None:
    token = encode(SessionState("u", 1), KEYS, now=T0 + 0.9)
    assert _decode(token, now=T0 + 5, max_age=5) == SessionState("u", 1)
    with pytest.raises(TokenExpired):
        _decode(token, now=T0 + 5.5, max_age=5)


def _sign_payload(framed: bytes, purpose: str = "x-state") -> str:
    signer = TimestampSigner(
        list(reversed(KEYS.keys)),
        salt=b"statecodec." + purpose.encode(),
        sep=".",
        key_derivation="hmac",
        digest_method=hashlib.sha256,
    )
    signer.get_timestamp = lambda: int(T0)  # type: ignore[method-assign]
    return signer.sign(base64_encode(framed)).decode()


def test_matches_reference_signer() -> None:
    state = mailbox_session(1000)
    token = encode(state, KEYS, now=T0)
    assert token == _sign_payload(base64_decode(token.split(".")[0]))


def test_unsupported_version_and_flag() -> None:
    import msgspec

    future = msgspec.msgpack.encode([CURRENT_VERSION + 1, "u", 1, 0, [], None, b"", b"", "", "new"])
    with pytest.raises(UnsupportedVersion) as info:
        _decode(_sign_payload(bytes([FLAG_RAW]) + future))
    assert info.value.version == CURRENT_VERSION + 1 and isinstance(info.value, TokenError)
    with pytest.raises(UnsupportedVersion):
        _decode(_sign_payload(bytes([0x7F]) + pack(SessionState("u", 1))))


@pytest.mark.parametrize(
    "framed",
    [
        b"",
        bytes([FLAG_RAW]),
        bytes([FLAG_RAW]) + b"\xc1",
        bytes([FLAG_DEFLATE]) + b"\xff\xff",
        bytes([FLAG_DEFLATE]) + zlib.compress(pack(SessionState("u", 1)))[2:-4][:-1],  # truncated stream
        bytes([FLAG_DEFLATE]) + zlib.compress(pack(SessionState("u", 1)))[2:-4] + b"junk",
    ],
)
def test_well_signed_garbage_is_invalid(framed: bytes) -> None:
    with pytest.raises(TokenInvalid):
        _decode(_sign_payload(framed))


def test_deflate_bomb_rejected() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    framed = bytes([FLAG_DEFLATE]) + bomb.compress(b"\x00" * (4 << 20)) + bomb.flush()
    with pytest.raises(TokenInvalid):
        _decode(_sign_payload(framed))


def _flag(token: str) -> int:
    return base64_decode(token.split(".")[0])[0]


@given(session_states())
def test_compression_only_when_shorter(state: SessionState) -> None:
    token = encode(state, KEYS, now=T0)
    raw = pack(state)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = c.compress(raw) + c.flush()
    framed = base64_decode(token.split(".")[0])
    if len(deflated) < len(raw):
        assert framed == bytes([FLAG_DEFLATE]) + deflated
    else:
        assert framed == bytes([FLAG_RAW]) + raw


def test_compression_used_for_repetitive_state() -> None:
    assert _flag(encode(SessionState("x" * 200, 1), KEYS)) == FLAG_DEFLATE
    assert _flag(encode(SessionState("u", 1), KEYS)) == FLAG_RAW


def test_not_a_string_or_too_long() -> None:
    with pytest.raises(TokenInvalid):
        _decode(b"abc.def.ghi")  # type: ignore[arg-type]
    with pytest.raises(TokenInvalid):
        _decode("A" * 20_000 + ".AAAA." + "A" * 43)
    with pytest.raises(ValueError):
        encode(SessionState("u", 1), KEYS, purpose="bad purpose")


def test_verified_token_cache_keeps_every_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token decoded once is not verified again (the server decodes each token twice per request), but
    its age is, and another key ring or purpose verifies it afresh."""
    from statecodec import signing

    token = encode(SessionState("cached", 1), KEYS, now=T0)
    assert _decode(token) == SessionState("cached", 1)
    calls = []
    real = signing._Signer.unsign
    monkeypatch.setattr(signing._Signer, "unsign", lambda self, *a, **kw: calls.append(1) or real(self, *a, **kw))
    assert _decode(token, now=T0 + 5) == SessionState("cached", 1)
    assert calls == []  # a hit
    with pytest.raises(TokenExpired):
        _decode(token, now=T0 + 3601)
    with pytest.raises(TokenInvalid):
        _decode(token, now=T0 - 31)
    with pytest.raises(TokenInvalid):
        decode(token, KeyRing.generate(), max_age=60, now=T0)
    with pytest.raises(TokenInvalid):
        decode(token, KEYS, max_age=60, purpose="handoff", now=T0)
    assert len(calls) == 2


def test_verified_token_cache_is_bounded() -> None:
    from statecodec import signing

    for i in range(signing._VERIFIED_MAX + 20):
        assert _decode(encode(SessionState(f"u{i}", 1), KEYS, now=T0)).user == f"u{i}"
    assert len(signing._VERIFIED) <= signing._VERIFIED_MAX
