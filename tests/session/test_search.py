"""SEARCH evaluation against a real Store with real messages (no mocks)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from imapd.protocol.reader import TokenReader
from imapd.protocol.search_keys import SearchAnd, SearchFlag, SearchKey, SearchNot, SearchText
from imapd.protocol.search_parser import parse_search_criteria
from imapd.session.search import BadCharset, search
from imapd.store import Mailbox, Store


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC).timestamp())


def message(subject: str, body: str = "nothing here\n", *, cte: str = "7bit", date: str | None = None,
            **headers: str) -> EmailMessage:
    m = EmailMessage(policy=policy.SMTP)
    m["Subject"] = subject
    if date is not None:
        m["Date"] = date
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content(body, cte=cte)
    return m


def messages() -> list[tuple[bytes, list[str], int]]:
    """(raw, flags, internaldate) of UIDs 1..6."""
    m1 = message("Meeting notes", "plain body words\n", date="Mon, 01 Jan 2024 10:00:00 +0000",
                 From="Alice Example <alice@example.com>", To="bob@example.com")
    m2 = message("=?utf-8?q?Caf=C3=A9?= order", "un café au lait, s'il vous plaît\n", cte="quoted-printable",
                 date="Thu, 11 Jan 2024 01:00:00 +0900",  # 10 Jan in UTC, 11 Jan as written
                 From="=?utf-8?q?Ren=C3=A9?= <rene@example.fr>", To="team: x@example.com;",
                 Cc="Carol <carol@example.com>")
    m3 = message("Invoice", "see attachment\n", Bcc="dave@example.com", X_Priority="1")  # no Date
    m3.add_attachment(bytes(range(256)) * 40, maintype="application", subtype="octet-stream", filename="i.pdf")
    m4 = message("Re: meeting", date="Fri, 12 Jan 2024 09:00:00 -0500", From="bob@example.com")
    m5 = message("newer", date="Thu, 01 Feb 2024 08:00:00 +0000")
    m6 = message("newest", "the word Invoice in a body\n", date="Fri, 02 Feb 2024 08:00:00 +0000")
    return [
        (m1.as_bytes(), ["\\Seen"], utc(2024, 1, 10, 12)),
        (m2.as_bytes(), ["\\Flagged", "\\Answered"], utc(2024, 1, 11, 23, 30)),
        (m3.as_bytes(), ["\\Deleted", "$Important"], utc(2024, 1, 12)),
        (m4.as_bytes(), ["\\Draft"], utc(2024, 1, 12, 23, 59, 59)),
        (m5.as_bytes(), [], utc(2024, 2, 1)),
        (m6.as_bytes(), ["\\Seen"], utc(2024, 2, 2)),
    ]


@pytest.fixture(scope="module", params=[True, False], ids=["fts", "scan"])
def mailbox(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Mailbox]:
    """Every test runs with the full-text index (search.fts) and without: the answers must not differ."""
    store = Store(Path(tmp_path_factory.mktemp("search")) / "data", durability="normal", fts=request.param)
    mb = store.create_user("alice").open("INBOX")
    for raw, flags, when in messages():
        mb.append(raw, flags, when)
    assert list(mb.uids()) == [1, 2, 3, 4, 5, 6]
    yield mb
    mb.release()
    store.close()


ALL = [1, 2, 3, 4, 5, 6]


def parse(text: str, charset: str | None = None) -> SearchKey:
    return parse_search_criteria(TokenReader([b" " + text.encode()]), charset)


def run(mb: Mailbox, key: SearchKey | str, uids: Sequence[int] = ALL, **kw: object) -> list[int]:
    if isinstance(key, str):
        key = parse(key)
    return search(mb, uids, key, recent=range(5, 1 << 32), saved=[2, 5], **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("ALL", ALL),
        # flags
        ("SEEN", [1, 6]),
        ("UNSEEN", [2, 3, 4, 5]),
        ("FLAGGED", [2]),
        ("ANSWERED", [2]),
        ("UNANSWERED", [1, 3, 4, 5, 6]),
        ("DELETED", [3]),
        ("UNDELETED", [1, 2, 4, 5, 6]),
        ("DRAFT", [4]),
        ("UNDRAFT", [1, 2, 3, 5, 6]),
        ("KEYWORD $important", [3]),
        ("UNKEYWORD $Important", [1, 2, 4, 5, 6]),
        ("KEYWORD $Nobody", []),
        ("RECENT", [5, 6]),
        ("NEW", [5]),
        ("OLD", [1, 2, 3, 4]),
        # sequence sets and UIDs
        ("2:4", [2, 3, 4]),
        ("*", [6]),
        ("5:*", [5, 6]),
        ("*:5", [5, 6]),
        ("4,1", [1, 4]),
        ("1:2,6", [1, 2, 6]),
        ("UID 3:*", [3, 4, 5, 6]),
        ("UID *", [6]),
        ("UID 100:*", [6]),
        ("UID 2,4:5", [2, 4, 5]),
        ("UID 7:9", []),
        ("$", [2, 5]),
        ("UID $", [2, 5]),
        ("NOT $", [1, 3, 4, 6]),
        # index info: sizes and INTERNALDATE (UTC date)
        ("LARGER 5000", [3]),
        ("SMALLER 5000", [1, 2, 4, 5, 6]),
        ("LARGER 100000", []),
        ("BEFORE 12-Jan-2024", [1, 2]),
        ("ON 11-Jan-2024", [2]),
        ("ON 12-Jan-2024", [3, 4]),
        ("SINCE 12-Jan-2024", [3, 4, 5, 6]),
        ("SINCE 1-Jan-2025", []),
        # Date header, as written (no Date: INTERNALDATE)
        ("SENTON 11-Jan-2024", [2]),
        ("SENTON 10-Jan-2024", []),
        ("SENTBEFORE 2-Jan-2024", [1]),
        ("SENTSINCE 12-Jan-2024", [3, 4, 5, 6]),
        ("SENTON 12-Jan-2024", [3, 4]),
        ("SENTBEFORE 12-Jan-2024 SENTSINCE 1-Jan-2024", [1, 2]),
        # addresses and subject (decoded, case-insensitive)
        ("FROM alice", [1]),
        ("FROM \"Alice Example\"", [1]),
        ("FROM EXAMPLE.FR", [2]),
        ("FROM bob@example.com", [4]),
        ("TO bob", [1]),
        ("TO team", [2]),
        ("TO x@example.com", [2]),
        ("CC carol", [2]),
        ("BCC dave", [3]),
        ("BCC carol", []),
        ("SUBJECT meeting", [1, 4]),
        ("SUBJECT \"RE: MEET\"", [4]),
        ("SUBJECT order", [2]),
        # raw reads: HEADER, BODY, TEXT
        ("HEADER X-Priority 1", [3]),
        ("HEADER x-priority \"\"", [3]),
        ("HEADER Subject ORDER", [2]),
        ("HEADER Content-Type octet-stream", []),
        ("BODY lait", [2]),
        ("BODY invoice", [6]),
        ("TEXT invoice", [3, 6]),
        ("TEXT \"bob@example\"", [1, 4]),
        ("BODY \"plain body\"", [1]),
        # compound keys
        ("OR SEEN FLAGGED", [1, 2, 6]),
        ("NOT SEEN", [2, 3, 4, 5]),
        ("NOT NOT SEEN", [1, 6]),
        ("SEEN SUBJECT newest", [6]),
        ("(SEEN SUBJECT newest)", [6]),
        ("OR (OR DRAFT DELETED) BODY lait", [2, 3, 4]),
        ("NOT OR SUBJECT meeting BODY lait", [3, 5, 6]),
        ("OR BODY words BODY lait", [1, 2]),
        ("NOT BODY nothing", [1, 2, 3, 6]),
        ("UNSEEN NOT (OR TEXT invoice LARGER 5000)", [2, 4, 5]),
        ("OR 1 OR UID 3 OR $ FROM bob", [1, 2, 3, 4, 5]),
        ("2:* NOT 5 OR SMALLER 5000 DELETED SINCE 11-Jan-2024 UNDRAFT", [2, 3, 6]),
        ("OR (SEEN BODY words) (UNSEEN BODY lait)", [1, 2]),
        ("BODY nothing BODY here NOT FROM bob", [5]),
    ],
)
def test_criteria(mailbox: Mailbox, criteria: str, expected: list[int]) -> None:
    assert run(mailbox, criteria) == expected


def test_utf8_body_in_quoted_printable(mailbox: Mailbox) -> None:
    for key in ("BODY", "TEXT"):
        assert run(mailbox, SearchText(key, "café")) == [2]
        assert run(mailbox, SearchText(key, "CAFÉ AU")) == [2]
        assert run(mailbox, SearchText(key, "plaît")) == [2]
    assert run(mailbox, SearchText("SUBJECT", "Café")) == [2]
    assert run(mailbox, SearchText("FROM", "rené")) == [2]


def test_charset_is_checked_and_bytes_are_decoded(mailbox: Mailbox) -> None:
    key = SearchText("BODY", "café".encode())
    assert run(mailbox, key, charset="UTF-8") == [2]
    assert run(mailbox, key, charset="utf-8") == [2]
    assert run(mailbox, parse("SUBJECT order", "US-ASCII"), charset="US-ASCII") == [2]
    with pytest.raises(BadCharset) as info:
        run(mailbox, SearchText("BODY", b"caf\xe9"), charset="ISO-8859-1")
    assert (info.value.status, info.value.code, info.value.code_args) == ("NO", "BADCHARSET", "(UTF-8 US-ASCII)")


def test_view_smaller_than_mailbox(mailbox: Mailbox) -> None:
    """The client has not been told about UIDs 5 and 6 yet: ``*`` is its last message / UID."""
    view = [1, 2, 3, 4]
    assert run(mailbox, "*", view) == [4]
    assert run(mailbox, "UID *", view) == [4]
    assert run(mailbox, "UID 3:*", view) == [3, 4]
    assert run(mailbox, "ALL", view) == view
    assert run(mailbox, "2:3", [1, 3, 6]) == [3, 6]  # message numbers index the view
    assert run(mailbox, "NOT SEEN", [1, 3, 6]) == [3]


def test_empty_view(mailbox: Mailbox) -> None:
    assert run(mailbox, "ALL", []) == []
    assert run(mailbox, "1:*", []) == []
    assert run(mailbox, "OR BODY x NOT SEEN", []) == []


def test_message_gone_from_the_store_matches_no_positive_key(mailbox: Mailbox) -> None:
    view = [1, 2, 99]
    assert run(mailbox, "ALL", view) == view
    assert run(mailbox, "SEEN", view) == [1]
    assert run(mailbox, "UNSEEN", view) == [2]
    assert run(mailbox, "LARGER 10", view) == [1, 2]
    assert run(mailbox, "SUBJECT e", view) == [1, 2]
    assert run(mailbox, "BODY a", view) == [1, 2]
    assert run(mailbox, "NOT BODY a", view) == [99]


def test_recent_and_saved_defaults(mailbox: Mailbox) -> None:
    assert search(mailbox, ALL, SearchFlag("\\Recent")) == []
    assert search(mailbox, ALL, SearchNot(SearchFlag("\\Recent"))) == ALL
    assert search(mailbox, ALL, parse("$")) == []
    assert search(mailbox, ALL, parse("NEW"), recent=range(6, 1 << 32)) == []
    assert search(mailbox, ALL, parse("NEW"), recent=range(5, 1 << 32)) == [5]


def test_modseq(mailbox: Mailbox) -> None:
    modseqs = [mailbox.modseq(u) or 0 for u in ALL]
    assert modseqs == sorted(modseqs) and len(set(modseqs)) == 6  # one append each
    fifth = modseqs[4]
    assert run(mailbox, f"MODSEQ {fifth}") == [5, 6]
    assert run(mailbox, f'MODSEQ "/flags/\\\\seen" all {fifth}') == [5, 6]
    assert run(mailbox, f"MODSEQ {max(modseqs) + 1}") == []


def test_expensive_keys_only_read_survivors(mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spy on the real read_message: cheap keys first, AND/OR short-circuit, each file read once."""
    reads: list[int] = []
    real = mailbox.read_message

    def spy(uid: int) -> bytes:
        reads.append(uid)
        return real(uid)

    monkeypatch.setattr(mailbox, "read_message", spy)
    monkeypatch.setattr(mailbox._owner.store, "fts", False)  # the order of the scan itself
    assert run(mailbox, "BODY lait SEEN") == []
    assert reads == [1, 6]
    reads.clear()
    assert run(mailbox, "BODY nothing TEXT here HEADER Subject n UNSEEN") == [4, 5]
    assert reads == [3, 4, 5]  # HEADER Subject comes from the cached envelope and runs before BODY
    reads.clear()
    assert run(mailbox, "OR FLAGGED BODY lait") == [2]
    assert reads == [1, 3, 4, 5, 6]
    reads.clear()
    assert run(mailbox, "SUBJECT meeting FROM bob LARGER 10 OR SEEN UNSEEN") == [4]
    assert reads == []


def test_parser_shapes_are_accepted(mailbox: Mailbox) -> None:
    key = SearchAnd((SearchAnd(()), SearchFlag("\\SEEN")))
    assert run(mailbox, key) == [1, 6]


def test_envelope_headers_come_from_the_index(mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Roundcube searches HEADER SUBJECT/FROM: answered from the cached envelope, no file read."""
    reads: list[int] = []
    real = mailbox.read_message

    def spy(uid: int) -> bytes:
        reads.append(uid)
        return real(uid)

    monkeypatch.setattr(mailbox, "read_message", spy)
    monkeypatch.setattr(mailbox._owner.store, "fts", False)  # the order of the scan itself
    assert run(mailbox, "HEADER SUBJECT meeting") == run(mailbox, "SUBJECT meeting") != []
    assert run(mailbox, "OR HEADER SUBJECT meeting HEADER FROM bob") == run(mailbox, "OR SUBJECT meeting FROM bob")
    assert reads == []
