"""Parses SEARCH criteria (RFC 3501 6.4.4, RFC 7162 MODSEQ, RFC 5182 ``$``, RFC 5032 OLDER/YOUNGER, RFC 8474
EMAILID/THREADID, RFC 8514 SAVED*) into the typed tree."""

from __future__ import annotations

import re
from collections.abc import Callable

from .flags import FlagError, normalize_flag
from .reader import ParseError, TokenReader
from .search_keys import (
    DATE_KEYS,
    TEXT_KEYS,
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchObjectId,
    SearchOr,
    SearchSaveDateSupported,
    SearchSequence,
    SearchSize,
    SearchText,
    SearchWithin,
)

__all__ = ["parse_search_criteria", "TEXT_CHARSETS"]

TEXT_CHARSETS = frozenset({"US-ASCII", "UTF-8"})

_FLAG_KEYS: dict[str, SearchKey] = {
    "ANSWERED": SearchFlag("\\Answered"),
    "DELETED": SearchFlag("\\Deleted"),
    "DRAFT": SearchFlag("\\Draft"),
    "FLAGGED": SearchFlag("\\Flagged"),
    "SEEN": SearchFlag("\\Seen"),
    "RECENT": SearchFlag("\\Recent"),
    "UNANSWERED": SearchFlag("\\Answered", False),
    "UNDELETED": SearchFlag("\\Deleted", False),
    "UNDRAFT": SearchFlag("\\Draft", False),
    "UNFLAGGED": SearchFlag("\\Flagged", False),
    "UNSEEN": SearchFlag("\\Seen", False),
    "OLD": SearchFlag("\\Recent", False),
    "NEW": SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False))),
    "ALL": SearchAll(),
    "SAVEDATESUPPORTED": SearchSaveDateSupported(),
}
_ENTRY_TYPES = frozenset({"PRIV", "SHARED", "ALL"})
_OBJECTID = re.compile(rb"[A-Za-z0-9_-]{1,255}(?![^ )\r\n])")  # RFC 8474 objectid


def parse_search_criteria(r: TokenReader, charset: str | None) -> SearchKey:
    """``1*(SP search-key)`` up to the end of the command; one key stays bare, several become And."""
    decode = _decoder(r, charset)
    keys: list[SearchKey] = []
    while not r.at_end():
        r.sp()
        keys.append(_search_key(r, decode))
    if not keys:
        raise ParseError("Missing search criteria")
    return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))


def _decoder(r: TokenReader, charset: str | None) -> Callable[[bytes], str | bytes]:
    if charset is None or charset.upper() in TEXT_CHARSETS:
        return r.text
    return lambda raw: raw


def _search_key(r: TokenReader, decode: Callable[[bytes], str | bytes]) -> SearchKey:
    c = r.peek()
    if c == 0x28:  # "("
        r.open()
        keys = [_search_key(r, decode)]
        while not r.take(b")"):
            r.sp()
            keys.append(_search_key(r, decode))
        r.depth -= 1
        return SearchAnd(tuple(keys))
    if 0x30 <= c <= 0x39 or c in (0x2A, 0x24):
        return SearchSequence(r.sequence_set())
    name = r.keyword()
    fixed = _FLAG_KEYS.get(name)
    if fixed is not None:
        return fixed
    r.sp()
    if name in TEXT_KEYS:
        return SearchText(name, decode(r.astring()))
    if name in DATE_KEYS:
        return SearchDate(name, r.date())
    if name in ("KEYWORD", "UNKEYWORD"):
        flag = r.atom()
        try:
            flag = normalize_flag(flag, storable=False)
        except FlagError as exc:
            raise ParseError(str(exc)) from None
        return SearchFlag(flag, name == "KEYWORD")
    if name == "HEADER":
        field = _header_name(r)
        r.sp()
        return SearchHeader(field, decode(r.astring()))
    if name in ("LARGER", "SMALLER"):
        return SearchSize(name == "LARGER", r.number(bits=64))
    if name in ("EMAILID", "THREADID"):
        return SearchObjectId(name, r._match(_OBJECTID, "an object id").decode("ascii"))
    if name in ("OLDER", "YOUNGER"):
        return SearchWithin(name == "OLDER", r.number(nonzero=True))
    if name == "NOT":
        r.depth += 1
        if r.depth > r.max_nesting:
            raise ParseError("Too deeply nested", "LIMIT")
        key = _search_key(r, decode)
        r.depth -= 1
        return SearchNot(key)
    if name == "OR":
        r.depth += 1
        if r.depth > r.max_nesting:
            raise ParseError("Too deeply nested", "LIMIT")
        left = _search_key(r, decode)
        r.sp()
        right = _search_key(r, decode)
        r.depth -= 1
        return SearchOr(left, right)
    if name == "UID":
        return SearchSequence(r.sequence_set(), uid=True)
    if name == "MODSEQ":
        entry: tuple[str, str] | None = None
        if r.peek() in (0x22, 0x7B):
            entry_name = r.text(r.string())
            r.sp()
            entry_type = r.keyword()
            if entry_type not in _ENTRY_TYPES:
                raise ParseError("Invalid MODSEQ entry type")
            entry = (entry_name, entry_type.lower())
            r.sp()
        return SearchModSeq(r.number(bits=64), entry)
    raise ParseError(f"Unknown search key {name}")


def _header_name(r: TokenReader) -> str:
    raw = r.astring()
    if not raw or any(b < 33 or b > 126 or b == 58 for b in raw):
        raise ParseError("Invalid header field name")
    return raw.decode("ascii")


header_name = _header_name
