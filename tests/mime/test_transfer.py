"""Content-Transfer-Encoding as BINARY undoes it (RFC 2045 6.7) and what a plain literal may carry."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapd.mime import (
    binary_size,
    decode_part,
    decode_quoted_printable,
    literal_safe,
    literal_section,
    section_bytes,
)
from imapd.mime.sections import SectionKind
from imapd.mime.tree import build, resolve
from tests.mime.test_fuzz import FRAGMENTS

QP_CASES: list[tuple[bytes, bytes]] = [
    (b"plain\r\n", b"plain\r\n"),
    (b"trailing blanks  \t\r\nnext", b"trailing blanks\r\nnext"),        # rule 3: transport padding
    (b"soft=\r\nbreak", b"softbreak"),                                   # rule 5
    (b"soft= \t\r\nbreak", b"softbreak"),                                # rule 5 with padding after "="
    (b"soft=\nbreak", b"softbreak"),                                     # bare LF line ends
    (b"last line=", b"last line"),
    (b"caf=E9 =3D =c3=a9\r\n", b"caf\xe9 = \xc3\xa9\r\n"),               # lower-case hex accepted
    (b"a=20\r\n", b"a \r\n"),                                            # an encoded blank is kept
    (b"bad =G1 =4\r\n", b"bad =G1 =4\r\n"),                              # malformed "=" kept (6.7 (2))
    (b"end  ", b"end"),
]


@pytest.mark.parametrize(("encoded", "decoded"), QP_CASES)
def test_quoted_printable(encoded: bytes, decoded: bytes) -> None:
    assert decode_quoted_printable(encoded) == decoded


QP_MESSAGE = (b"From: a@example.org\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
              b"This line is padded with blanks that are not content    \r\n"
              b"and this one= \r\n continues=\r\n.\r\n")


def test_binary_of_a_qp_part() -> None:
    expected = b"This line is padded with blanks that are not content\r\nand this one continues.\r\n"
    assert decode_part(QP_MESSAGE, (1,)) == expected
    assert binary_size(QP_MESSAGE, (1,)) == len(expected)


BLOB = bytes(range(256)) * 2  # holds NUL


def _multipart(blob: bytes, cte: bytes = b"Content-Transfer-Encoding: binary\r\n") -> bytes:
    return (b"From: a@example.org\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
            b"--b\r\nContent-Type: application/octet-stream\r\n" + cte + b"\r\n" + blob + b"\r\n--b--\r\n")


def test_a_part_holding_nul_is_sent_base64_in_body_sections() -> None:
    raw = _multipart(BLOB)
    assert section_bytes(raw, (2,)) == BLOB  # the stored octets
    part = literal_section(raw, (2,))
    assert part is not None and b"\0" not in part
    assert base64.b64decode(part) == BLOB
    assert all(len(line) <= 76 for line in part.split(b"\r\n"))
    # BINARY keeps the octets (they go in a ~{n} literal8).
    assert decode_part(raw, (2,)) == BLOB
    # The whole message and TEXT: the part is re-encoded and says so in its header.
    for whole in (literal_section(raw, ()), literal_safe(raw, 0, len(raw))):
        assert whole is not None and b"\0" not in whole
        assert b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" in whole
        assert b"Content-Transfer-Encoding: binary" not in whole
        assert whole.startswith(raw[: raw.index(b"--b\r\nContent-Type: application")])
    text = literal_section(raw, (), "TEXT")
    assert text is not None and b"\0" not in text and text.endswith(b"\r\n--b--\r\n")


def test_a_part_without_a_cte_header_gets_one() -> None:
    raw = _multipart(BLOB, cte=b"")
    whole = literal_safe(raw, 0, len(raw))
    assert b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" in whole


def test_no_nul_no_change() -> None:
    raw = _multipart(b"8bit \xe9 only")
    assert literal_safe(raw, 0, len(raw)) == raw
    assert literal_section(raw, (2,)) == b"8bit \xe9 only"



_FRAGMENTS = [*FRAGMENTS, b"\x00\x01binary\x00\r\n", b"Content-Transfer-Encoding: binary\r\n"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map(b"".join),
       st.lists(st.integers(min_value=0, max_value=3), max_size=3).map(tuple), st.sampled_from(["", "TEXT"]))
def test_literal_section_never_raises_and_changes_only_parts_holding_nul(raw: bytes, part: tuple[int, ...],
                                                                         kind: SectionKind) -> None:
    out = literal_section(raw, part, kind)
    stored = section_bytes(raw, part, kind)
    assert (out is None) == (stored is None)
    if stored is not None and b"\0" not in stored:
        assert out == stored
    if part and kind == "" and stored is not None:
        node = resolve(build(raw), part)
        assert node is not None
        if not node.children and node.message is None:  # a leaf: what the client gets holds no NUL
            assert out is not None and b"\0" not in out
