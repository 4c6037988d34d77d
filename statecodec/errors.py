"""Errors raised while decoding a state token.

Each error carries the IMAP response code the X-STATE server answers with, so the server can turn
any :class:`TokenError` into ``tag NO [<code>]`` in one place.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["TokenError", "TokenExpired", "TokenInvalid", "UnsupportedVersion"]


class TokenError(Exception):
    """Base class: the token cannot be used. The session must stay unchanged."""

    response_code: ClassVar[str] = "X-STATE-INVALID"


class TokenInvalid(TokenError):
    """Not a token of this server: malformed, truncated, bad signature, wrong purpose or key,
    undecodable payload, or issued further in the future than the clock-skew tolerance."""

    response_code: ClassVar[str] = "X-STATE-INVALID"


class TokenExpired(TokenError):
    """Well signed, but issued longer ago than the allowed maximum age."""

    response_code: ClassVar[str] = "X-STATE-EXPIRED"

    def __init__(self, message: str, *, age: float, max_age: float) -> None:
        super().__init__(message)
        self.age = age
        self.max_age = max_age


class UnsupportedVersion(TokenError):
    """Well formed (and, for a token, well signed) but written in a state version or envelope
    format this code does not know, e.g. by a newer server during a rolling upgrade."""

    response_code: ClassVar[str] = "X-STATE-INVALID"

    def __init__(self, message: str, *, version: int) -> None:
        super().__init__(message)
        self.version = version
