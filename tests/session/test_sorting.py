"""SORT over cached metadata: RFC 5256 keys and tie rules, RFC 5957 DISPLAYFROM/DISPLAYTO, speed."""

from __future__ import annotations

import random
import time

import pytest

from imapd.mime import BodyPart, Envelope, MessageMetadata, parse_message
from imapd.protocol.commands import SortKey
from imapd.session.sorting import SortRow, UnknownSortKey, casemap, sort_messages

BASE = 1_700_000_000


def row(uid: int, *, subject: str = "x", date: str | None = None, internaldate: int = BASE, size: int = 100,
        from_: str | None = None, to: str | None = None, cc: str | None = None) -> SortRow:
    lines = [f"Subject: {subject}"]
    for name, value in (("Date", date), ("From", from_), ("To", to), ("Cc", cc)):
        if value is not None:
            lines.append(f"{name}: {value}")
    raw = ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()
    return SortRow(number=uid, uid=uid, internaldate=internaldate, size=size, meta=parse_message(raw))


def keys(*spec: str) -> list[SortKey]:
    """``keys("SUBJECT", "-DATE")``: a leading ``-`` is REVERSE."""
    return [SortKey(s.lstrip("-"), s.startswith("-")) for s in spec]


def test_single_keys() -> None:
    rows = [
        row(1, subject="Re: banana", date="Mon, 01 Jan 2024 12:00:00 +0000", internaldate=BASE + 3, size=30,
            from_="Zed <zed@x>", to="carol@x", cc="Bob <bob@x>"),
        row(2, subject="apple", date="Mon, 01 Jan 2024 10:00:00 +0000", internaldate=BASE + 1, size=10,
            from_="alice@x", to="Dave <dave@x>"),
        row(3, subject="[list] Cherry", date="Mon, 01 Jan 2024 11:00:00 +0000", internaldate=BASE + 2, size=20,
            from_="Bob <BOB@x>", to="alice@x", cc="Alice <al@x>"),
    ]
    assert sort_messages(rows, keys("ARRIVAL")) == [2, 3, 1]
    assert sort_messages(rows, keys("DATE")) == [2, 3, 1]
    assert sort_messages(rows, keys("SIZE")) == [2, 3, 1]
    assert sort_messages(rows, keys("SUBJECT")) == [2, 1, 3]  # apple, banana, cherry
    assert sort_messages(rows, keys("FROM")) == [2, 3, 1]  # alice, bob, zed
    assert sort_messages(rows, keys("TO")) == [3, 1, 2]  # alice, carol, dave
    assert sort_messages(rows, keys("CC")) == [2, 3, 1]  # "" (none) first, then al, bob
    assert sort_messages(rows, keys("DISPLAYFROM")) == [2, 3, 1]  # alice@x, Bob, Zed
    assert sort_messages(rows, keys("DISPLAYTO")) == [3, 1, 2]  # alice@x, carol@x, Dave
    assert sort_messages(rows, keys("-SIZE")) == [1, 3, 2]
    assert sort_messages([], keys("DATE")) == []


def test_displayfrom_uses_display_name_then_addr_spec() -> None:
    # RFC 5957: the display name when there is one (RFC 2047-decoded), else the addr-spec; the local part
    # (FROM) orders these differently.
    rows = [
        row(1, from_="zack@example.com"),
        row(2, from_="=?utf-8?q?=C3=89mile?= <aaa@example.com>"),
        row(3, from_="Bertha <yyy@example.com>"),
        row(4),  # no From: the empty string, first
    ]
    # i;ascii-casemap (RFC 5256 3): "", BERTHA, ZACK@..., then ÉMILE (a non-ASCII octet sorts after letters)
    assert sort_messages(rows, keys("DISPLAYFROM")) == [4, 3, 1, 2]
    assert sort_messages(rows, keys("FROM")) == [4, 2, 3, 1]  # "", aaa, yyy, zack


