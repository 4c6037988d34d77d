"""Property tests: hostile input never raises and always yields msgpack-round-trippable metadata."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapd.mime import (
    BodyPart,
    UnknownEncoding,
    decode_metadata,
    decode_part,
    encode_metadata,
    parse_message,
    section_bytes,
    text_contains,
)
from imapd.mime.structure import _parse
from imapd.mime.tree import MAX_PARTS  # the parser without parse_message's last-resort fallback

FRAGMENTS = [
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: multipart/alternative; boundary=\"c\"\n",
    b"Content-Type: multipart/digest; boundary=b\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/plain; charset=utf-8\r\n",
    b"Content-Type: text/html; charset=\"iso-8859-1\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename*0*=utf-8''x; filename*1=y\r\n",
    b"From: A <a@b>, group: c@d;, \"q\\\"\" <@r:e@f>\r\n",
    b"To: (comment (nested)) x@y; ,,\r\n",
    b"Subject: Re: [fwd: =?utf-8?b?4pyT?=] (fwd)\r\n",
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n",
    b"References: <a@b> <c@d\r\n",
    b" folded continuation\r\n",
    b"\r\n",
    b"\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"--c\n",
    b"--c--",
    b"aGVsbG8gd29ybGQ=\r\n",
    b"caf=E9=\r\n",
    b"plain text line\r\n",
    b"\xff\xfe\x00garbage\r\n",
    b"X-\xe9: \xc3\xa9\r\n",
]

messages = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join)
anything = st.one_of(st.binary(max_size=2000), messages)


def _check_tree(raw: bytes, body: BodyPart, prefix: tuple[int, ...]) -> None:
    """Every numbered part exists in section_bytes with the size BODYSTRUCTURE claims."""
    if not prefix and not body.parts:  # a non-multipart message: its body is part 1
        _check_tree(raw, body, (1,))
        return
    if body.parts:
        children = body.parts
    elif body.body is not None:
        children = body.body.parts or [body.body]
    else:
        children = []
    if prefix:
        content = section_bytes(raw, prefix)
        assert content is not None
        assert len(content) == body.size
    if len(prefix) < 6:
        for i, child in enumerate(children, 1):
            _check_tree(raw, child, (*prefix, i))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(anything)
def test_parse_never_raises_and_round_trips(raw: bytes) -> None:
    meta = _parse(raw)
    assert parse_message(raw) == meta
    assert decode_metadata(encode_metadata(meta)) == meta
    assert meta.header_size + meta.body.size == len(raw)
    header, text = section_bytes(raw, (), "HEADER"), section_bytes(raw, (), "TEXT")
    assert header is not None and text is not None and header + text == raw
    _check_tree(raw, meta.body, ())


@settings(max_examples=200, deadline=None)
@given(anything, st.lists(st.integers(min_value=0, max_value=4), max_size=4).map(tuple),
       st.sampled_from(["", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"]))
def test_sections_and_search_never_raise(raw: bytes, part: tuple[int, ...], kind: str) -> None:
    section_bytes(raw, part, kind, ("subject", "from"))  # type: ignore[arg-type]
    with contextlib.suppress(UnknownEncoding):
        decode_part(raw, part)
    text_contains(raw, "café", "TEXT")


HOSTILE = [
    b"Subject: " + b"[a]" * 50_000 + b"\r\n\r\n",
    b"Subject: x" + b"\xc2\xa0" * 100_000 + b"y (fwd)\r\n\r\n",
    b"From: " + b" " * 100_000 + b"x\r\n\r\n",
    b"To: a" + b"\t" * 100_000 + b"<b@c>\r\n\r\n",
    b"Content-Type: text/plain; " + b"a" * 200_000 + b"\r\n\r\n",
    b"Content-Type: text/plain; " + b"a;" * 100_000 + b"b=c\r\n\r\n",
    b"Content-Type: text/plain (" + b"(" * 50_000 + b")" * 50_000 + b"\r\n\r\n",
    b"Subject: " + b"=?" * 100_000 + b"\r\n\r\n",
    b"X: " + b"y" * 500_000 + b"\r\n" + b" z\r\n" * 50_000 + b"\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n" * 200_000,
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--bb\r\n" * 200_000,
]


@pytest.mark.parametrize("raw", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_input_stays_fast(raw: bytes) -> None:
    started = time.perf_counter()
    meta = _parse(raw)
    text_contains(raw, "needle", "TEXT")
    section_bytes(raw, (2,), "MIME")
    assert time.perf_counter() - started < 5.0  # quadratic behaviour would take minutes
    assert decode_metadata(encode_metadata(meta)) == meta


def test_part_count_is_capped() -> None:
    meta = parse_message(HOSTILE[-2])
    assert len(meta.body.parts) == MAX_PARTS - 1
    assert sum(p.size for p in meta.body.parts) < len(HOSTILE[-2])
