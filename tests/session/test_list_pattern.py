"""LIST patterns: same answers as the RFC 3501 6.3.8 definition, in linear time on hostile patterns."""

from __future__ import annotations

import re
import time

from hypothesis import given
from hypothesis import strategies as st

from imapd.session.list_pattern import MailboxPattern


def _reference_regex(full: str) -> re.Pattern[str]:
    """The definition as the backtracking regex it used to be: fine for the short inputs of the property."""
    out = [".*" if ch == "*" else "[^/]*" if ch == "%" else re.escape(ch) for ch in full]
    if full[:5].upper() == "INBOX" and (len(full) == 5 or full[5] in "/*%"):
        out = ["(?i:INBOX)", *out[5:]]
    return re.compile("".join(out), re.DOTALL)


_CHARS = st.sampled_from("ab/*%IiNnBbOoXx")


@given(st.text(_CHARS, max_size=8), st.text(_CHARS, max_size=8), st.text(st.sampled_from("ab/INBOXinbox"), max_size=10))
def test_matches_the_definition(reference: str, pattern: str, name: str) -> None:
    full = reference + pattern
    assert MailboxPattern(reference, pattern, "/").fullmatch(name) == bool(_reference_regex(full).fullmatch(name))


def test_examples() -> None:
    assert MailboxPattern("", "*", "/").fullmatch("a/b/c")
    assert not MailboxPattern("", "%", "/").fullmatch("a/b")
    assert MailboxPattern("", "a/%", "/").fullmatch("a/b")
    assert MailboxPattern("", "inbox", "/").fullmatch("INBOX")
    assert MailboxPattern("", "Inbox/%", "/").fullmatch("INBOX/x")
    assert not MailboxPattern("", "inboxes", "/").fullmatch("INBOXES")
    assert MailboxPattern("lst/", "%", "/").fullmatch("lst/c")
    assert MailboxPattern("", "", "/").fullmatch("")


def test_hostile_patterns_are_linear() -> None:
    """``*a*a*...b`` against ``aaa...``: a backtracking regex needs C(200, 20) steps; this is one pass."""
    name = "a" * 200
    start = time.monotonic()
    for pattern in ("*" * 50 + "b", "*a" * 40 + "b", "%a" * 40 + "b", "*%" * 100 + "b", "%" * 500 + "b"):
        assert not MailboxPattern("", pattern, "/").fullmatch(name)
        assert MailboxPattern("", pattern[:-1], "/").fullmatch(name) == (pattern.count("a") <= 200)
    assert time.monotonic() - start < 1.0