def test_multi_key_with_reverse_on_one_key_and_ties_to_sequence() -> None:
    day1 = "Mon, 01 Jan 2024 10:00:00 +0000"
    day2 = "Tue, 02 Jan 2024 10:00:00 +0000"
    rows = [
        row(1, subject="b", date=day1),
        row(2, subject="a", date=day1),
        row(3, subject="b", date=day2),
        row(4, subject="a", date=day2),
        row(5, subject="a", date=day1),
        row(6, subject="Re: b", date=day2),
    ]
    # SUBJECT ascending, then newest first; equal on both: sequence ascending (5 after 2, 6 after 3)
    assert sort_messages(rows, keys("SUBJECT", "-DATE")) == [4, 2, 5, 3, 6, 1]
    # REVERSE SUBJECT does not reverse the implicit sequence order
    assert sort_messages(rows, keys("-SUBJECT")) == [1, 3, 6, 2, 4, 5]
    assert sort_messages(rows, keys("-SUBJECT", "DATE")) == [1, 3, 6, 2, 5, 4]
    # numbers first and strings in mixed directions in one request
    assert sort_messages(rows, keys("-DATE", "SUBJECT", "-SIZE")) == [4, 3, 6, 2, 5, 1]
    assert sort_messages(rows, keys("DATE", "-SUBJECT")) == [1, 2, 5, 3, 6, 4]


def test_everything_equal_keeps_sequence_order_even_reversed() -> None:
    rows = [row(uid) for uid in (7, 3, 9, 1)]  # input order does not matter: UID is the sequence order
    for spec in (("DATE",), ("-DATE",), ("-SUBJECT",), ("-SIZE", "-FROM", "ARRIVAL")):
        assert sort_messages(rows, keys(*spec)) == [1, 3, 7, 9]


def test_missing_or_bad_date_falls_back_to_internaldate() -> None:
    rows = [
        row(1, date="Mon, 01 Jan 2024 10:00:00 +0000", internaldate=BASE),
        row(2, internaldate=1704103200 - 60),  # no Date: INTERNALDATE, one minute before message 1
        row(3, date="not a date", internaldate=1704103200 + 60),
        row(4, date="Mon, 01 Jan 2024 11:00:00 +0200", internaldate=BASE),  # 09:00 UTC: zone applied
    ]
    assert sort_messages(rows, keys("DATE")) == [4, 2, 1, 3]
    assert sort_messages(rows, keys("-DATE")) == [3, 1, 2, 4]


def test_casemap() -> None:
    # i;ascii-casemap (RFC 4790 9.2): only a-z map (to upper case); other characters stay as they are.
    assert casemap("abc") == casemap("ABC") == "ABC"
    assert casemap("[x]_y") == "[X]_Y"
    assert casemap("[") > casemap("z") and casemap("_") > casemap("z")
    assert casemap("é") == "é" != casemap("É")
    assert casemap("straße") == "STRAßE"


def test_unknown_key() -> None:
    with pytest.raises(UnknownSortKey):
        sort_messages([row(1)], keys("THREAD"))


def _synthetic(n: int) -> list[SortRow]:
    env = Envelope(None, None, None, None, None, None, None, None, None, None)
    body = BodyPart("TEXT", "PLAIN", [], None, None, "7BIT", 10, 1)
    rng = random.Random(5256)
    rows = []
    for uid in range(1, n + 1):
        date = None if uid % 50 == 0 else BASE + rng.randrange(10_000_000)
        meta = MessageMetadata(env, body, 100, date, f"subject {rng.randrange(5000)}", bool(uid % 3), "from",
                               "From", "to", "To", "", f"<{uid}@x>", [], [])
        rows.append(SortRow(uid, uid, BASE + uid, rng.randrange(100_000), meta))
    return rows


@pytest.mark.serial  # timed: run alone, not beside another test (Makefile)
def test_speed_100k_reverse_date() -> None:
    rows = _synthetic(100_000)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        result = sort_messages(rows, keys("-DATE"))
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    sort_messages(rows, keys("SUBJECT", "-DATE"))
    two_keys = time.perf_counter() - start
    print(f"\nSORT (REVERSE DATE) 100,000 rows: {best * 1000:.1f} ms; (SUBJECT REVERSE DATE): {two_keys * 1000:.1f} ms")
    dates = [r.meta.date if r.meta.date is not None else r.internaldate for r in rows]
    assert [dates[uid - 1] for uid in result] == sorted(dates, reverse=True)
    assert best < 0.3
