"""RFC 8970 PREVIEW: a short plain-text abstract of a message, computed from its raw bytes.

Rules (RFC 8970 section 3, and our choices where it leaves them open):

- The source is the first ``text/plain`` leaf of the body that is not an attachment (depth first, so
  the plain half of a ``multipart/alternative``); without one, the first such ``text/html`` leaf with its
  markup removed (``<script>``/``<style>`` contents and comments dropped, entities decoded). Encapsulated
  messages (MESSAGE/RFC822) and non-text parts are never used: the preview is of this message's own text.
- The transfer encoding and the charset are undone (an unknown encoding: the raw bytes; undecodable bytes
  are replaced). At most :data:`SCAN_BYTES` of the part are looked at, so a huge body costs no more than
  a small one.
- Quoted lines (``>`` ...) are dropped, every run of whitespace (and control characters) becomes one
  space, and the result is cut to :data:`PREVIEW_CHARS` characters (the RFC's ceiling is 256), at a word
  boundary when there is one in the last fifth.
- A message with no usable text has the empty preview ``""`` (RFC 8970: the empty string, not NIL; NIL is
  only for ``PREVIEW (LAZY)`` when the preview is not computed yet, decided by the session).
"""

from __future__ import annotations

import contextlib
import html
import re

from imapd.mime.encoded_words import decode_charset
from imapd.mime.sections import UnknownEncoding, decode_transfer
from imapd.mime.tree import MimeNode, build

__all__ = ["MAX_PREVIEW_CHARS", "PREVIEW_CHARS", "SCAN_BYTES", "html_to_text", "preview_text"]

PREVIEW_CHARS = 200
"""Length of the previews we generate."""
MAX_PREVIEW_CHARS = 256
"""RFC 8970 section 3: a preview MUST NOT be longer than this."""
SCAN_BYTES = 64 * 1024
"""Bytes of the chosen part (before decoding) that are looked at."""

_WS = re.compile(r"[\s\x00-\x1f\x7f\u200b\ufeff]+")
_QUOTED = re.compile(r"^[ \t]*>.*$", re.MULTILINE)
_HIDDEN_TAGS = frozenset({"script", "style", "head", "title", "template"})
_BLOCK_TAGS = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"})


def _attachment(node: MimeNode) -> bool:
    value = node.header.text("content-disposition")
    return value is not None and value.strip().lower().startswith("attachment")


def _first_text(node: MimeNode, subtype: str) -> MimeNode | None:
    if node.children:
        for child in node.children:
            found = _first_text(child, subtype)
            if found is not None:
                return found
        return None
    if node.message is None and node.type == "TEXT" and node.subtype == subtype and not _attachment(node):
        return node
    return None


_TAG_NAME = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)")
_CLOSERS = {name: re.compile("</" + name, re.IGNORECASE) for name in _HIDDEN_TAGS}


def html_to_text(markup: str) -> str:
    """Visible text of an HTML fragment, a line break where a block starts or ends (whitespace not yet
    collapsed): script/style/head contents and comments are dropped, entities decoded.

    One forward scan with ``str.find`` (linear even on hostile markup; ``html.parser`` and nested regular
    expressions are quadratic on a run of unclosed tags).
    """
    out: list[str] = []
    pos, n = 0, len(markup)
    while pos < n:
        lt = markup.find("<", pos)
        if lt < 0:
            out.append(markup[pos:])
            break
        out.append(markup[pos:lt])
        if markup.startswith("<!--", lt):
            close = markup.find("-->", lt + 4)
            pos = n if close < 0 else close + 3
            continue
        gt = markup.find(">", lt + 1)
        if gt < 0:
            break  # an unterminated tag: the rest is markup
        m = _TAG_NAME.match(markup, lt, gt)
        pos = gt + 1
        if m is None:
            continue
        name = m.group(1).lower()
        if name in _BLOCK_TAGS:
            out.append("\n")
        elif name in _HIDDEN_TAGS and not m.group().startswith("</") and markup[gt - 1] != "/":
            end = _CLOSERS[name].search(markup, pos)
            pos = n if end is None else end.start()
    return html.unescape(" ".join(out))


def _decoded(node: MimeNode) -> str:
    buf = node.header.buf
    body = buf[node.body_start : min(node.end, node.body_start + SCAN_BYTES)]
    with contextlib.suppress(UnknownEncoding):
        body = decode_transfer(body, node.encoding)
    return decode_charset(body, node.param("CHARSET"))


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space >= limit * 4 // 5:
        cut = cut[:space]
    return cut.rstrip()


def preview_text(raw: bytes, limit: int = PREVIEW_CHARS) -> str:
    """The RFC 8970 preview of message ``raw`` (see the module docstring); never raises on bad input."""
    limit = min(limit, MAX_PREVIEW_CHARS)
    try:
        root = build(raw)
    except Exception:  # a parser bug must not fail a FETCH: no preview rather than an error
        return ""
    node = _first_text(root, "PLAIN")
    is_html = False
    if node is None:
        node = _first_text(root, "HTML")
        is_html = node is not None
    if node is None:
        return ""
    text = _decoded(node)
    if is_html:
        text = html_to_text(text)
    text = _QUOTED.sub(" ", text)
    return _shorten(_WS.sub(" ", text).strip(), limit)
