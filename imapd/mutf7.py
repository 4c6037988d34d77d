"""Modified UTF-7 (RFC 3501 section 5.1.3), the encoding of mailbox names on the wire and on disk.

It lives outside ``imapd.protocol`` because the store also needs it: Maildir++ folder names on disk are
kept in modified UTF-7, as Dovecot and Courier write them, so a migrated Maildir keeps its folder names.
"""

from __future__ import annotations

import base64
import re

__all__ = ["MUTF7Error", "decode", "encode"]


class MUTF7Error(ValueError):
    """A name that is not valid modified UTF-7."""


_PRINTABLE = re.compile(r"[\x20-\x25\x27-\x7e]+")


def encode(name: str) -> str:
    """Encode a Unicode mailbox name to modified UTF-7."""
    out: list[str] = []
    i = 0
    n = len(name)
    while i < n:
        m = _PRINTABLE.match(name, i)
        if m:
            out.append(m.group())
            i = m.end()
            continue
        ch = name[i]
        if ch == "&":
            out.append("&-")
            i += 1
            continue
        j = i
        while j < n and not ("\x20" <= name[j] <= "\x7e"):
            j += 1
        chunk = name[i:j].encode("utf-16-be", "surrogatepass")
        b64 = base64.b64encode(chunk).decode("ascii").rstrip("=").replace("/", ",")
        out.append("&" + b64 + "-")
        i = j
    return "".join(out)


def decode(name: str) -> str:
    """Decode modified UTF-7 to Unicode; raise MUTF7Error on anything RFC 3501 forbids."""
    out: list[str] = []
    i = 0
    n = len(name)
    while i < n:
        ch = name[i]
        if ch != "&":
            if not ("\x20" <= ch <= "\x7e"):
                raise MUTF7Error(f"character {ch!r} must be encoded in modified UTF-7")
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise MUTF7Error("unterminated '&' shift sequence")
        b64 = name[i + 1 : end]
        i = end + 1
        if not b64:
            out.append("&")
            continue
        if not re.fullmatch(r"[A-Za-z0-9+,]+", b64):
            raise MUTF7Error(f"invalid base64 in shift sequence {b64!r}")
        pad = (-len(b64)) % 4
        if pad == 3:
            raise MUTF7Error(f"truncated shift sequence {b64!r}")
        try:
            raw = base64.b64decode(b64.replace(",", "/") + "=" * pad, validate=True)
        except ValueError as exc:
            raise MUTF7Error(f"invalid base64 in shift sequence {b64!r}") from exc
        if len(raw) % 2:
            raise MUTF7Error(f"odd number of bytes in shift sequence {b64!r}")
        try:
            text = raw.decode("utf-16-be")
        except UnicodeDecodeError as exc:
            raise MUTF7Error(f"invalid UTF-16 in shift sequence {b64!r}") from exc
        if all("\x20" <= c <= "\x7e" for c in text):
            raise MUTF7Error(f"shift sequence {b64!r} encodes printable ASCII")
        if encode(text) != "&" + b64 + "-":
            raise MUTF7Error(f"non-canonical shift sequence {b64!r}")
        out.append(text)
    return "".join(out)
