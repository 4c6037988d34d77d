"""FETCH BODY[section] (RFC 3501 6.4.5) and BINARY (RFC 3516) on raw bytes."""

from __future__ import annotations

import pytest

from imapd.mime import (
    BodyPart,
    SectionKind,
    UnknownEncoding,
    binary_size,
    decode_part,
    parse_message,
    section_bytes,
)
from tests.mime.messages import INNER_MESSAGE, NESTED, lines

INNER_HEADER = INNER_MESSAGE[: INNER_MESSAGE.index(b"\r\n\r\n") + 4]

SECTION_CASES: list[tuple[tuple[int, ...], SectionKind, bytes | None]] = [
    ((), "", NESTED),
    ((), "HEADER", NESTED[: NESTED.index(b"\r\n\r\n") + 4]),
    ((), "TEXT", NESTED[NESTED.index(b"\r\n\r\n") + 4 :]),
    ((), "MIME", None),
    ((1, 1), "", b"Un caf=E9 s'il vous pla=EEt\r\nsecond line"),
    ((1, 1), "MIME", b"Content-Type: text/plain; charset=iso-8859-1\r\n"
                     b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"),
    ((1,), "MIME", b"Content-Type: multipart/alternative; boundary=alt\r\n\r\n"),
    ((2,), "", INNER_MESSAGE[:-2]),
    ((2,), "MIME", b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"),
    ((2,), "HEADER", INNER_HEADER),
    ((2,), "TEXT", INNER_MESSAGE[len(INNER_HEADER) : -2]),
    ((2, 1), "", b"inner plain"),
    ((2, 1), "MIME", b"Content-Type: text/plain; charset=utf-8\r\n\r\n"),
    ((2, 2), "", b"<p>inner html</p>"),
    ((2,), "HEADER.FIELDS", b"Subject: =?utf-8?q?caf=C3=A9?= inside\r\n\r\n"),
    # nonexistent parts, and HEADER/TEXT of parts that are not messages
    ((4,), "", None),
    ((0,), "", None),
    ((1, 3), "", None),
    ((3, 1), "", None),
    ((2, 3), "", None),
    ((2, 1, 1), "", None),
    ((1,), "HEADER", None),
    ((3,), "TEXT", None),
]


@pytest.mark.parametrize(("part", "kind", "expected"), SECTION_CASES)
def test_section_bytes_nested(part: tuple[int, ...], kind: SectionKind, expected: bytes | None) -> None:
    assert section_bytes(NESTED, part, kind, ("SUBJECT",)) == expected


def test_header_fields_keep_folding_order_and_case() -> None:
    got = section_bytes(NESTED, (), "HEADER.FIELDS", ("references", "FROM", "x-absent"))
    assert got == (b"From: \"Alice A.\" <alice@example.com>\r\n"
                   b"References: <root@example.com>\r\n  <parent@example.com>\r\n\r\n")
    assert section_bytes(NESTED, (), "HEADER.FIELDS", ()) == b"\r\n"
    not_fields = section_bytes(NESTED, (), "HEADER.FIELDS.NOT", ("From", "To", "Subject", "Date",
                                                                  "Message-ID", "In-Reply-To", "MIME-Version"))
    assert not_fields == (b"References: <root@example.com>\r\n  <parent@example.com>\r\n"
                          b"Content-Type: multipart/mixed; boundary=\"outer==\"\r\n\r\n")


def test_header_fields_of_unterminated_header_gets_line_break() -> None:
    assert section_bytes(b"Subject: hi", (), "HEADER.FIELDS", ("subject",)) == b"Subject: hi\r\n\r\n"


def _leaves(body: BodyPart, prefix: tuple[int, ...]) -> list[tuple[tuple[int, ...], BodyPart]]:
    """Part numbers of every non-multipart part, encapsulated messages included (RFC 3501 numbering)."""
    if body.parts:
        children = body.parts
        found = []
    elif body.body is not None:
        children = body.body.parts or [body.body]
        found = [(prefix, body)]
    else:
        return [(prefix, body)]
    return found + [leaf for i, child in enumerate(children, 1) for leaf in _leaves(child, (*prefix, i))]


def test_sizes_agree_with_sections_and_sum() -> None:
    meta = parse_message(NESTED)
    header = section_bytes(NESTED, (), "HEADER")
    text = section_bytes(NESTED, (), "TEXT")
    assert header is not None and text is not None
    assert len(header) == meta.header_size
    assert header + text == NESTED
    leaves = _leaves(meta.body, ())
    assert [p for p, _ in leaves] == [(1, 1), (1, 2), (2,), (2, 1), (2, 2), (3,)]
    for part, body in leaves:
        content = section_bytes(NESTED, part)
        mime = section_bytes(NESTED, part, "MIME")
        assert content is not None and mime is not None
        assert len(content) == body.size, part
        assert mime + content in NESTED
    inner_header = section_bytes(NESTED, (2,), "HEADER")
    inner_text = section_bytes(NESTED, (2,), "TEXT")
    assert inner_header is not None and inner_text is not None
    assert inner_header + inner_text == section_bytes(NESTED, (2,))


def test_single_part_message_numbering() -> None:
    raw = lines("Subject: s", "Content-Type: text/plain", "", "body")
    assert section_bytes(raw, (1,)) == b"body\r\n"
    assert section_bytes(raw, (1,), "MIME") == lines("Subject: s", "Content-Type: text/plain", "")
    assert section_bytes(raw, (2,)) is None
    assert section_bytes(raw, (1, 1)) is None
    assert section_bytes(raw, (1,), "HEADER") is None


def test_top_level_message_rfc822() -> None:
    raw = lines("Content-Type: message/rfc822", "", "Subject: inner", "", "inner body")
    assert section_bytes(raw, (1,), "HEADER") == b"Subject: inner\r\n\r\n"
    assert section_bytes(raw, (1,), "TEXT") == b"inner body\r\n"
    assert section_bytes(raw, (1, 1)) == b"inner body\r\n"
    meta = parse_message(raw)
    assert meta.body.envelope is not None and meta.body.envelope.subject == "inner"


def test_binary_decodes_base64_and_quoted_printable() -> None:
    assert decode_part(NESTED, (1, 1)) == "Un café s'il vous plaît\r\nsecond line".encode("latin-1")
    assert decode_part(NESTED, (1, 2)) == "<p>Un café</p>".encode()
    assert decode_part(NESTED, (3,)) == bytes(range(256)) * 4
    assert binary_size(NESTED, (3,)) == 1024
    assert decode_part(NESTED, (2, 1)) == b"inner plain"
    assert decode_part(NESTED, (2,)) == INNER_MESSAGE[:-2]  # encapsulated message as is
    assert decode_part(NESTED, (1,)) == section_bytes(NESTED, (1,))  # multipart as is
    assert decode_part(NESTED, ()) == NESTED
    assert decode_part(NESTED, (9,)) is None
    assert binary_size(NESTED, (9,)) is None


def test_binary_soft_breaks_and_bad_padding() -> None:
    raw = lines("Content-Type: multipart/mixed; boundary=b", "", "--b",
                "Content-Transfer-Encoding: Quoted-Printable", "", "soft=", "break=3D", "--b",
                "Content-Transfer-Encoding: base64", "", "aGVsbG8", "--b--")
    assert decode_part(raw, (1,)) == b"softbreak="
    assert decode_part(raw, (2,)) == b"hello"


def test_binary_unknown_encoding() -> None:
    raw = lines("Content-Transfer-Encoding: x-uuencode", "", "begin 644 f")
    with pytest.raises(UnknownEncoding) as info:
        decode_part(raw, (1,))
    assert info.value.encoding == "X-UUENCODE"
    assert info.value.response_code == "UNKNOWN-CTE"
    with pytest.raises(UnknownEncoding):
        binary_size(raw, (1,))
