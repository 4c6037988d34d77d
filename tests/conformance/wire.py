"""Read IMAP responses as tokens and print them in one canonical form, so two servers' answers can be diffed.

Stdlib only: the differential check runs against any two servers, from any checkout. What is normalised away
is what RFC 3501/9051 leave to the server (tags, UIDVALIDITY and mod-sequence values, human-readable text,
the order of untagged responses that carry no sequence meaning, quoted vs literal strings, the case of
FETCH item names, the order of FETCH items, flags and STATUS items, capability lists); everything else is
compared as sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Atom", "Token", "canonical_response", "parse_tokens"]


@dataclass(frozen=True)
class Atom:
    text: str


Token = Atom | bytes | list["Token"]

_LITERAL = re.compile(rb"~?\{(\d+)\+?\}\r\n")
_STATUS = re.compile(rb"^(\S+) (OK|NO|BAD|BYE|PREAUTH)(?: (.*))?$", re.S | re.I)


def parse_tokens(data: bytes) -> list[Token]:
    """Tokens of one logical response (literals inline): atoms, strings (quoted or literal) and lists."""
    out, _i = _parse_list(data, 0, top=True)
    return out


def _parse_list(data: bytes, i: int, top: bool = False) -> tuple[list[Token], int]:
    items: list[Token] = []
    n = len(data)
    while i < n:
        c = data[i : i + 1]
        if c in (b" ", b"\r", b"\n"):
            i += 1
        elif c == b"(":
            sub, i = _parse_list(data, i + 1)
            items.append(sub)
        elif c == b")":
            if top:
                items.append(Atom(")"))
                i += 1
                continue
            return items, i + 1
        elif c == b'"':
            s, i = _quoted(data, i + 1)
            items.append(s)
        elif (m := _LITERAL.match(data, i)) is not None:
            size = int(m.group(1))
            start = m.end()
            items.append(data[start : start + size])
            i = start + size
        else:
            atom, i = _atom(data, i)
            items.append(Atom(atom))
    return items, i


def _quoted(data: bytes, i: int) -> tuple[bytes, int]:
    out = bytearray()
    while i < len(data):
        c = data[i]
        if c == 0x5C and i + 1 < len(data):
            out.append(data[i + 1])
            i += 2
        elif c == 0x22:
            return bytes(out), i + 1
        else:
            out.append(c)
            i += 1
    return bytes(out), i


def _atom(data: bytes, i: int) -> tuple[str, int]:
    start = i
    depth = 0
    while i < len(data):
        c = data[i : i + 1]
        if c == b"[":
            depth += 1
        elif c == b"]":
            depth = max(0, depth - 1)
        elif depth == 0 and c in (b" ", b"(", b")", b"\r", b"\n"):
            break
        i += 1
    return data[start:i].decode("utf-8", "replace"), i


def render(tok: Token) -> str:
    if isinstance(tok, Atom):
        return tok.text
    if isinstance(tok, bytes):
        return '"' + tok.decode("utf-8", "backslashreplace").replace("\\", "\\\\").replace('"', '\\"').replace(
            "\r", "\\r").replace("\n", "\\n") + '"'
    return "(" + " ".join(render(t) for t in tok) + ")"


def _up(tok: Token) -> str:
    return tok.text.upper() if isinstance(tok, Atom) else ""


def _as_string(tok: Token) -> Token:
    """A mailbox name or other astring: atom and string forms are the same value."""
    return tok.text.encode() if isinstance(tok, Atom) else tok


def _flags(tok: Token) -> Token:
    if not isinstance(tok, list):
        return tok
    keep = [t for t in tok if _up(t) != "\\RECENT"]
    return sorted(keep, key=lambda t: render(t).upper())


def _pairs_sorted(tok: Token, numeric: set[str]) -> Token:
    if not isinstance(tok, list) or len(tok) % 2:
        return tok
    pairs = []
    for k, v in zip(tok[0::2], tok[1::2], strict=True):
        key = _up(k)
        if key == "FLAGS":
            v = _flags(v)
        elif key in numeric:
            v = Atom("<modseq>") if isinstance(v, Atom) else [Atom("<modseq>")]
        elif key == "BODYSTRUCTURE" or key == "BODY":
            v = _upper_atoms(v)
        elif key == "INTERNALDATE" and isinstance(v, bytes) and v.startswith(b" "):
            v = b"0" + v[1:]  # date-day-fixed: " 1-Jan" and "01-Jan" are the same date
        pairs.append((key.replace('"', ""), v))
    pairs.sort(key=lambda p: p[0])
    return [x for k, v in pairs for x in (Atom(k), v)]


def _upper_atoms(tok: Token) -> Token:
    """BODYSTRUCTURE types/subtypes/parameter names are case-insensitive: compare them uppercased."""
    if isinstance(tok, list):
        return [_upper_atoms(t) for t in tok]
    if isinstance(tok, bytes) and re.fullmatch(rb"[A-Za-z0-9._+*-]+", tok):
        return tok.upper()
    return tok


_MODSEQ_CODES = {"HIGHESTMODSEQ", "NOMODSEQ"}


def _code(code: str) -> str | None:
    """A response code with its server-chosen numbers masked; None drops the code (CAPABILITY, MAILBOXID)."""
    parts = code.split(" ", 1)
    name = parts[0].upper()
    rest = parts[1] if len(parts) > 1 else ""
    if name in ("CAPABILITY", "MAILBOXID"):
        return None
    if name == "UIDVALIDITY":
        return "UIDVALIDITY <v>"
    if name == "HIGHESTMODSEQ":
        return "HIGHESTMODSEQ <modseq>"
    if name == "UNSEEN":
        return "UNSEEN <n>"
    if name in ("APPENDUID", "COPYUID"):
        return name + " <v> " + rest.split(" ", 1)[1] if " " in rest else name
    if name == "PERMANENTFLAGS":
        toks = parse_tokens(rest.encode())
        return "PERMANENTFLAGS " + " ".join(render(_flags(t)) for t in toks)
    if name == "MODIFIED":
        return code
    return name + (" " + rest if rest else "")


def canonical_response(line: bytes, tag: str | None) -> str | None:
    """One response in canonical form; None for a response that is pure server choice (MAILBOXID, ...)."""
    body = line.rstrip(b"\r\n")
    m = _STATUS.match(body)
    if m and (m.group(1) == b"*" or (tag is not None and m.group(1) == tag.encode())):
        who = "*" if m.group(1) == b"*" else "T"
        status = m.group(2).decode().upper()
        text = m.group(3) or b""
        code = ""
        if text.startswith(b"["):
            end = text.find(b"]")
            if end > 0:
                c = _code(text[1:end].decode("utf-8", "replace"))
                if c is None or (c.startswith("HIGHESTMODSEQ") and who == "*"):
                    # untagged HIGHESTMODSEQ: RFC 7162 3.1.2.1 requires it only after CONDSTORE is enabled,
                    # a server may send it always; what it carries is compared in STATUS and FETCH
                    if who == "*" and status == "OK":
                        return None
                else:
                    code = " [" + c + "]"
        return f"{who} {status}{code}"
    if body.startswith(b"+"):
        return "+"
    toks = parse_tokens(body)
    if not toks or not isinstance(toks[0], Atom) or toks[0].text != "*":
        return render(toks)
    toks = toks[1:]
    return "* " + _untagged(toks, tag)


def _untagged(toks: list[Token], tag: str | None) -> str:
    head = _up(toks[0]) if toks else ""
    if head == "CAPABILITY":
        return "CAPABILITY <list>"
    if head == "ID":
        return "ID <server id>"
    if head in ("FLAGS",) and len(toks) > 1:
        return "FLAGS " + render(_flags(toks[1]))
    if head in ("LIST", "LSUB") and len(toks) >= 4:
        rest = [render(_flags(toks[1])), render(toks[2]), render(_as_string(toks[3]))]
        rest += [render(t) for t in toks[4:]]
        return head + " " + " ".join(rest)
    if head == "STATUS" and len(toks) >= 3:
        return "STATUS " + render(_as_string(toks[1])) + " " + render(_pairs_sorted(toks[2], {"HIGHESTMODSEQ", "UIDVALIDITY"}))
    if head == "ESEARCH":
        out = []
        i = 1
        if len(toks) > 1 and isinstance(toks[1], list):
            out.append("(TAG T)")
            i = 2
        while i < len(toks):
            key = _up(toks[i])
            if key == "MODSEQ" and i + 1 < len(toks):
                out += ["MODSEQ", "<modseq>"]
                i += 2
                continue
            out.append(render(toks[i]))
            i += 1
        return "ESEARCH " + " ".join(out)
    if head in ("SEARCH", "SORT"):
        out = [render(t) if not isinstance(t, list) else "(MODSEQ <modseq>)" for t in toks[1:]]
        return head + (" " + " ".join(out) if out else "")
    if head == "METADATA" and len(toks) >= 2:
        return "METADATA " + " ".join(render(_as_string(toks[1]) if i == 0 else t) for i, t in enumerate(toks[1:]))
    if len(toks) >= 2 and _up(toks[1]) == "FETCH" and len(toks) >= 3:
        return f"{render(toks[0])} FETCH " + render(_pairs_sorted(toks[2], {"MODSEQ"}))
    if len(toks) >= 2 and _up(toks[1]) == "RECENT":
        return "<n> RECENT"
    return " ".join(render(t) for t in toks)
