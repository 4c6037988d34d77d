"""The MIME tree of a raw message as offsets: the one walker behind BODYSTRUCTURE, sections and search.

Multipart bodies are split on the exact RFC 2046 delimiters: a delimiter is ``--boundary`` at the start
of a line, followed by ``--`` (close delimiter) or only whitespace; the line break *before* it belongs to
the delimiter, not to the preceding part. Preamble and epilogue belong to no part. A missing close
delimiter ends the last part at the end of the enclosing body. A multipart with no boundary parameter,
or whose body holds no delimiter, is read as ``TEXT/PLAIN``/one headerless part so its text stays
reachable. ``MESSAGE/RFC822`` bodies are parsed as messages. Nesting deeper than :data:`MAX_DEPTH`
or more than :data:`MAX_PARTS` nodes is cut: the part becomes an ``APPLICATION/OCTET-STREAM`` leaf.
"""

from __future__ import annotations

from imapd.mime.headers import Header, parse_content_type, parse_encoding, to_str
from imapd.mime.structs import Param

MAX_DEPTH = 50
MAX_PARTS = 10_000  # nodes per message; beyond it multiparts and messages are cut like MAX_DEPTH

_DEFAULT_TEXT: tuple[str, str, list[Param]] = ("TEXT", "PLAIN", [("CHARSET", "US-ASCII")])
_DEFAULT_DIGEST: tuple[str, str, list[Param]] = ("MESSAGE", "RFC822", [])


class MimeNode:
    """One message or body part: ``buf[start:body_start]`` is its header, ``buf[body_start:end]`` its body.

    ``children`` is non-empty exactly for multiparts; ``message`` is set exactly for MESSAGE/RFC822,
    and is the encapsulated message (a node spanning this node's body).
    """

    __slots__ = ("body_start", "children", "encoding", "end", "header", "message", "params", "start",
                 "subtype", "type")

    def __init__(self, header: Header, end: int, ctype: str, subtype: str, params: list[Param]) -> None:
        self.header = header
        self.start = header.start
        self.body_start = header.body_start
        self.end = end
        self.type = ctype
        self.subtype = subtype
        self.params = params
        self.encoding = parse_encoding(header.text("content-transfer-encoding"))
        self.children: list[MimeNode] = []
        self.message: MimeNode | None = None

    @property
    def body_size(self) -> int:
        return self.end - self.body_start

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    def body_lines(self) -> int:
        """Lines in the body: line breaks, plus one for an unterminated last line."""
        buf, start, end = self.header.buf, self.body_start, self.end
        lines = buf.count(b"\n", start, end)
        if end > start and buf[end - 1] != 0x0A:
            lines += 1
        return lines


def split_multipart(buf: bytes, start: int, end: int, boundary: bytes,
                    limit: int | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` of each body part of the multipart body ``buf[start:end]``.

    With ``limit``, the ``limit``-th part runs to the close delimiter (or the end): the surplus parts stay in
    it, found with one search instead of a line-by-line walk (a hostile body of 200,000 empty parts).
    """
    dash = b"--" + boundary
    needle = b"\n" + dash
    dash_len = len(dash)
    find = buf.find
    parts: list[tuple[int, int]] = []
    part_start = -1
    search = start
    at_start = buf.startswith(dash, start) and start + dash_len <= end
    while True:
        if at_start:
            i = start
            at_start = False
        else:
            j = find(needle, search, end)
            if j < 0:
                break
            i = j + 1
        after = i + dash_len
        nl = find(b"\n", after, end)
        line_end = end if nl < 0 else nl + 1
        close = buf.startswith(b"--", after) and after + 2 <= line_end
        if not close and buf[after:line_end].strip(b" \t\r\n"):
            search = after  # "--boundaryXYZ": a longer boundary, not ours
            continue
        if part_start >= 0:
            part_end = i - 1 if i > start else i
            if part_end > part_start and buf[part_end - 1] == 0x0D:
                part_end -= 1
            parts.append((part_start, max(part_start, part_end)))
        if close:
            return parts
        part_start = line_end
        search = line_end - 1 if nl >= 0 else end
        if limit is not None and len(parts) >= limit - 1:
            j = find(needle + b"--", search, end)
            if j < 0:
                break
            part_end = j
            if part_end > part_start and buf[part_end - 1] == 0x0D:
                part_end -= 1
            parts.append((part_start, max(part_start, part_end)))
            return parts
    if part_start >= 0:
        parts.append((part_start, end))
    return parts


def _header_only(buf: bytes, start: int) -> Header:
    return Header(buf, start, start)  # an empty header: the body starts at ``start``


def build(buf: bytes, start: int = 0, end: int | None = None, *, digest: bool = False, depth: int = 0,
          header: Header | None = None, budget: list[int] | None = None) -> MimeNode:
    """Parse the message or part at ``buf[start:end]`` and, recursively, everything inside it.

    ``budget`` is the count of nodes still allowed, shared by the whole recursion.
    """
    if end is None:
        end = len(buf)
    if budget is None:
        budget = [MAX_PARTS]
    budget[0] -= 1
    if header is None:
        header = Header(buf, start, end)
    value = header.raw("content-type")
    parsed = parse_content_type(to_str(value)) if value else None
    if parsed is None:
        parsed = _DEFAULT_DIGEST if digest else _DEFAULT_TEXT
    ctype, subtype, params = parsed
    node = MimeNode(header, end, ctype, subtype, list(params))
    if ctype == "MULTIPART":
        boundary = node.param("BOUNDARY")
        if depth >= MAX_DEPTH or budget[0] <= 0:
            node.type, node.subtype = "APPLICATION", "OCTET-STREAM"
        elif not boundary:
            node.type, node.subtype, node.params = _DEFAULT_TEXT[0], _DEFAULT_TEXT[1], list(_DEFAULT_TEXT[2])
        else:
            # too many parts: the surplus stays in the last one
            spans = split_multipart(buf, node.body_start, end, boundary.encode("utf-8", "replace"), budget[0])
            is_digest = subtype == "DIGEST"
            if spans:
                node.children = [build(buf, s, e, digest=is_digest, depth=depth + 1, budget=budget)
                                 for s, e in spans]
            else:
                # No delimiter at all: the whole body as one headerless text part.
                whole = _header_only(buf, node.body_start)
                node.children = [build(buf, node.body_start, end, depth=depth + 1, header=whole, budget=budget)]
    elif ctype == "MESSAGE" and subtype == "RFC822":
        if depth >= MAX_DEPTH or budget[0] <= 0:
            node.type, node.subtype = "APPLICATION", "OCTET-STREAM"
        else:
            node.message = build(buf, node.body_start, end, depth=depth + 1, budget=budget)
    return node


def part_list(message: MimeNode) -> list[MimeNode]:
    """The numbered parts of a message: its multipart children, or its body as the only part 1."""
    return message.children if message.children else [message]


def resolve(root: MimeNode, part: tuple[int, ...]) -> MimeNode | None:
    """The node for an IMAP part number (RFC 3501 6.4.5); ``()`` is the message itself."""
    node = root
    container: MimeNode | None = root  # the message or multipart the next number indexes into
    for number in part:
        if container is None or number < 1:
            return None
        parts = part_list(container)
        if number > len(parts):
            return None
        node = parts[number - 1]
        if node.children:
            container = node
        elif node.message is not None:
            container = node.message
        else:
            container = None
    return node
