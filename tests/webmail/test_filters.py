"""The settings page's Sieve compiler: every script it writes parses with imapd's own grammar, reads back
to the same filters, holds form text only as strings, and a hand edit makes it foreign."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imapd.sieve.grammar import decode_string, parse_script
from webmail_demo.filters import FilterError, FilterSet, Rule, Vacation, compile_script
from webmail_demo.filters import parse_script as read_back

# Printable text, quotes, backslashes, Sieve punctuation; no control characters (the form refuses them).
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from('"\\;{}[]#/*'), min_size=1,
               max_size=30)
RULES = st.builds(Rule, TEXT, st.sampled_from(["from", "to", "subject"]), st.sampled_from(["contains", "is"]), TEXT,
                  st.sampled_from(["move", "read", "flag", "discard"]), TEXT, st.booleans())
BODY = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\x0b\x0c\r")
               .filter(lambda c: c == "\n" or c == "\t" or (ord(c) >= 32 and c != "\x7f")), min_size=1, max_size=80)
VACATIONS = st.builds(Vacation, st.booleans(), TEXT, BODY.filter(str.strip), st.integers(1, 365),
                      st.lists(st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.org", fullmatch=True), max_size=3))


@settings(max_examples=60, deadline=None)
@given(st.lists(RULES, max_size=5), VACATIONS)
def test_every_generated_script_parses_and_reads_back(rules: list[Rule], vacation: Vacation) -> None:
    fs = FilterSet(rules, vacation)
    text = compile_script(fs)
    nodes = parse_script(text)
    enabled = [r for r in rules if r.enabled]
    ifs = [n for n in nodes if n.name == "if"]
    assert len(ifs) == len(enabled)  # form text never adds or removes a command
    for node, rule in zip(ifs, enabled, strict=True):
        assert decode_string(node.arguments["test"].arguments["key-list"]) == rule.value
    assert [n.name for n in nodes if n.name == "vacation"] == (["vacation"] if vacation.enabled else [])
    assert read_back(text) == fs
    assert read_back(text.replace("\r\n", "\n")) == fs  # line ends as a client may hand them back


def test_hand_edit_or_foreign_script_is_not_read_back() -> None:
    fs = FilterSet([Rule("lists", value="[list]", folder="Lists")])
    text = compile_script(fs)
    assert read_back(text) == fs
    assert read_back(text.replace('create "Lists"', 'create "Other"')) is None
    assert read_back(text + "discard;\r\n") is None
    assert read_back('require "fileinto";\r\nfileinto "X";\r\n') is None
    assert read_back(text.replace('"v":1', '"v":2')) is None
    assert read_back(text.replace("webmail-filters: {", "webmail-filters: {{")) is None


@pytest.mark.parametrize("rule, message", [
    (Rule("a", value=""), "needs a value"),
    (Rule("a", value="x", action="move", folder=""), "folder"),
    (Rule("a", value="x\r\nstop;", action="flag"), "Control characters"),
    (Rule("a", field="cc", value="x"), "Unknown"),
])
def test_form_values_the_script_cannot_hold(rule: Rule, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        compile_script(FilterSet([rule]))


def test_vacation_checks() -> None:
    with pytest.raises(FilterError, match="365"):
        compile_script(FilterSet(vacation=Vacation(True, "", "away", 0)))
    with pytest.raises(FilterError, match="Not an address"):
        compile_script(FilterSet(vacation=Vacation(True, "", "away", 3, ['a"@b'])))
    with pytest.raises(FilterError, match="needs a text"):
        compile_script(FilterSet(vacation=Vacation(True, "", " ", 3)))
