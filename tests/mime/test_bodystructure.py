"""BODYSTRUCTURE shapes and exact part sizes (RFC 3501 7.4.2, RFC 2046 boundaries)."""

from __future__ import annotations

import base64

import pytest

from imapd.mime import Address, BodyPart, Disposition, decode_metadata, encode_metadata, parse_message
from imapd.mime.tree import MAX_DEPTH
from tests.mime.messages import ATTACHMENT, INNER_MESSAGE, NESTED, RFC3501_HEADER, lines


def test_rfc3501_single_part_shape() -> None:
    body = b"".join(b"line %d\r\n" % i for i in range(92))
    meta = parse_message(RFC3501_HEADER + body)
    assert meta.body == BodyPart("TEXT", "PLAIN", [("CHARSET", "US-ASCII")], None, None, "7BIT", len(body), 92)
    assert meta.body.md5 is None
    assert meta.header_size == len(RFC3501_HEADER)


def test_rfc3501_multipart_shape() -> None:
    text = b"x" * 50 + b"\r\n" + b"y" * 20 + b"\r\n"
    diff = base64.encodebytes(b"diff" * 300).replace(b"\n", b"\r\n")
    raw = lines("MIME-Version: 1.0", "Content-Type: MULTIPART/MIXED; BOUNDARY=\"b\"", "", "--b",
                "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII", "") + text + lines(
        "--b",
        "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff",
        "Content-ID: <960723163407.20117h@cac.washington.edu>",
        "Content-Description: Compiler diff",
        "Content-Transfer-Encoding: BASE64",
        "",
    ) + diff + lines("--b--")
    body = parse_message(raw).body
    assert body.type == "MULTIPART" and body.subtype == "MIXED" and body.params == [("BOUNDARY", "b")]
    # The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1).
    assert body.parts[0] == BodyPart("TEXT", "PLAIN", [("CHARSET", "US-ASCII")], None, None, "7BIT",
                                     len(text) - 2, 2)
    assert body.parts[1] == BodyPart(
        "TEXT", "PLAIN", [("CHARSET", "US-ASCII"), ("NAME", "cc.diff")],
        "<960723163407.20117h@cac.washington.edu>", "Compiler diff", "BASE64", len(diff) - 2,
        diff.count(b"\n"),
    )


def test_nested_mixed_alternative_and_message() -> None:
    meta = parse_message(NESTED)
    mixed = meta.body
    assert [(p.type, p.subtype) for p in mixed.parts] == [
        ("MULTIPART", "ALTERNATIVE"), ("MESSAGE", "RFC822"), ("APPLICATION", "OCTET-STREAM")]
    alt, msg, att = mixed.parts
    assert [(p.subtype, p.encoding, p.params) for p in alt.parts] == [
        ("PLAIN", "QUOTED-PRINTABLE", [("CHARSET", "iso-8859-1")]),
        ("HTML", "BASE64", [("CHARSET", "utf-8")]),
    ]
    assert alt.parts[0].size == len(b"Un caf=E9 s'il vous pla=EEt\r\nsecond line") and alt.parts[0].lines == 2
    # message/rfc822: envelope + body + lines of the encapsulated message
    assert msg.size == len(INNER_MESSAGE) - 2
    assert msg.lines == INNER_MESSAGE.count(b"\n")  # last line unterminated inside the part: counted once
    assert msg.disposition == Disposition("INLINE", [])
    assert msg.envelope is not None and msg.envelope.subject == "=?utf-8?q?caf=C3=A9?= inside"
    assert msg.envelope.message_id == "<inner@example.org>"
    assert msg.body is not None and msg.body.subtype == "ALTERNATIVE"
    assert [(p.subtype, p.size, p.lines) for p in msg.body.parts] == [("PLAIN", 11, 1), ("HTML", 17, 1)]
    assert att.size == len(ATTACHMENT) - 2
    assert att.lines is None
    assert att.id == "<att1@example.com>" and att.description == "some bytes"
    assert att.disposition == Disposition("ATTACHMENT", [("FILENAME", "data.bin")])
    assert att.language == ["en", "fr"]
    assert att.location == "http://example.com/data.bin"
    assert decode_metadata(encode_metadata(meta)) == meta


def test_missing_final_boundary() -> None:
    raw = lines("Content-Type: multipart/mixed; boundary=zz", "", "--zz", "", "first", "--zz",
                "Content-Type: text/html", "") + b"<p>unterminated"
    body = parse_message(raw).body
    assert [(p.subtype, p.size) for p in body.parts] == [("PLAIN", 5), ("HTML", len(b"<p>unterminated"))]
    assert body.parts[1].lines == 1


def test_bare_lf_message() -> None:
    raw = (b"From: a@b\nSubject: lf\nContent-Type: multipart/mixed; boundary=q\n\n"
           b"--q\nContent-Type: text/plain\n\none\ntwo\n--q\n\nthree\n--q--\n")
    meta = parse_message(raw)
    assert meta.header_size == raw.index(b"\n\n") + 2
    assert meta.envelope.subject == "lf"
    assert [(p.size, p.lines) for p in meta.body.parts] == [(7, 2), (5, 1)]


