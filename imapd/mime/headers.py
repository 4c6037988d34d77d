"""Header blocks on raw bytes: where a header ends, its fields, their raw values and MIME parameters.

Everything works on offsets into the caller's buffer, so a part's header can be sliced back out
byte-exact (``BODY[n.MIME]``, ``HEADER.FIELDS``) without re-serialising anything.

Tolerance: bare LF line endings, 8-bit bytes anywhere, a first line that is not a header (the message
then has an empty header), a header block not followed by a blank line (it then ends at the first line
that is not a header line, or at the end of the data).
"""

from __future__ import annotations

import re

from imapd.mime.structs import Param

# One field: a name (any printable non-colon bytes, 8-bit tolerated), optional WSP, ':', the rest of
# the line and every continuation line (starting with SP or HT); the last line may lack its break.
_FIELD = re.compile(rb"([^\x00-\x20\x7f:]+)[ \t]*:([^\n]*)(?:\n[ \t][^\n]*)*(?:\n|\Z)")
_NAMES: dict[bytes, str] = {}
_LINE_BREAK = re.compile(rb"\r?\n")
_QUOTED_TEXT = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)", re.S)
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")

# (lower-case name, offset of the field's first byte, offset just after the colon,
#  offset just after the field's last line break)
Field = tuple[str, int, int, int]


def to_str(data: bytes) -> str:
    """Raw header bytes as text: UTF-8 when valid, else latin-1 (one code point per byte, never fails)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def unfold(data: bytes) -> bytes:
    """Remove folding line breaks (the whitespace after them stays) and surrounding whitespace."""
    if b"\n" in data:
        data = _LINE_BREAK.sub(b"", data)
    return data.strip(b" \t\r\n")


class Header:
    """The header block of a message or body part found at ``buf[start:]``.

    ``body_start`` is the offset just after the blank line (or where the header stopped), so the block
    is ``buf[start:body_start]`` and its size ``body_start - start``. ``fields`` lists every field in
    order; ``first`` maps a lower-case name to its first field.
    """

    __slots__ = ("body_start", "buf", "fields", "first", "start")

    def __init__(self, buf: bytes, start: int, end: int) -> None:
        self.buf = buf
        self.start = start
        fields: list[Field] = []
        first: dict[str, Field] = {}
        match_field = _FIELD.match
        names = _NAMES
        pos = start
        while pos < end:
            m = match_field(buf, pos, end)
            if m is None:
                first_byte = buf[pos]
                if first_byte == 0x0A:
                    pos += 1
                elif first_byte == 0x0D and (pos + 1 == end or buf[pos + 1] == 0x0A):
                    pos = min(pos + 2, end)
                # else: a line that is not a header line; the body starts here
                break
            raw_name = m.group(1)
            name = names.get(raw_name)
            if name is None:
                name = raw_name.decode("latin-1").lower()
                if len(names) < 4096:
                    names[raw_name] = name
            field = (name, pos, m.start(2), m.end())
            fields.append(field)
            if name not in first:
                first[name] = field
            pos = m.end()
        self.fields = fields
        self.first = first
        self.body_start = pos

    @property
    def size(self) -> int:
        return self.body_start - self.start

    def raw(self, name: str) -> bytes | None:
        """Unfolded raw value of the first field called ``name`` (lower case), or None."""
        field = self.first.get(name)
        if field is None:
            return None
        value = self.buf[field[2] : field[3]]
        return unfold(value)

    def raw_all(self, name: str) -> list[bytes]:
        buf = self.buf
        return [unfold(buf[v:e]) for n, _, v, e in self.fields if n == name]

    def text(self, name: str) -> str | None:
        """Like :meth:`raw` as text (see :func:`to_str`); None when absent or empty."""
        value = self.raw(name)
        return to_str(value) if value else None

    def first_values(self, names: frozenset[str]) -> dict[str, bytes]:
        """Unfolded raw values of the first occurrence of each wanted field."""
        buf = self.buf
        return {name: unfold(buf[f[2] : f[3]]) for name, f in self.first.items() if name in names}


def strip_comments(value: str) -> str:
    """Remove RFC 5322 comments (innermost first; nesting beyond 8 levels is left as is)."""
    for _ in range(8):
        if "(" not in value:
            break
        stripped = _COMMENT.sub("", value)
        if stripped == value:
            break
        value = stripped
    return value


def parse_params(value: str) -> tuple[str, list[Param]]:
    """Split ``main; a=b; c="d"`` into the main value and ``(NAME, value)`` pairs (names upper-cased,
    values unquoted but otherwise raw). Linear time on any input; segments without ``=`` are skipped."""
    semi = value.find(";")
    if semi < 0:
        return value.strip(), []
    params: list[Param] = []
    find = value.find
    n = len(value)
    i = semi + 1
    while i < n:
        seg_end = find(";", i)
        if seg_end < 0:
            seg_end = n
        eq = find("=", i, seg_end)
        if eq < 0:
            i = seg_end + 1
            continue
        name = value[i:eq].strip()
        j = eq + 1
        while j < n and value[j] in " \t\r\n":
            j += 1
        if j < n and value[j] == '"':
            m = _QUOTED_TEXT.match(value, j + 1)
            assert m is not None  # the pattern matches the empty string
            quoted = m.group()
            param = _QUOTED_PAIR.sub(r"\1", quoted) if "\\" in quoted else quoted
            close = find(";", m.end())
            i = n if close < 0 else close + 1
        else:
            param = value[j:seg_end].strip()
            i = seg_end + 1
        if name:
            params.append((name.upper(), param))
    return value[:semi].strip(), params


def parse_content_type(value: str) -> tuple[str, str, list[Param]] | None:
    """``(TYPE, SUBTYPE, params)`` of a Content-Type value, or None when it is not valid syntax."""
    main, params = parse_params(value)
    if "(" in main:
        main = strip_comments(main)
    slash = main.find("/")
    if slash < 0:
        return None
    ctype = main[:slash].strip()
    subtype = main[slash + 1 :].strip()
    if not (_TOKEN.fullmatch(ctype) and _TOKEN.fullmatch(subtype)):
        return None
    return ctype.upper(), subtype.upper(), params


def parse_encoding(value: str | None) -> str:
    """Content-Transfer-Encoding, upper case, ``7BIT`` when absent or empty."""
    if not value:
        return "7BIT"
    if "(" in value:
        value = strip_comments(value)
    return value.strip().upper() or "7BIT"
