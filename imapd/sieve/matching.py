"""Comparators, match types and variable expansion (RFC 5228 2.7, RFC 5231, RFC 5229).

Pure functions over strings: the interpreter passes the values of a test and its keys, and gets back
whether the test holds plus, for ``:matches``, what the wildcards matched (``${1}`` ...).
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["MatchError", "expand_variables", "match_any"]


class MatchError(Exception):
    """A comparator/match-type combination the RFCs forbid, or an unknown one."""


_RELATIONS = {"gt", "ge", "lt", "le", "eq", "ne"}


def _numeric_key(value: str) -> float:
    """i;ascii-numeric (RFC 4790 9.1): the leading digits; a string with none is positive infinity."""
    m = re.match(r"[0-9]+", value)
    return float(int(m.group())) if m else float("inf")


def _fold(comparator: str, value: str) -> str:
    if comparator == "i;ascii-casemap":  # only A-Z fold (RFC 4790 9.2), not the rest of Unicode
        return value.lower() if value.isascii() else value.translate(_ASCII_LOWER)
    return value


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _relate(relation: str, left: str, right: str, comparator: str) -> bool:
    a: float | str
    b: float | str
    if comparator == "i;ascii-numeric":
        a, b = _numeric_key(left), _numeric_key(right)
    else:
        a, b = _fold(comparator, left), _fold(comparator, right)
    if relation == "gt":
        return a > b  # type: ignore[operator]
    if relation == "ge":
        return a >= b  # type: ignore[operator]
    if relation == "lt":
        return a < b  # type: ignore[operator]
    if relation == "le":
        return a <= b  # type: ignore[operator]
    if relation == "eq":
        return a == b
    return a != b


class _Glob:
    """A ``:matches`` key compiled to its ``*``-separated segments, matched without backtracking.

    Each segment has a fixed length (literals and ``?``), so placing every middle segment at its earliest
    position is both correct and what RFC 5229 3.2 asks of the captures (earlier wildcards match as little
    as possible): a value of n characters costs O(n x key) at worst, where a backtracking regex of
    ``*a*a*a*b`` over a 2,000-character header took 52 s.
    """

    __slots__ = ("_last_len", "_segments")

    def __init__(self, segments: list[re.Pattern[str]], last_len: int) -> None:
        self._segments = segments
        self._last_len = last_len

    def match(self, value: str) -> list[str] | None:
        """The wildcards' values in key order, or None."""
        segs = self._segments
        if len(segs) == 1:
            m = segs[0].fullmatch(value)
            return None if m is None else list(m.groups())
        m = segs[0].match(value)
        if m is None:
            return None
        groups = list(m.groups())
        pos = m.end()
        for seg in segs[1:-1]:
            m = seg.search(value, pos)
            if m is None:
                return None
            groups.append(value[pos:m.start()])
            groups.extend(m.groups())
            pos = m.end()
        start = len(value) - self._last_len
        if start < pos:
            return None
        m = segs[-1].fullmatch(value, start)
        if m is None:
            return None
        groups.append(value[pos:start])
        groups.extend(m.groups())
        return groups


@lru_cache(maxsize=256)
def _glob(pattern: str, casemap: bool) -> _Glob:
    """``*`` and ``?`` with ``\\`` escapes; each wildcard is a match variable (RFC 5229 3.2)."""
    flags = re.DOTALL | (re.IGNORECASE | re.ASCII if casemap else 0)
    segments: list[list[str]] = [[]]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            segments[-1].append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "*":
            segments.append([])
        elif ch == "?":
            segments[-1].append("(.)")
        else:
            segments[-1].append(re.escape(ch))
        i += 1
    return _Glob([re.compile("".join(seg), flags) for seg in segments], len(segments[-1]))


def match_one(value: str, key: str, match_type: str, comparator: str,
              relation: str | None = None) -> list[str] | None:
    """None when ``value`` does not match ``key``; else the match variables (``${0}`` first)."""
    if match_type == ":is":
        if comparator == "i;ascii-numeric":
            return [] if _numeric_key(value) == _numeric_key(key) else None
        return [] if _fold(comparator, value) == _fold(comparator, key) else None
    if match_type == ":contains":
        if comparator == "i;ascii-numeric":
            raise MatchError(":contains cannot be used with i;ascii-numeric")
        return [] if _fold(comparator, key) in _fold(comparator, value) else None
    if match_type == ":matches":
        if comparator == "i;ascii-numeric":
            raise MatchError(":matches cannot be used with i;ascii-numeric")
        found = _glob(key, comparator == "i;ascii-casemap").match(value)
        if found is None:
            return None
        return [value, *found]
    if match_type == ":value":
        assert relation is not None
        return [] if _relate(relation, value, key, comparator) else None
    raise MatchError(f"unknown match type {match_type}")


def match_any(values: list[str], keys: list[str], match_type: str = ":is",
              comparator: str = "i;ascii-casemap", relation: str | None = None) -> tuple[bool, list[str] | None]:
    """Whether any value matches any key; and the match variables of the first ``:matches`` hit.

    ``:count`` compares the number of values with each key, by the comparator (RFC 5231 4.2).
    """
    if match_type in (":count", ":value") and relation not in _RELATIONS:
        raise MatchError(f"relational match needs one of {sorted(_RELATIONS)}, not {relation!r}")
    if comparator not in ("i;octet", "i;ascii-casemap", "i;ascii-numeric"):
        raise MatchError(f"unknown comparator {comparator}")
    if match_type == ":count":
        assert relation is not None
        count = str(len(values))
        return any(_relate(relation, count, key, comparator) for key in keys), None
    for value in values:
        for key in keys:
            found = match_one(value, key, match_type, comparator, relation)
            if found is not None:
                return True, (found if match_type == ":matches" else None)
    return False, None


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}")


def expand_variables(text: str, variables: dict[str, str], matches: list[str]) -> str:
    """``${name}`` and ``${N}`` replaced by their values (unknown ones by ""), RFC 5229 3."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.isdigit():
            index = int(name)
            return matches[index] if index < len(matches) else ""
        return variables.get(name.lower(), "")

    if "${" not in text:
        return text
    return _VARIABLE.sub(repl, text)


def quote_wildcards(text: str) -> str:
    """``set :quotewildcard``: make a value safe inside a ``:matches`` key."""
    return re.sub(r"([*?\\])", r"\\\1", text)
