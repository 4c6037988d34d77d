"""The relay's fast line split (LineScanner._split) against the line-by-line scan, on any chunking.

The fast path is taken only when no literal can be involved; whatever the chunk boundaries, ``feed`` must
give exactly the lines (and first-line flags) of the plain scan, and ``heads`` exactly the first lines the
tracker looks at.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from imapd.proxy.tracker import LineScanner, _head

STREAM = (b"* OK [CAPABILITY IMAP4rev1] ready\r\n"
          b"* 1 FETCH (UID 1 FLAGS () ENVELOPE (\"d\" \"subject {3}\" NIL NIL NIL NIL NIL NIL NIL NIL))\r\n"
          b"* 2 FETCH (BODY[] {12}\r\nline\r\n* BYE x\r\n)\r\n"
          b"* 3 FETCH (BODY[] {5}\r\nabcde BODY[1] {2}\r\n\r\n)\r\n"
          b"+ idling\r\n"
          b"* bye shutting down\r\n"
          b"* 4 EXISTS\r\n"
          b"a1 OK [READ-WRITE] done\r\n"
          b"* 5 FETCH (BODY[] {0}\r\n)\r\n"
          b"a2 NO no\n"
          b"* 6 FETCH (X {2}\r\n}\n)\r\n"
          b"a3 BAD partial")


def _slow(chunks: list[bytes]) -> tuple[list[tuple[bytes, bool]], bool]:
    scanner = LineScanner()
    out: list[tuple[bytes, bool]] = []
    for chunk in chunks:
        out += scanner._feed_slow(chunk)
    return out, scanner.between


def _chunks(cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(STREAM), *(c % (len(STREAM) + 1) for c in cuts)})
    return [STREAM[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_feed_matches_the_plain_scan(cuts: list[int]) -> None:
    chunks = _chunks(cuts)
    expected, between = _slow(chunks)
    scanner = LineScanner()
    out: list[tuple[bytes, bool]] = []
    for chunk in chunks:
        out += scanner.feed(chunk)
    assert out == expected and scanner.between is between


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_heads_are_the_first_lines_the_tracker_reads(cuts: list[int]) -> None:
    chunks = _chunks(cuts)
    expected, _ = _slow(chunks)
    scanner = LineScanner()
    out: list[tuple[bytes, bool]] = []
    for chunk in chunks:
        out += scanner.heads(chunk)
    assert out == [(line, True) for line, first in expected if first and _head(line)]
    assert (b"* BYE x", True) not in out  # inside a literal
    assert (b"* bye shutting down", True) in out and (b"a2 NO no", True) in out
