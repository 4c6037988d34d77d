"""The full-text index never changes a SEARCH answer: index answer == scan answer (property tests).

Real store, real message files: each example builds a mailbox from generated messages (some delivered
by a "foreign" writer straight into ``new/``, so the index lacks them until the backfill runs), then
runs the same keys with the index (``Store.fts``) and without, and the answers must be equal.
"""

from __future__ import annotations

import base64
import itertools
import os
import quopri
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapd.mime import search_document
from imapd.mime.search import _header_text
from imapd.mime.tree import build
from imapd.protocol.search_keys import SearchHeader, SearchKey, SearchNot, SearchOr, SearchText
from imapd.session.search import search
from imapd.store import Mailbox, Store
from imapd.store import fts as fts_module

ALPHABET = "abcXYZ \u00e4\u00f6\u00df\u00e9\u0130\u03a3\u03c2\u0444\u4e2d\U0001f600-.:<>@"
words = st.text(alphabet=ALPHABET, min_size=0, max_size=12)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    subject = draw(words)
    name = draw(words)
    tag = draw(words)
    body = draw(st.text(alphabet=ALPHABET + "\n", max_size=60))
    enc_subject = "=?utf-8?b?" + base64.b64encode(subject.encode()).decode() + "?=" if draw(st.booleans()) else subject
    lines = [f"From: =?utf-8?q?{quopri.encodestring(name.encode(), header=True).decode()}?= <u@ex.org>",
             f"To: {draw(words)} <t@ex.org>", f"Subject: {enc_subject}", f"X-Tag: {tag}"]
    if draw(st.booleans()):
        lines.append(f"Cc: {draw(words)} <c@ex.org>")
    kind = draw(st.sampled_from(["utf8-8bit", "latin1-qp", "utf8-b64", "multipart"]))
    if kind == "utf8-8bit":
        head = ["Content-Type: text/plain; charset=utf-8"]
        payload = body.encode()
    elif kind == "latin1-qp":
        head = ["Content-Type: text/plain; charset=iso-8859-1", "Content-Transfer-Encoding: quoted-printable"]
        payload = quopri.encodestring(body.encode("latin-1", "replace"))
    elif kind == "utf8-b64":
        head = ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"]
        payload = base64.encodebytes(body.encode())
    else:
        second = draw(st.text(alphabet=ALPHABET, max_size=20))
        head = ['Content-Type: multipart/mixed; boundary="b1"']
        payload = (b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body.encode()
                   + b"\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>" + second.encode()
                   + b"</p>\r\n--b1--\r\n")
    header = "\r\n".join(lines + head).encode()
    return header + b"\r\n\r\n" + payload.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _texts(raw: bytes) -> list[str]:
    """Texts a needle can be cut from: the header as TEXT sees it (across field boundaries), the bodies,
    and strings across the boundaries of parts and of header and body (which must match nothing more)."""
    root = build(raw)
    doc = search_document(raw, _envelope(raw))
    header = _header_text(root.header)
    crossing = ["".join(doc.body), " ".join(doc.body), "\n".join(doc.body), header + "".join(doc.body)]
    return [header, *doc.body, *(t for t in doc.envelope if t), *crossing]


def _envelope(raw: bytes):  # type: ignore[no-untyped-def]
    from imapd.mime import parse_message

    return parse_message(raw).envelope


@st.composite
def needles(draw: st.DrawFn, raws: list[bytes]) -> str:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.text(alphabet=ALPHABET, max_size=4))  # short and random, often under 3
    text = draw(st.sampled_from(_texts(draw(st.sampled_from(raws))) or [""]))
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 12)))
    cut = text[start:end]
    return cut.upper() if choice == 2 else cut.swapcase() if choice == 3 else cut


FIELDS = ["SUBJECT", "FROM", "TO", "CC", "BCC", "BODY", "TEXT"]
HEADERS = ["X-Tag", "Subject", "From", "Content-Type", "Reply-To", "Message-ID"]


@st.composite
def keys(draw: st.DrawFn, raws: list[bytes]) -> SearchKey:
    needle = draw(needles(raws))
    if draw(st.booleans()):
        key: SearchKey = SearchText(draw(st.sampled_from(FIELDS)), needle)
    else:
        key = SearchHeader(draw(st.sampled_from(HEADERS)), needle)
    shape = draw(st.integers(0, 3))
    if shape == 1:
        return SearchNot(key)
    if shape == 2:
        return SearchOr(key, SearchText(draw(st.sampled_from(FIELDS)), draw(needles(raws))))
    return key


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    st_ = Store(Path(tmp_path_factory.mktemp("fts")) / "data", durability="off")
    st_.create_user("prop")
    yield st_
    st_.close()


_names = itertools.count()


def _fill(store: Store, raws: list[bytes], foreign: list[bool]) -> Mailbox:
    us = store.user("prop")
    name = f"P{next(_names)}"
    us.create_mailbox(name)
    mb = us.open(name)
    for i, (raw, outside) in enumerate(zip(raws, foreign, strict=True)):
        if outside:  # a foreign writer: straight into new/, found by the reconcile, not indexed
            with open(os.path.join(mb.path, "new", f"17000000{i:02d}.M1P1.host"), "wb") as f:
                f.write(raw)
            mb.sync()
        else:
            mb.append(raw)
    return mb


def _both(store: Store, mb: Mailbox, key: SearchKey) -> tuple[list[int], list[int]]:
    uids = mb.uids()
    store.fts = True
    indexed = search(mb, uids, key)
    store.fts = False
    scanned = search(mb, uids, key)
    store.fts = True
    return indexed, scanned


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_index_answer_equals_scan_answer(store: Store, data: st.DataObject) -> None:
    raws = data.draw(st.lists(messages(), min_size=1, max_size=6))
    foreign = data.draw(st.lists(st.booleans(), min_size=len(raws), max_size=len(raws)))
    mb = _fill(store, raws, foreign)
    try:
        for _ in range(8):
            key = data.draw(keys(raws))
            indexed, scanned = _both(store, mb, key)
            assert indexed == scanned, key
        # the backfill indexes what the foreign writer delivered; the answers stay the same
        mb._owner.texts.backfill(mb.mailbox_id, 10.0)
        assert not mb.text_unanswered("abc")
        for _ in range(4):
            key = data.draw(keys(raws))
            indexed, scanned = _both(store, mb, key)
            assert indexed == scanned, key
    finally:
        mb.release()


def test_needles_the_index_cannot_hold_are_scanned(store: Store) -> None:
    mb = _fill(store, [b"Subject: a\xef\xbf\xbfb\r\n\r\nnul \x00 inside\r\n"], [False])
    try:
        assert mb.text_unanswered("a\uffffb") is None  # the separator: never looked up
        assert mb.text_unanswered("x") == {1}  # a NUL in the text: the message is scanned, not indexed
        for key in (SearchText("SUBJECT", "a\uffffb"), SearchText("BODY", "nul"), SearchText("BODY", "inside")):
            assert _both(store, mb, key) == ([1], [1])
    finally:
        mb.release()


def test_envelope_columns_line_up() -> None:
    """imapd.mime.ENVELOPE_TEXTS[i] is stored in fts.ENVELOPE_COLUMNS[i]; search.py maps the same pairs."""
    from imapd.mime import ENVELOPE_TEXTS
    from imapd.session.search import _TEXT_COLUMNS

    assert dict(zip(ENVELOPE_TEXTS, fts_module.ENVELOPE_COLUMNS, strict=True)) == _TEXT_COLUMNS
