"""System flags as a bitmask, keywords as bits of a per-mailbox keyword table, and Maildir info letters.

Maildir info (``<base>:2,<letters>``): ``D`` Draft, ``F`` Flagged, ``P`` Passed, ``R`` Replied (\\Answered),
``S`` Seen, ``T`` Trashed (\\Deleted); keyword number ``n`` (< 26) of the mailbox's ``dovecot-keywords``
file is the lower-case letter ``chr(ord('a') + n)``, exactly as Dovecot writes them. ``P`` has no IMAP flag;
it is kept (bit ``PASSED``) so renames do not drop it, and never reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from imapd.store.errors import InvalidFlag

__all__ = [
    "ANSWERED",
    "DELETED",
    "DRAFT",
    "FLAGGED",
    "PASSED",
    "SEEN",
    "SYSTEM_FLAG_BITS",
    "info_letters",
    "parse_info",
    "split_flags",
    "system_flag_names",
]

SEEN = 1
ANSWERED = 2
FLAGGED = 4
DELETED = 8
DRAFT = 16
PASSED = 32  # Maildir 'P'; not an IMAP flag
VISIBLE_MASK = SEEN | ANSWERED | FLAGGED | DELETED | DRAFT

SYSTEM_FLAG_BITS: dict[str, int] = {
    "\\Answered": ANSWERED,
    "\\Flagged": FLAGGED,
    "\\Deleted": DELETED,
    "\\Seen": SEEN,
    "\\Draft": DRAFT,
}
_BY_LOWER = {k.lower(): v for k, v in SYSTEM_FLAG_BITS.items()}
_ORDER = [(ANSWERED, "\\Answered"), (FLAGGED, "\\Flagged"), (DELETED, "\\Deleted"), (SEEN, "\\Seen"),
          (DRAFT, "\\Draft")]
_LETTERS = [("D", DRAFT), ("F", FLAGGED), ("P", PASSED), ("R", ANSWERED), ("S", SEEN), ("T", DELETED)]
_LETTER_BITS = dict(_LETTERS)
_KEYWORD = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|~]+")  # IMAP atom without ] and wildcards
MAX_KEYWORDS = 63  # keyword bitmask fits a signed 64-bit SQLite INTEGER
DISK_KEYWORDS = 26  # a-z


def split_flags(flags: Iterable[str]) -> tuple[int, list[str]]:
    """Split flag names into a system bitmask and a list of keywords (validated, order kept, deduplicated)."""
    bits = 0
    keywords: list[str] = []
    if isinstance(flags, str):
        raise InvalidFlag("flags must be an iterable of names, not a string")
    for flag in flags:
        if not isinstance(flag, str) or not flag:
            raise InvalidFlag(f"invalid flag {flag!r}")
        if flag.startswith("\\"):
            bit = _BY_LOWER.get(flag.lower())
            if bit is None:
                raise InvalidFlag(f"cannot store flag {flag}")
            bits |= bit
        else:
            if not _KEYWORD.fullmatch(flag) or len(flag) > 200:
                raise InvalidFlag(f"invalid keyword {flag!r}")
            if flag not in keywords:
                keywords.append(flag)
    return bits, keywords


def system_flag_names(bits: int) -> list[str]:
    return [name for bit, name in _ORDER if bits & bit]


def parse_info(fname: str) -> tuple[str, int, int]:
    """Split a Maildir file name into (base, system bits, keyword-letter bitmask)."""
    base, sep, info = fname.partition(":")
    bits = 0
    kw = 0
    if sep and info.startswith("2,"):
        for ch in info[2:]:
            if "a" <= ch <= "z":
                kw |= 1 << (ord(ch) - 97)
            else:
                bits |= _LETTER_BITS.get(ch, 0)
    return base, bits, kw


def info_letters(bits: int, kw: int) -> str:
    """The ``:2,`` suffix for system bits and keyword bits (only keywords 0..25 have letters)."""
    out = [letter for letter, bit in _LETTERS if bits & bit]
    kw &= (1 << DISK_KEYWORDS) - 1
    n = 0
    while kw:
        if kw & 1:
            out.append(chr(97 + n))
        kw >>= 1
        n += 1
    return ":2," + "".join(out)
