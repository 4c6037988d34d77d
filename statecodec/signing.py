"""Signed, URL-safe state tokens (X-STATE): itsdangerous HMAC-SHA256 over a framed msgpack payload.

Token (ASCII, every character in ``A-Za-z0-9-_.``, so it is an IMAP atom)::

    <payload> "." <timestamp> "." <signature>

* ``payload``: base64url (no padding) of ``flag || body``. ``flag`` 0x00: ``body`` is the msgpack of
  the :class:`~statecodec.state.SessionState`; 0x01: ``body`` is that msgpack raw-deflated (zlib,
  wbits=-15), used only when strictly shorter. Other flags are reserved (UnsupportedVersion).
* ``timestamp``: itsdangerous' issue time, base64url of the big-endian integer seconds since epoch.
* ``signature``: base64url of HMAC-SHA256 (full 32 bytes, 43 chars) over ``payload "." timestamp``,
  keyed by HMAC(key, salt) with salt ``b"statecodec." + purpose``.

The signature covers every other character; the only freedom left in base64 (the 2 spare bits
of the signature's last character) is closed by requiring its canonical form.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import time
import zlib
from typing import Final

from itsdangerous import BadData, TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode

from .errors import TokenExpired, TokenInvalid, UnsupportedVersion
from .keyring import KeyRing
from .state import SessionState, pack, unpack

__all__ = [
    "DEFAULT_PURPOSE",
    "FLAG_DEFLATE",
    "FLAG_RAW",
    "MAX_TOKEN_LENGTH",
    "KeyRing",
    "decode",
    "encode",
]

DEFAULT_PURPOSE: Final = "x-state"
FLAG_RAW: Final = 0x00
FLAG_DEFLATE: Final = 0x01
MAX_TOKEN_LENGTH: Final = 16 * 1024
"""Longer input is rejected before any work (an IMAP server should cap the atom anyway)."""
MAX_STATE_BYTES: Final = 1 << 20
"""Cap on the inflated payload (against deflate bombs; a real state is far smaller)."""

_SIG_CHARS: Final = 43  # base64url of 32 bytes, no padding
_B64: Final = r"[A-Za-z0-9_-]"
_TOKEN_RE: Final = re.compile(rf"{_B64}+\.{_B64}+\.{_B64}{{{_SIG_CHARS}}}")
_PURPOSE_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


class _Signer(TimestampSigner):
    """TimestampSigner with an injectable clock."""

    def __init__(self, keys: tuple[bytes, ...], purpose: str, now: float | None) -> None:
        if not _PURPOSE_RE.fullmatch(purpose):
            raise ValueError(f"bad purpose {purpose!r}")
        # itsdangerous signs with the LAST key and verifies with all; KeyRing signs with the first.
        super().__init__(
            list(reversed(keys)),
            salt=b"statecodec." + purpose.encode("ascii"),
            sep=".",
            key_derivation="hmac",
            digest_method=hashlib.sha256,
        )
        self._now = now

    def get_timestamp(self) -> int:
        return int(time.time() if self._now is None else self._now)


def _frame(raw: bytes) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed = deflater.compress(raw) + deflater.flush()
    if len(compressed) < len(raw):
        return bytes([FLAG_DEFLATE]) + compressed
    return bytes([FLAG_RAW]) + raw


def _unframe(framed: bytes) -> bytes:
    if not framed:
        raise TokenInvalid("empty payload")
    flag, body = framed[0], framed[1:]
    if flag == FLAG_RAW:
        return body
    if flag != FLAG_DEFLATE:
        raise UnsupportedVersion(f"unknown payload flag {flag:#04x}", version=flag)
    inflater = zlib.decompressobj(-15)
    try:
        raw = inflater.decompress(body, MAX_STATE_BYTES)
    except zlib.error:
        raise TokenInvalid("bad deflate data") from None
    if not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise TokenInvalid("bad deflate stream")
    return raw


def encode(
    state: SessionState, keys: KeyRing, *, purpose: str = DEFAULT_PURPOSE, now: float | None = None
) -> str:
    """Sign ``state`` with ``keys.signing_key`` into an IMAP-atom token.

    ``now`` overrides the issue time (seconds since the epoch; for tests and replay tools). Raises
    ``ValueError`` for a state out of range or one whose token would exceed :data:`MAX_TOKEN_LENGTH`.
    """
    payload = base64_encode(_frame(pack(state)))
    token = _Signer(keys.keys, purpose, now).sign(payload).decode("ascii")
    if len(token) > MAX_TOKEN_LENGTH:  # never issue what decode() refuses
        raise ValueError(f"state too large for a token ({len(token)} > {MAX_TOKEN_LENGTH} characters)")
    return token


def decode(
    token: str,
    keys: KeyRing,
    *,
    max_age: float,
    purpose: str = DEFAULT_PURPOSE,
    clock_skew: float = 30,
    now: float | None = None,
) -> SessionState:
    """Verify and decode a token from :func:`encode`.

    Accepted iff the signature verifies under one of ``keys`` for ``purpose`` and
    ``-clock_skew <= now - issued <= max_age`` (issue time in whole seconds).

    Raises :class:`TokenInvalid`, :class:`TokenExpired` or :class:`UnsupportedVersion`. Revocation
    is the caller's job: compare ``state.credential_generation`` (and ``state.user``) with the
    account's current values.
    """
    if not (max_age >= 0 and clock_skew >= 0) or math.isnan(max_age) or math.isnan(clock_skew):
        raise ValueError("max_age and clock_skew must be >= 0")
    cache_key = (token, keys.keys, purpose)
    hit = _VERIFIED.get(cache_key) if type(token) is str else None
    if hit is not None:  # (it passed every check below when it was cached)
        issued, state = hit
        _check_age(issued, now, max_age, clock_skew)
        return state
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _TOKEN_RE.fullmatch(token):
        raise TokenInvalid("malformed token")
    sig = token[-_SIG_CHARS:]
    if base64_encode(base64_decode(sig)).decode("ascii") != sig:  # spare bits must be zero
        raise TokenInvalid("non-canonical signature")
    signer = _Signer(keys.keys, purpose, now)
    try:
        payload, signed_at = signer.unsign(token, return_timestamp=True)
    except BadData:
        if keys.retired and _Signer(keys.retired, purpose, now).validate(token):
            raise TokenExpired("signed with a retired key", age=math.inf, max_age=max_age) from None
        raise TokenInvalid("bad signature") from None
    issued = signed_at.timestamp()
    _check_age(issued, now, max_age, clock_skew)
    try:
        framed = base64_decode(payload)
    except BadData:
        raise TokenInvalid("bad payload encoding") from None
    state = unpack(_unframe(framed))
    if len(_VERIFIED) >= _VERIFIED_MAX:
        # the oldest entry (dicts keep insertion order); lanes and the network loop share the dict, so
        # another thread may change it between iter() and pop(): then nothing is dropped this time
        with contextlib.suppress(RuntimeError, StopIteration):
            _VERIFIED.pop(next(iter(_VERIFIED)), None)
    _VERIFIED[cache_key] = (issued, state)
    return state


_VERIFIED: dict[tuple[str, tuple[bytes, ...], str], tuple[float, SessionState]] = {}
"""Tokens that verified and decoded, by (token, verifying keys, purpose): a webmail restores the same
token on every request until the mailbox changes, and the server decodes it twice per request (to route
the connection, then in RESTORE). Verification depends on nothing else, so a hit skips the HMAC and the
msgpack decode; the age is checked on every call (it depends on the clock). SessionState is frozen."""
_VERIFIED_MAX: Final = 1024


def _check_age(issued: float, now: float | None, max_age: float, clock_skew: float) -> None:
    age = (time.time() if now is None else now) - issued
    if age < -clock_skew:
        raise TokenInvalid(f"issued {-age:.0f}s in the future (tolerance {clock_skew:g}s)")
    if age > max_age:
        raise TokenExpired(f"token is {age:.0f}s old (max {max_age:g}s)", age=age, max_age=max_age)
