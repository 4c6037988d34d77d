"""ENVELOPE and address parsing (RFC 3501 7.4.2), plus the SORT/THREAD keys taken from the header."""

from __future__ import annotations

import pytest

from imapd.mime import Address, parse_addresses, parse_message
from tests.mime.messages import NESTED, RFC3501_HEADER

GROUP_END = Address(None, None, None, None)


def test_rfc3501_example_envelope() -> None:
    env = parse_message(RFC3501_HEADER + b"body\r\n").envelope
    gray = [Address("Terry Gray", None, "gray", "cac.washington.edu")]
    assert env.date == "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)"
    assert env.subject == "IMAP4rev1 WG mtg summary and minutes"
    assert env.from_ == gray
    assert env.sender == gray  # defaults to From
    assert env.reply_to == gray
    assert env.to == [Address(None, None, "imap", "cac.washington.edu")]
    assert env.cc == [
        Address(None, None, "minutes", "CNRI.Reston.VA.US"),
        Address("John Klensin", None, "KLENSIN", "MIT.EDU"),
    ]
    assert env.bcc is None
    assert env.in_reply_to is None
    assert env.message_id == "<B27397-0100000@cac.washington.edu>"


ADDRESS_CASES = [
    ("a@b.c", [Address(None, None, "a", "b.c")]),
    ("Bob <bob@x.net>, carol@y.org", [Address("Bob", None, "bob", "x.net"), Address(None, None, "carol", "y.org")]),
    ('"Doe, John" <j@d.com>', [Address("Doe, John", None, "j", "d.com")]),
    ('"quoted \\"q\\"" <q@d>', [Address('quoted "q"', None, "q", "d")]),
    ("John Q. Public <JQB@bar.com>", [Address("John Q. Public", None, "JQB", "bar.com")]),
    ("jdoe@example.org (John Doe)", [Address("John Doe", None, "jdoe", "example.org")]),
    ("<@route1,@route2:user@host>", [Address(None, "@route1,@route2", "user", "host")]),
    ('"john doe"@example.com', [Address(None, None, "john doe", "example.com")]),
    ("user@[192.0.2.1]", [Address(None, None, "user", "[192.0.2.1]")]),
    ("undisclosed-recipients:;", [Address(None, None, "undisclosed-recipients", None), GROUP_END]),
    (
        "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
        [
            Address(None, None, "A Group", None),
            Address("Ed Jones", None, "c", "a.test"),
            Address(None, None, "joe", "where.test"),
            Address("John", None, "jdoe", "one.test"),
            GROUP_END,
        ],
    ),
    (
        "friends: a@x, b@y; Solo <s@z>",
        [Address(None, None, "friends", None), Address(None, None, "a", "x"), Address(None, None, "b", "y"),
         GROUP_END, Address("Solo", None, "s", "z")],
    ),
    ("open group: a@x", [Address(None, None, "open group", None), Address(None, None, "a", "x"), GROUP_END]),
    ("a@x; b@y", [Address(None, None, "a", "x"), Address(None, None, "b", "y")]),  # Outlook separator
    ("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", [Address("Pete", None, "pete", "silly.test")]),
    ("nobody", [Address(None, None, "nobody", "MISSING_DOMAIN")]),
    ("Broken <a@b", [Address("Broken", None, "a", "b")]),
    ("=?utf-8?q?Dani=C3=A8le?= <d@f.fr>", [Address("=?utf-8?q?Dani=C3=A8le?=", None, "d", "f.fr")]),  # raw
    ("Ünïcödé <u@x>", [Address("Ünïcödé", None, "u", "x")]),
    ("", None),
    (" , ,", None),
]


@pytest.mark.parametrize(("value", "expected"), ADDRESS_CASES)
def test_parse_addresses(value: str, expected: list[Address] | None) -> None:
    assert parse_addresses(value) == expected


def test_group_in_envelope_and_sort_keys() -> None:
    meta = parse_message(NESTED)
    assert meta.envelope.to == [
        Address("Bob", None, "bob", "example.net"),
        Address(None, None, "undisclosed", None),
        GROUP_END,
    ]
    assert meta.envelope.from_ == [Address("Alice A.", None, "alice", "example.com")]
    assert meta.from_mailbox == "alice"
    assert meta.from_display == "Alice A."
    assert meta.to_mailbox == "bob"
    assert meta.to_display == "Bob"
    assert meta.cc_mailbox == ""
    assert meta.message_id == "<outer@example.com>"
    assert meta.in_reply_to == ["<parent@example.com>"]
    assert meta.references == ["<root@example.com>", "<parent@example.com>"]
    assert meta.date == 1704103200


def test_sort_keys_of_a_leading_group_are_its_name_and_display_is_decoded() -> None:
    # RFC 5256 / RFC 5957 take the first address of the envelope: with group syntax, the group (issue 17).
    raw = (b"From: =?iso-8859-1?q?Andr=E9?= <Andre@Example.COM>\r\n"
           b"To: team: First <FIRST@x.org>, s@x.org;\r\n"
           b"Cc: group: a@b.example;\r\n\r\n")
    meta = parse_message(raw)
    assert meta.from_mailbox == "andre"
    assert meta.from_display == "André"
    assert meta.to_mailbox == "team"
    assert meta.to_display == "team"
    assert meta.cc_mailbox == "group"
    assert parse_message(b"Cc: <CC@y>\r\n\r\n").cc_mailbox == "cc"
    no_name = parse_message(b"From: plain@Example.com\r\n\r\n")
    assert no_name.from_display == "plain@Example.com"


def test_envelope_strings_are_raw_unfolded_and_8bit_safe() -> None:
    raw = (b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\tfolded \xe9t\xe9\r\n"
           b"Message-ID: <x@y>\r\nIn-Reply-To: <p@q> (comment)\r\n\r\n")
    env = parse_message(raw).envelope
    assert env.subject == "=?utf-8?q?caf=C3=A9?=\tfolded \xe9t\xe9"  # latin-1 fallback, one char per byte
    assert env.in_reply_to == "<p@q> (comment)"
    utf8 = parse_message("Subject: été\r\n\r\n".encode()).envelope
    assert utf8.subject == "été"


def test_missing_headers_give_nil() -> None:
    env = parse_message(b"\r\nbody only\r\n").envelope
    assert env == type(env)(None, None, None, None, None, None, None, None, None, None)


@pytest.mark.parametrize(
    ("date", "epoch"),
    [
        ("Mon, 1 Jan 2024 10:00:00 +0000", 1704103200),
        ("1 Jan 2024 12:00:00 +0200", 1704103200),
        ("Mon, 1 Jan 2024 10:00:00 GMT", 1704103200),
        ("Mon, 1 Jan 24 10:00:00 -0000", 1704103200),
        ("not a date", None),
        ("Mon, 99 Foo 2024 99:99:99 +9999", None),
    ],
)
def test_date_epoch(date: str, epoch: int | None) -> None:
    assert parse_message(f"Date: {date}\r\n\r\n".encode()).date == epoch
