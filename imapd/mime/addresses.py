"""RFC 5322 address lists into RFC 3501 envelope addresses, group syntax included.

Names stay raw (quoting removed, RFC 2047 words left alone), as IMAP sends them. Tolerates the usual
damage: ``;`` used as a list separator, missing ``>``, unterminated quotes and comments, bare words,
addresses without domain (host becomes ``MISSING_DOMAIN``, as Dovecot does, so it never reads as a
group marker).
"""

from __future__ import annotations

import re

from imapd.mime.structs import Address

MISSING_MAILBOX = "MISSING_MAILBOX"
MISSING_DOMAIN = "MISSING_DOMAIN"
GROUP_END = Address(None, None, None, None)

_TOKEN = re.compile(
    r"""
     [ \t\r\n]+                          # whitespace: skipped
    |(?P<q>"(?:[^"\\]|\\.)*(?:"|\Z))     # quoted-string (unterminated tolerated)
    |(?P<c>\()                           # comment: scanned by hand (nesting)
    |(?P<d>\[(?:[^\]\\]|\\.)*(?:\]|\Z))  # domain-literal
    |(?P<s>[<>@,;:.])                    # specials we act on
    |(?P<a>[^ \t\r\n"()\[\]<>@,;:.]+)    # atom (8-bit tolerated)
    |(?P<o>.)                            # anything else (stray ')' or ']') as an atom
    """,
    re.X | re.S,
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
# Fast path for the common shapes: ``a@b``, ``Name <a@b>``, ``"Name" <a@b>``, comma-separated.
_NOT_SIMPLE = re.compile(r"[()\[\]:;\\]")
_SIMPLE_ITEM = re.compile(  # possessive everywhere: linear time on hostile input
    r"""[ \t]*+(?:
        (?:"([^"\\]*+)"[ \t]*+|([^<>@,"]*+))<([^<>@\s,"]++)@([^<>@\s,"]++)>
       |([^<>@\s,"]++)@([^<>@\s,"]++)
    )[ \t]*+(?:,|\Z)""",
    re.X,
)

# Token kinds: "q" quoted-string content, "c" comment text, "d" domain-literal, "s" special, "a" atom.
Token = tuple[str, str]


def _unquote(text: str) -> str:
    return _QUOTED_PAIR.sub(r"\1", text) if "\\" in text else text


def _comment(value: str, pos: int) -> tuple[str, int]:
    """Comment text starting after the '(' at ``pos - 1``; returns it and the offset after it."""
    depth = 1
    i = pos
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return value[pos:i], i + 1
        i += 1
    return value[pos:], n


def tokenize(value: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    n = len(value)
    match = _TOKEN.match
    while pos < n:
        m = match(value, pos)
        assert m is not None  # the last alternative matches any character
        kind = m.lastgroup
        if kind is None:
            pos = m.end()
        elif kind == "c":
            text, pos = _comment(value, m.end())
            tokens.append(("c", _unquote(text).strip()))
        else:
            text = m.group()
            if kind == "q":
                end = -1 if len(text) > 1 and text.endswith('"') and not text.endswith('\\"') else len(text)
                tokens.append(("q", _unquote(text[1:end])))
            elif kind == "o":
                tokens.append(("a", text))
            else:
                tokens.append((kind, text))
            pos = m.end()
    return tokens


def _phrase(tokens: list[Token]) -> str | None:
    """Display name from phrase tokens: words joined by single spaces, '.' kept attached."""
    words: list[str] = []
    for kind, text in tokens:
        if kind == "c":
            continue
        if kind == "s" and text == "." and words:
            words[-1] += "."
        else:
            words.append(text)
    return " ".join(words) if words else None


def _join_spec(tokens: list[Token]) -> str:
    """Local part or domain: dot-atoms joined tight; two words with no dot between keep a space."""
    out: list[str] = []
    prev_word = False
    for kind, text in tokens:
        if kind == "c":
            continue
        is_word = kind != "s"
        if is_word and prev_word:
            out.append(" ")
        out.append(text)
        prev_word = is_word
    return "".join(out)


def _mailbox(tokens: list[Token]) -> Address | None:
    """One mailbox (name-addr or addr-spec) from its tokens; None when there is nothing in it."""
    if not any(kind != "c" for kind, _ in tokens):
        return None
    name: str | None
    adl: str | None = None
    angle = next((i for i, tok in enumerate(tokens) if tok == ("s", "<")), -1)
    if angle >= 0:
        name = _phrase(tokens[:angle])
        close = next((i for i in range(angle + 1, len(tokens)) if tokens[i] == ("s", ">")), len(tokens))
        spec = tokens[angle + 1 : close]
        if spec and spec[0] == ("s", "@"):
            colon = next((i for i, tok in enumerate(spec) if tok == ("s", ":")), -1)
            if colon >= 0:
                adl = _join_spec(spec[:colon]) or None
                spec = spec[colon + 1 :]
        if name is None:
            name = next((text for kind, text in tokens[close:] if kind == "c" and text), None)
    else:
        spec = [tok for tok in tokens if tok[0] != "c"]
        name = next((text for kind, text in tokens if kind == "c" and text), None)
    at = max((i for i, tok in enumerate(spec) if tok == ("s", "@")), default=-1)
    if at >= 0:
        local = _join_spec(spec[:at])
        domain = _join_spec(spec[at + 1 :])
    else:
        local = _join_spec(spec)
        domain = ""
    return Address(name, adl, local or MISSING_MAILBOX, domain or MISSING_DOMAIN)


def _parse_simple(value: str) -> list[Address] | None:
    """The fast path: None when ``value`` is not a plain list of simple mailboxes."""
    out: list[Address] = []
    pos = 0
    end = len(value)
    match = _SIMPLE_ITEM.match
    while pos < end:
        m = match(value, pos)
        if m is None or m.end() == pos:
            return None
        pos = m.end()
        mailbox = m.group(3)
        if mailbox is not None:
            quoted = m.group(1)
            name = quoted if quoted is not None else " ".join(m.group(2).split())
            out.append(Address(name or None, None, mailbox, m.group(4)))
        else:
            out.append(Address(None, None, m.group(5), m.group(6)))
    return out or None


def parse_addresses(value: str) -> list[Address] | None:
    """RFC 3501 address list of a header value; None when it holds no address at all.

    A group ``name: a@b, c@d;`` becomes ``(NIL NIL "name" NIL)``, its members, ``(NIL NIL NIL NIL)``.
    """
    if not _NOT_SIMPLE.search(value):
        simple = _parse_simple(value)
        if simple is not None:
            return simple
    out: list[Address] = []
    current: list[Token] = []
    in_angle = False
    in_group = False
    for token in tokenize(value):
        kind, text = token
        if kind == "s" and not in_angle:
            if text == ",":
                addr = _mailbox(current)
                if addr is not None:
                    out.append(addr)
                current = []
                continue
            if text == ";":
                addr = _mailbox(current)
                if addr is not None:
                    out.append(addr)
                current = []
                if in_group:
                    out.append(GROUP_END)
                    in_group = False
                continue
            if text == ":" and not in_group:
                out.append(Address(None, None, _phrase(current) or "", None))
                in_group = True
                current = []
                continue
            if text == "<":
                in_angle = True
        elif kind == "s" and text == ">":
            in_angle = False
        current.append(token)
    addr = _mailbox(current)
    if addr is not None:
        out.append(addr)
    if in_group:
        out.append(GROUP_END)
    return out or None


def first_mailbox(addresses: list[Address] | None) -> Address | None:
    """The first real address (group markers skipped)."""
    if addresses:
        for addr in addresses:
            if addr.host is not None:
                return addr
    return None
