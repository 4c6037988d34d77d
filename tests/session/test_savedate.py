"""RFC 8514 SAVEDATE: SAVEDBEFORE / SAVEDON / SAVEDSINCE / SAVEDATESUPPORTED and FETCH SAVEDATE, on a real store."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapd.protocol.fetch_items import FetchAttr
from imapd.protocol.reader import TokenReader
from imapd.protocol.search_parser import parse_search_criteria
from imapd.session.fetch import FetchPlan, render
from imapd.session.search import search
from imapd.store import Mailbox, Store


def utc(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime.datetime(year, month, day, hour, tzinfo=datetime.UTC).timestamp())


INTERNAL = utc(2020, 1, 1)
# Save dates of UIDs 1..4 (UID 4: stored before the index kept save dates, so NULL in the index).
SAVED = [utc(2024, 5, 1, 23), utc(2024, 5, 2), utc(2024, 5, 3, 12), None]


@pytest.fixture(scope="module")
def mailbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mailbox]:
    store = Store(Path(tmp_path_factory.mktemp("savedate")) / "data", durability="normal")
    user = store.create_user("alice")
    mb = user.open("INBOX")
    for i in range(len(SAVED)):
        mb.append(f"Subject: m{i}\r\n\r\nbody\r\n".encode(), (), INTERNAL + i)
    # The save date is "now" when stored; give each message the one this test needs.
    with user.index.write() as conn:
        for uid, when in enumerate(SAVED, 1):
            conn.execute("UPDATE messages SET savedate=? WHERE mailbox=? AND uid=?", (when, mb.mailbox_id, uid))
    yield mb
    mb.release()
    store.close()


def run(mb: Mailbox, text: str) -> list[int]:
    return search(mb, list(mb.uids()), parse_search_criteria(TokenReader([b" " + text.encode()]), None))


@pytest.mark.parametrize(("criteria", "expected"), [
    ("SAVEDATESUPPORTED", [1, 2, 3, 4]),
    ("NOT SAVEDATESUPPORTED", []),
    ("SAVEDON 1-May-2024", [1]),  # the UTC date, whatever the hour
    ("SAVEDON 2-May-2024", [2]),
    ("SAVEDBEFORE 3-May-2024", [1, 2, 4]),
    ("SAVEDSINCE 2-May-2024", [2, 3]),
    ("SAVEDSINCE 4-May-2024", []),
    ("SAVEDON 1-Jan-2020", [4]),  # no save date kept: the INTERNALDATE
    ("ON 1-Jan-2020 SAVEDSINCE 1-Jan-2024", [1, 2, 3]),  # INTERNALDATE and save date are separate
])
def test_saved_keys(mailbox: Mailbox, criteria: str, expected: list[int]) -> None:
    assert run(mailbox, criteria) == expected


def test_fetch_savedate(mailbox: Mailbox) -> None:
    plan = FetchPlan([FetchAttr("SAVEDATE"), FetchAttr("INTERNALDATE")])
    got = {uid: render(plan, mailbox, uid, info=None, flags=(), modseq=None) for uid in (1, 4)}
    assert got[1] == [("SAVEDATE", " 1-May-2024 23:00:00 +0000"), ("INTERNALDATE", " 1-Jan-2020 00:00:00 +0000")]
    assert got[4] == [("SAVEDATE", " 1-Jan-2020 00:00:03 +0000"), ("INTERNALDATE", " 1-Jan-2020 00:00:03 +0000")]
