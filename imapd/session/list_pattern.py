"""LIST/LSUB patterns (RFC 3501 6.3.8) matched in linear time.

``*`` matches anything, ``%`` anything but the hierarchy separator. A translation to a backtracking regex
(``.*a.*a.*b``) takes time exponential in the number of wildcards on a name that almost matches: one LIST
with a crafted pattern held a worker's event loop for minutes (found by the conformance check). Here the
pattern is a small NFA whose state set is a bit mask, advanced once per character of the name.
"""

from __future__ import annotations

__all__ = ["MailboxPattern"]


class MailboxPattern:
    """``reference + pattern`` compiled; ``fullmatch(name)`` says whether LIST should return ``name``.

    INBOX is case-insensitive wherever it is the first component of the pattern (RFC 3501 5.1)."""

    __slots__ = ("_accept", "_fold", "_literal", "_pct", "_sep", "_star")

    def __init__(self, reference: str, pattern: str, separator: str) -> None:
        full = _collapse(reference + pattern)
        self._fold = full[:5].upper() == "INBOX" and (len(full) == 5 or full[5] in separator + "*%")
        self._literal: dict[str, int] = {}
        star = pct = 0
        for i, ch in enumerate(full):
            bit = 1 << i
            if ch == "*":
                star |= bit
            elif ch == "%":
                pct |= bit
            else:
                chars = {ch.upper(), ch.lower()} if self._fold and i < 5 else {ch}
                for c in chars:
                    self._literal[c] = self._literal.get(c, 0) | bit
        self._star, self._pct = star, pct
        self._accept = 1 << len(full)
        self._sep = separator

    def _closure(self, states: int) -> int:
        # a wildcard may match nothing; wildcards are never adjacent after _collapse, so one step suffices
        return states | ((states & (self._star | self._pct)) << 1)

    def fullmatch(self, name: str) -> bool:
        states = self._closure(1)
        literal, star, pct, sep = self._literal, self._star, self._pct, self._sep
        for ch in name:
            stay = states & star if ch == sep else states & (star | pct)
            states = self._closure(((states & literal.get(ch, 0)) << 1) | stay)
            if not states:
                return False
        return bool(states & self._accept)


def _collapse(pattern: str) -> str:
    """A run of wildcards is one: ``*`` if it holds a ``*`` (it can cross separators), else ``%``."""
    out: list[str] = []
    run = ""
    for ch in pattern + "\0":
        if ch in "*%":
            run += ch
            continue
        if run:
            out.append("*" if "*" in run else "%")
            run = ""
        out.append(ch)
    return "".join(out[:-1])
