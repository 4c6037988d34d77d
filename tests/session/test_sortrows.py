"""SORT/THREAD from the mailbox's in-memory keys give the same answers as from full metadata."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imapd.protocol.commands import SortKey
from imapd.protocol.responses import Thread
from imapd.session import threads
from imapd.session.sorting import SortRow, UnknownSortKey, sort_messages
from imapd.session.sortrows import sort_rows, sort_uids
from imapd.store import Mailbox, Store
from imapd.store.mailbox import AppendItem

NAMES = ["Alice <alice@x>", "bob@x", "Émile <emile@x>", "ZED <zed@x>", "carol <Carol@x>", "", "\"Ünïcode\" <u@x>"]
SUBJECTS = ["hello", "Re: hello", "Fwd: plan", "[list] Plan", "ça va", "", "Re: ÇA VA", "zebra"]
BASE = 1_700_000_000


def _message(rng: random.Random, i: int) -> AppendItem:
    lines = [f"Message-ID: <m{i}@x>"]
    if rng.random() < 0.8:
        lines.append(f"Date: {['Mon', 'Tue'][i % 2]}, 0{1 + i % 7} Jan 2024 {rng.randrange(24):02d}:00:00 +0000")
    for name in ("From", "To", "Cc"):
        value = rng.choice(NAMES)
        if value:
            lines.append(f"{name}: {value}")
    lines.append(f"Subject: {rng.choice(SUBJECTS)}")
    if i and rng.random() < 0.6:
        parent = rng.randrange(i)
        lines.append(f"References: <m{parent // 2}@x> <m{parent}@x>")
    elif i and rng.random() < 0.3:
        lines.append(f"In-Reply-To: <m{rng.randrange(i)}@x>")
    raw = ("\r\n".join(lines) + "\r\n\r\n" + "x" * rng.randrange(50) + "\r\n").encode()
    return AppendItem(raw, (), BASE + rng.randrange(1000))


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    store = Store(tmp_path / "data", durability="normal")
    mb = store.create_user("alice").open("INBOX")
    rng = random.Random(7)
    mb.append_many([_message(rng, i) for i in range(120)], fsync=False)
    yield mb
    mb.release()
    store.close()


def _full_rows(mb: Mailbox, uids: list[int]) -> list[SortRow]:
    infos = {i.uid: i for i in mb.message_info(uids)}
    return [SortRow(u, u, infos[u].internaldate, infos[u].size, mb.metadata(u)) for u in uids if u in infos]


KEY_SETS = [["DATE"], ["-DATE"], ["ARRIVAL"], ["-SIZE"], ["SUBJECT"], ["-FROM", "DATE"], ["TO", "-SUBJECT"],
            ["CC", "-ARRIVAL"], ["DISPLAYFROM"], ["-DISPLAYTO", "SIZE"], ["SUBJECT", "FROM", "-DATE", "SIZE"]]


@pytest.mark.parametrize("spec", KEY_SETS)
def test_sort_uids_matches_full_metadata(mailbox: Mailbox, spec: list[str]) -> None:
    keys = [SortKey(s.lstrip("-"), s.startswith("-")) for s in spec]
    uids = list(mailbox.uids())
    assert sort_uids(mailbox, uids, keys) == sort_messages(_full_rows(mailbox, uids), keys)
    subset = [*uids[::3], 10_000]  # a UID the mailbox no longer has is dropped
    assert sort_uids(mailbox, subset, keys) == sort_messages(_full_rows(mailbox, subset[:-1]), keys)


def test_sort_after_changes(mailbox: Mailbox) -> None:
    keys = [SortKey("SUBJECT", True), SortKey("DATE", False)]
    uids = list(mailbox.uids())
    sort_uids(mailbox, uids, keys)  # builds the keys
    mailbox.expunge(uids[5:40])
    rng = random.Random(3)
    mailbox.append_many([_message(rng, 200 + i) for i in range(30)])
    now = list(mailbox.uids())
    assert sort_uids(mailbox, uids + now[-30:], keys) == sort_messages(_full_rows(mailbox, now), keys)


def test_unknown_key(mailbox: Mailbox) -> None:
    with pytest.raises(UnknownSortKey):
        sort_uids(mailbox, list(mailbox.uids()), [SortKey("COLOR", False)])


@pytest.mark.parametrize("algorithm", [threads.thread_references, threads.thread_refs,
                                       threads.thread_orderedsubject])
def test_threads_from_sort_rows(mailbox: Mailbox, algorithm: Callable[[list[SortRow]], list[Thread]]) -> None:
    uids = list(mailbox.uids())
    numbers = [n + 1 for n in range(len(uids))]
    rows = sort_rows(mailbox, uids, numbers)
    full = [SortRow(n, r.uid, r.internaldate, r.size, r.meta) for n, r in zip(numbers, _full_rows(mailbox, uids),
                                                                             strict=True)]
    assert [r.number for r in rows] == numbers
    assert algorithm(rows) == algorithm(full)
