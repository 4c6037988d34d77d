"""RFC 5032 WITHIN: OLDER / YOUNGER against INTERNALDATE, evaluated on a real store."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapd.protocol.reader import TokenReader
from imapd.protocol.search_parser import parse_search_criteria
from imapd.session.search import search
from imapd.store import Mailbox, Store

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
DAY = 86400
# Ages in seconds of UIDs 1..6 at NOW; UID 6 is dated in the future (a wrong client clock).
AGES = [10 * DAY, 4 * DAY, 3 * DAY, 3 * DAY - 1, 60, -3600]
SEEN = {1, 3}


@pytest.fixture(scope="module")
def mailbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mailbox]:
    store = Store(Path(tmp_path_factory.mktemp("within")) / "data", durability="normal")
    mb = store.create_user("alice").open("INBOX")
    for uid, age in enumerate(AGES, 1):
        flags = ["\\Seen"] if uid in SEEN else []
        mb.append(f"Subject: m{uid}\r\n\r\nbody\r\n".encode(), flags, NOW.timestamp() - age)
    yield mb
    mb.release()
    store.close()


def run(mb: Mailbox, text: str, now: datetime.datetime = NOW) -> list[int]:
    key = parse_search_criteria(TokenReader([b" " + text.encode()]), None)
    return search(mb, list(mb.uids()), key, now=now)


@pytest.mark.parametrize(("criteria", "expected"), [
    # RFC 5032 section 4: unseen messages of the last three days
    ("UNSEEN YOUNGER 259200", [4, 5, 6]),
    ("YOUNGER 259200", [4, 5, 6]),
    ("OLDER 259200", [1, 2, 3]),  # exactly three days old counts as older (age >= n)
    ("OLDER 1", [1, 2, 3, 4, 5]),
    ("YOUNGER 61", [5, 6]),
    ("YOUNGER 60", [6]),
    ("OLDER 60", [1, 2, 3, 4, 5]),
    ("NOT YOUNGER 60", [1, 2, 3, 4, 5]),  # the complement of YOUNGER n is OLDER n
    ("OLDER 864001", []),
    ("OR OLDER 864000 YOUNGER 3600", [1, 5, 6]),
    ("SEEN OLDER 3600", [1, 3]),
])
def test_older_younger(mailbox: Mailbox, criteria: str, expected: list[int]) -> None:
    assert run(mailbox, criteria) == expected


def test_relative_to_the_time_of_the_search(mailbox: Mailbox) -> None:
    later = NOW + datetime.timedelta(days=1)
    assert run(mailbox, "YOUNGER 259200", later) == [5, 6]
    assert run(mailbox, "YOUNGER 259200") == [4, 5, 6]


def test_default_now_is_the_current_time(mailbox: Mailbox) -> None:
    # Every message is dated around NOW (2026-03-01) or later, so none is younger than a minute today
    # unless the clock is far behind; and all are older than one second once the clock passed them.
    real_now = datetime.datetime.now(datetime.UTC)
    expect_old = [u for u, age in enumerate(AGES, 1) if (real_now - NOW).total_seconds() + age >= 1]
    key = parse_search_criteria(TokenReader([b" OLDER 1"]), None)
    assert search(mailbox, list(mailbox.uids()), key) == expect_old
