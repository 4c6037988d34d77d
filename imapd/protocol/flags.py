"""Message flags: system flags keep their canonical spelling, keywords are validated atoms."""

from __future__ import annotations

import re

__all__ = ["SYSTEM_FLAGS", "STORABLE_SYSTEM_FLAGS", "FlagError", "normalize_flag", "is_keyword"]

STORABLE_SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
SYSTEM_FLAGS = (*STORABLE_SYSTEM_FLAGS, "\\Recent")
_CANONICAL = {f.upper(): f for f in SYSTEM_FLAGS}
# ATOM-CHAR: CHAR except atom-specials ( ) { SP CTL % * " \ ]
_KEYWORD = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")


class FlagError(ValueError):
    """A flag a client may not send where it sent it."""


def is_keyword(text: str) -> bool:
    """True when ``text`` is a syntactically valid keyword (an atom, no backslash)."""
    return _KEYWORD.fullmatch(text) is not None


def normalize_flag(text: str, *, storable: bool = True) -> str:
    """Canonical spelling of a flag; reject ``\\Recent`` when storing and unknown backslash flags."""
    if text.startswith("\\"):
        canon = _CANONICAL.get(text.upper())
        if canon is None:
            raise FlagError(f"unknown system flag {text}")
        if storable and canon == "\\Recent":
            raise FlagError("\\Recent cannot be stored")
        return canon
    if not is_keyword(text):
        raise FlagError(f"invalid keyword {text!r}")
    return text
