"""SEARCH helpers: decoded header values, BODY/TEXT substring tests, Date parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from imapd.mime import SearchWhere, header_date, header_values, text_contains
from tests.mime.messages import NESTED, lines

BODY_CASES: list[tuple[str, SearchWhere, bool]] = [
    ("café", "BODY", True),  # QP latin-1 (1.1) and base64 utf-8 (1.2)
    ("CAFÉ S'IL", "BODY", True),  # case-insensitive, QP decoded
    ("plaît", "BODY", True),
    ("<p>un café</p>", "BODY", True),  # base64 html part
    ("inner html", "BODY", True),  # inside the encapsulated message
    ("Inner Sender", "BODY", True),  # header of the encapsulated message is body text
    ("café inside", "BODY", True),  # ... RFC 2047-decoded
    ("preamble", "BODY", False),  # preamble and epilogue are not text
    ("Alice A.", "BODY", False),  # top-level header: only for TEXT
    ("Alice A.", "TEXT", True),
    ("re: nested", "TEXT", True),
    ("absent words", "TEXT", False),
    ("", "BODY", True),
]


@pytest.mark.parametrize(("needle", "where", "found"), BODY_CASES)
def test_text_contains(needle: str, where: SearchWhere, found: bool) -> None:
    assert text_contains(NESTED, needle, where) is found


def test_text_contains_charsets() -> None:
    latin1 = lines("Content-Type: text/plain; charset=iso-8859-1", "") + "une tasse de café\r\n".encode("latin-1")
    assert text_contains(latin1, "CAFÉ")
    unlabelled = lines("Content-Type: text/plain", "") + "café".encode()
    assert text_contains(unlabelled, "café")
    unknown = lines("Content-Type: text/plain; charset=x-nope", "") + "caf\xe9".encode("latin-1")
    assert text_contains(unknown, "café")
    binary = lines("Content-Type: application/octet-stream", "", "café")
    assert not text_contains(binary, "café")
    uu = lines("Content-Transfer-Encoding: x-uuencode", "", "café")
    assert text_contains(uu, "café")  # unknown CTE: the raw text is searched


def test_header_values() -> None:
    raw = lines("Received: one", "Subject: =?utf-8?q?caf=C3=A9?=", "\tcr=?utf-8?q?=C3=A8?=me",
                "received: two", "", "Received: in body")
    assert header_values(raw, "RECEIVED") == ["one", "two"]
    assert header_values(raw, "subject") == ["café\tcrème"]
    assert header_values(raw, "x-none") == []
    header_only = raw[: raw.index(b"\r\n\r\n") + 2]
    assert header_values(header_only, "received") == ["one", "two"]
    assert header_values(b"Subject: \xe9t\xe9\r\n", "subject") == ["\xe9t\xe9"]
    assert header_values(b"Subject: =?bogus?q?x=FF?=\r\n", "subject") == ["x\xff"]


def test_header_date() -> None:
    assert header_date(NESTED) == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    got = header_date(b"Date: Tue, 2 Jan 2024 03:04:05 +0130\r\n\r\n")
    assert got == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1, minutes=30)))
    assert header_date(b"Subject: none\r\n\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n") is None
    assert header_date(b"Date: yesterday\r\n\r\n") is None
