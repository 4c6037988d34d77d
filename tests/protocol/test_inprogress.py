"""RFC 9585 INPROGRESS on the wire: the response code with both, one or no numbers (its examples)."""

from __future__ import annotations

import pytest

from imapd.protocol import responses as r
from imapd.protocol.response_codes import Code, InProgressCode
from imapd.protocol.response_parser import parse_response
from imapd.protocol.response_writer import ResponseWriter

CASES = [
    (r.UntaggedStatus("OK", "Searching", InProgressCode("A001", 1000, 5000)),
     b'* OK [INPROGRESS ("A001" 1000 5000)] Searching\r\n'),
    (r.UntaggedStatus("OK", "Still here", InProgressCode("A002", 80, None)),
     b'* OK [INPROGRESS ("A002" 80 NIL)] Still here\r\n'),
    (r.UntaggedStatus("OK", "Hang in there", InProgressCode("a.3", None, None)),
     b'* OK [INPROGRESS ("a.3" NIL NIL)] Hang in there\r\n'),
    (r.UntaggedStatus("OK", "Working", InProgressCode("x", 0, 2**31)), b'* OK [INPROGRESS ("x" 0 2147483648)] Working\r\n'),
]


@pytest.mark.parametrize(("response", "wire"), CASES, ids=[w[:36].decode() for _, w in CASES])
def test_serialize_and_parse(response: r.Response, wire: bytes) -> None:
    assert ResponseWriter().write(response) == wire
    assert parse_response(wire) == response


def test_bare_inprogress_parses_as_a_plain_code() -> None:
    # the grammar makes the parenthesised part optional
    assert parse_response(b"* OK [INPROGRESS] Working\r\n") == r.UntaggedStatus("OK", "Working", Code("INPROGRESS"))