def test_boundary_prefix_and_trailing_whitespace() -> None:
    raw = lines("Content-Type: multipart/mixed; boundary=b", "", "--b \t", "", "keep --bXYZ inside",
                "--bXYZ", "still part one", "--b--  ", "epilogue")
    body = parse_message(raw).body
    assert len(body.parts) == 1
    assert body.parts[0].size == len(b"keep --bXYZ inside\r\n--bXYZ\r\nstill part one")


def test_eight_bit_garbage_headers() -> None:
    raw = (b"Subject: \xff\xfe caf\xe9\r\nFrom: \xc3\xa9\xff <x@y>\r\nX-\xe9t\xe9: v\r\n"
           b"Content-Type: text/plain; charset=\"\xe9\"\r\n\r\nbody")
    meta = parse_message(raw)
    assert meta.envelope.subject == "\xff\xfe caf\xe9"
    assert meta.envelope.from_ == [Address("\xc3\xa9\xff", None, "x", "y")]
    assert meta.body.params == [("CHARSET", "\xe9")]
    assert meta.body.size == 4
    assert decode_metadata(encode_metadata(meta)) == meta


@pytest.mark.parametrize(
    ("raw", "header_size", "size"),
    [
        (b"", 0, 0),
        (b"\r\n", 2, 0),
        (b"Subject: only a header", 22, 0),
        (b"Subject: x\r\n", 12, 0),
        (b"no header line at all\r\nsecond", 0, 29),
        (b"\x00\x01\x02garbage\xff", 0, 11),
    ],
)
def test_degenerate_messages(raw: bytes, header_size: int, size: int) -> None:
    meta = parse_message(raw)
    assert (meta.header_size, meta.body.size) == (header_size, size)
    assert meta.header_size + meta.body.size == len(raw)
    assert (meta.body.type, meta.body.subtype) == ("TEXT", "PLAIN")
    assert meta.body.params == [("CHARSET", "US-ASCII")]


@pytest.mark.parametrize(
    "content_type",
    ["multipart/mixed", "multipart/mixed; boundary=", "garbage", "text", "/plain", "te xt/plain"],
)
def test_invalid_content_type_reads_as_text_plain(content_type: str) -> None:
    body = parse_message(f"Content-Type: {content_type}\r\n\r\nhello\r\n".encode()).body
    assert (body.type, body.subtype, body.size, body.lines) == ("TEXT", "PLAIN", 7, 1)


def test_multipart_without_delimiters_keeps_text_reachable() -> None:
    body = parse_message(b"Content-Type: multipart/mixed; boundary=nope\r\n\r\njust text\r\n").body
    assert body.type == "MULTIPART"
    assert [(p.type, p.size) for p in body.parts] == [("TEXT", 11)]


def test_digest_default_is_message_rfc822() -> None:
    raw = lines("Content-Type: multipart/digest; boundary=d", "", "--d", "", "Subject: one", "", "1",
                "--d", "Content-Type: text/plain", "", "2", "--d--")
    body = parse_message(raw).body
    first, second = body.parts
    assert (first.type, first.subtype) == ("MESSAGE", "RFC822")
    assert first.envelope is not None and first.envelope.subject == "one"
    assert (second.type, second.subtype) == ("TEXT", "PLAIN")


def test_one_megabyte_base64_attachment_size_is_exact() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    raw = lines("Content-Type: multipart/mixed; boundary=big", "", "--big", "", "see attached", "--big",
                "Content-Type: application/zip", "Content-Transfer-Encoding: base64", "") + encoded + lines("--big--")
    body = parse_message(raw).body
    assert body.parts[1].size == len(encoded) - 2
    assert body.parts[1].encoding == "BASE64"


def test_deep_nesting_is_bounded() -> None:
    depth = MAX_DEPTH + 20
    raw = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth))
    raw += b"\r\nleaf\r\n"
    meta = parse_message(raw)
    node, seen = meta.body, 0
    while node.parts:
        node, seen = node.parts[0], seen + 1
    assert seen == MAX_DEPTH
    assert (node.type, node.subtype) == ("APPLICATION", "OCTET-STREAM")
    assert decode_metadata(encode_metadata(meta)) == meta


def test_deep_message_nesting_is_bounded() -> None:
    raw = b"Content-Type: message/rfc822\r\n\r\n" * (MAX_DEPTH + 20) + b"\r\nleaf"
    meta = parse_message(raw)
    assert decode_metadata(encode_metadata(meta)) == meta


def test_content_md5_is_body_fld_md5() -> None:
    """RFC 3501 7.4.2: body-fld-md5 is the part's Content-MD5 value (it was always NIL; the differential
    check against Dovecot found it). Multiparts have no MD5 field; a cached row without it decodes as NIL."""
    raw = lines("Content-Type: multipart/mixed; boundary=b", "", "--b", "Content-Type: text/plain",
                "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==", "", "hello", "--b--")
    meta = parse_message(raw)
    assert meta.body.parts[0].md5 == "Q2hlY2sgSW50ZWdyaXR5IQ=="
    assert meta.body.md5 is None
    assert decode_metadata(encode_metadata(meta)) == meta
