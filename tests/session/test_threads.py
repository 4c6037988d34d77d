"""THREAD over cached metadata: ORDEREDSUBJECT, every REFERENCES rule of RFC 5256, REFS, speed."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

import pytest

from imapd.mime import BodyPart, Envelope, MessageMetadata, parse_message
from imapd.protocol.response_writer import ResponseWriter
from imapd.protocol.responses import Thread, ThreadResponse
from imapd.session.sorting import SortRow
from imapd.session.threads import thread_orderedsubject, thread_references, thread_refs

BASE = 1_700_000_000
Algorithm = Callable[[list[SortRow]], list[Thread]]


def msg(n: int, subject: str = "", mid: str | None = None, refs: str | None = None,
        irt: str | None = None, minute: int | None = None) -> SortRow:
    """Message UID/number ``n``; its Date is ``minute`` minutes after 2024-01-01 10:00 UTC (default
    ``n``); INTERNALDATE is a day later, so a test going wrong on dates shows."""
    minute = n if minute is None else minute
    lines = [f"Subject: {subject}", f"Date: Mon, 01 Jan 2024 {10 + minute // 60:02d}:{minute % 60:02d}:00 +0000"]
    if mid is not None:
        lines.append(f"Message-ID: <{mid}>")
    if refs is not None:
        lines.append("References: " + " ".join(f"<{r}>" for r in refs.split()))
    if irt is not None:
        lines.append(f"In-Reply-To: <{irt}>")
    raw = ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()
    return SortRow(number=n, uid=n, internaldate=1704103200 + 86400 - n, size=len(raw), meta=parse_message(raw))


def wire(threads: list[Thread]) -> bytes:
    return ResponseWriter().write(ThreadResponse(tuple(threads)))


def numbers(thread: Thread) -> Iterator[int]:
    """The numbers of ``thread`` in order, without recursion (threads can be thousands deep)."""
    stack = [iter(thread)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, int):
                yield item
            else:
                stack.append(iter(item))
                break
        else:
            stack.pop()


# -- ORDEREDSUBJECT ---------------------------------------------------------------------------------------


def test_orderedsubject() -> None:
    rows = [
        msg(1, "Hello", minute=5),
        msg(2, "Other"),
        msg(3, "Re: hello", minute=1),  # earliest of "hello": the parent of the group
        msg(4, "[list] Re: HELLO", minute=9),
        msg(5, "other", minute=0),
        msg(6, "alone", minute=30),
    ]
    assert thread_orderedsubject(rows) == [(5, 2), (3, (1,), (4,)), (6,)]
    assert wire(thread_orderedsubject(rows)) == b"* THREAD (5 2)(3 (1)(4))(6)\r\n"
    assert thread_orderedsubject([]) == []


# -- REFERENCES -------------------------------------------------------------------------------------------


def test_references_chain_and_branches_as_in_rfc_syntax_example() -> None:
    # (3 6 (4 23)(44 7 96)): 3 → 6 → {4 → 23, 44 → 7 → 96}
    rows = [
        msg(3, "a", "m3"),
        msg(4, "a", "m4", "m3 m6"),
        msg(6, "a", "m6", "m3"),
        msg(7, "a", "m7", "m3 m6 m44"),
        msg(23, "a", "m23", "m3 m6 m4"),
        msg(44, "a", "m44", "m3 m6"),
        msg(96, "a", "m96", "m3 m6 m44 m7"),
        msg(2, "b", "m2", minute=0),
    ]
    threads = thread_references(rows)
    assert threads == [(2,), (3, 6, (4, 23), (44, 7, 96))]
    assert wire(threads) == b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"


def test_references_in_reply_to_is_used_without_references() -> None:
    rows = [msg(1, "a", "a"), msg(2, "b", "b", irt="a"), msg(3, "c", "c", refs="a", irt="b")]
    assert thread_references(rows) == [(1, (2,), (3,))]  # References wins over In-Reply-To


def test_references_siblings_sorted_by_sent_date_not_arrival() -> None:
    rows = [msg(1, "a", "a"), msg(2, "b", "b", "a", minute=50), msg(3, "c", "c", "a", minute=20),
            msg(4, "d", "d", "a", minute=20)]  # 3 and 4: same date, sequence order
    assert thread_references(rows) == [(1, (3,), (4,), (2,))]


def test_missing_parent_becomes_dummy_root_with_two_children() -> None:
    rows = [msg(1, "first", "c1", "gone"), msg(2, "second", "c2", "gone"), msg(3, "zzz", "z", minute=0)]
    threads = thread_references(rows)
    assert threads == [(3,), ((1,), (2,))]
    assert wire(threads) == b"* THREAD (3)((1)(2))\r\n"


def test_dummy_with_one_child_is_promoted() -> None:
    # root dummy with one child: the child becomes the root; a chain of dummies too
    assert thread_references([msg(1, "a", "a", "gone1 gone2 gone3")]) == [(1,)]
    # dummy below a real message: its children move up to the message
    rows = [msg(1, "a", "a"), msg(2, "b", "b", "a gone"), msg(3, "c", "c", "a gone")]
    assert thread_references(rows) == [(1, (2,), (3,))]
    rows = [msg(1, "a", "a"), msg(2, "b", "b", "a gone")]
    assert thread_references(rows) == [(1, 2)]


def test_childless_dummies_disappear() -> None:
    # "x" references missing "y" which references missing "z": only dummies, never output
    rows = [msg(1, "a", "a", "z y"), msg(2, "b", "b")]
    assert thread_references(rows) == [(1,), (2,)]


def test_reply_by_subject_only_joins_the_original() -> None:
    rows = [msg(1, "Re: Lunch?", "r", minute=0), msg(2, "Lunch?", "o", minute=10), msg(3, "Fwd: lunch?", "f")]
    # 2 is the non-reply: 1 and 3 become its children even though 1 is older
    assert thread_references(rows) == [(2, (1,), (3,))]


def test_same_subject_neither_or_both_replies_become_siblings_under_a_dummy() -> None:
    assert thread_references([msg(1, "Status", "a"), msg(2, "status", "b")]) == [((1,), (2,))]
    assert thread_references([msg(1, "Re: Status", "a"), msg(2, "RE: status", "b")]) == [((1,), (2,))]
    # a third one joins the new dummy
    rows = [msg(1, "Status", "a"), msg(2, "status", "b"), msg(3, "status", "c")]
    assert thread_references(rows) == [((1,), (2,), (3,))]


def test_subject_gathering_with_dummies() -> None:
    # dummy root (children 1, 2, subject "s") and a lone message 3 with subject "s": 3 joins the dummy
    rows = [msg(1, "s", "a", "gone", minute=5), msg(2, "s", "b", "gone", minute=1), msg(3, "Re: s", "c", minute=3)]
    assert thread_references(rows) == [((2,), (3,), (1,))]
    # two dummies with the same subject: their children are merged
    rows = [msg(1, "s", "a", "gone1"), msg(2, "s", "b", "gone1"), msg(3, "s", "c", "gone2"),
            msg(4, "s", "d", "gone2")]
    assert thread_references(rows) == [((1,), (2,), (3,), (4,))]
    # a real thread whose root has the subject: a reply-by-subject becomes its child
    rows = [msg(1, "s", "a"), msg(2, "Re: s", "b", "a"), msg(3, "Re: s", "c")]
    assert thread_references(rows) == [(1, (2,), (3,))]


def test_empty_subjects_are_not_gathered() -> None:
    assert thread_references([msg(1, "", "a"), msg(2, "Re:", "b")]) == [(1,), (2,)]


def test_loops_in_references_are_not_followed() -> None:
    # A says its parent is B, B says its parent is A: the first link stays
    rows = [msg(1, "a", "a", "b"), msg(2, "b", "b", "a")]
    assert thread_references(rows) == [(2, 1)]
    # a loop inside one References header, and a message that references itself
    rows = [msg(1, "x", "a"), msg(2, "y", "b", "a b a"), msg(3, "z", "c", "a c")]
    threads = thread_references(rows)
    assert threads == [(1, (2,), (3,))]


@pytest.mark.parametrize(("rows", "expected"), [
    # 2 guesses 1 -> 3 -> 2; 3's own References name 2 (a loop): the guess goes, no loop link, 3 is a root
    ([msg(1, "a", "1", minute=5), msg(2, "b", "2", "1 3"), msg(3, "c", "3", "2", minute=0)], b"(3 2)(1)"),
    # 3's own (truncated) References name another parent, absent: that wins over 2's guess
    ([msg(1, "a", "1", minute=5), msg(2, "b", "2", "1 3"), msg(3, "c", "3", "9", minute=0)], b"(3 2)(1)"),
    # 3 has no References at all: the guessed parent goes too
    ([msg(1, "a", "1", minute=5), msg(2, "b", "2", "1 3"), msg(3, "c", "3", minute=0)], b"(3 2)(1)"),
    # 3's References agree with the guess: it stays
    ([msg(1, "a", "1", minute=5), msg(2, "b", "2", "1 3"), msg(3, "c", "3", "1", minute=0)], b"(1 3 2)"),
])
def test_own_references_replace_a_guessed_parent(rows: list[SortRow], expected: bytes) -> None:
    # RFC 5256 section 4, step 1C: "throw away the old parent and use this new one".
    assert wire(thread_references(rows)) == b"* THREAD " + expected + b"\r\n"


def test_duplicate_message_ids() -> None:
    rows = [msg(1, "one", "dup"), msg(2, "two", "dup"), msg(3, "three", "r", "dup")]
    # the second "dup" is a message of its own that nothing can reference
    assert thread_references(rows) == [(1, 3), (2,)]


def test_messages_without_message_id() -> None:
    rows = [msg(1, "one"), msg(2, "two", refs="x"), msg(3, "three", irt="x"), msg(4, "four")]
    assert thread_references(rows) == [(1,), ((2,), (3,)), (4,)]


def test_missing_date_uses_internaldate() -> None:
    raw = b"Subject: a\r\nMessage-ID: <p>\r\n\r\n"
    parent = SortRow(1, 1, 1704103200, 10, parse_message(raw))
    early = SortRow(2, 2, 1704103200 + 100, 10, parse_message(b"Subject: b\r\nReferences: <p>\r\n\r\n"))
    late = msg(3, "c", "c", "p", minute=0)  # 10:00, before INTERNALDATE + 100 s
    assert thread_references([parent, early, late]) == [(1, (3,), (2,))]


def test_numbers_are_taken_from_the_row() -> None:
    rows = [SortRow(number=seq, uid=uid, internaldate=r.internaldate, size=r.size, meta=r.meta)
            for seq, (uid, r) in enumerate(((10, msg(1, "a", "a")), (20, msg(2, "b", "b", "a"))), start=1)]
    assert thread_references(rows) == [(1, 2)]


# -- REFS -------------------------------------------------------------------------------------------------


def test_refs_skips_subject_gathering_and_orders_threads_by_newest_message() -> None:
    rows = [
        msg(1, "Lunch?", "a", minute=0),
        msg(2, "Re: Lunch?", "b", minute=5),  # same subject, no references: its own thread
        msg(3, "other", "c", minute=10),
        msg(4, "Re: lunch?", "d", "a", minute=20),  # makes thread 1 the newest
        msg(5, "x", "e", "gone", minute=15),
        msg(6, "y", "f", "gone", minute=12),
    ]
    assert thread_refs(rows) == [(2,), (3,), ((6,), (5,)), (1, 4)]
    assert thread_references(rows) == [(1, (2,), (4,)), (3,), ((6,), (5,))]


def test_refs_children_by_date() -> None:
    rows = [msg(1, "a", "a"), msg(2, "b", "b", "a", minute=40), msg(3, "c", "c", "a", minute=30),
            msg(4, "d", "d", "b", minute=50)]
    assert thread_refs(rows) == [(1, (3,), (2, 4))]


# -- every algorithm: invariants on random input, deep chains, speed -------------------------------------

ALGORITHMS: list[Algorithm] = [thread_orderedsubject, thread_references, thread_refs]


def _random_rows(rng: random.Random, n: int) -> list[SortRow]:
    ids = [f"m{i}" for i in range(n // 2 + 2)]  # duplicates and missing parents on purpose
    rows = []
    for i in range(1, n + 1):
        mid = rng.choice([*ids, None])
        refs = " ".join(rng.choice(ids) for _ in range(rng.randrange(4))) or None
        subject = rng.choice(["", "a", "Re: a", "b", "Fwd: b", "c"])
        rows.append(msg(i, subject, mid, refs, minute=rng.randrange(60)))
    return rows


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_message_appears_exactly_once(algorithm: Algorithm) -> None:
    rng = random.Random(5256)
    for _ in range(30):
        rows = _random_rows(rng, rng.randrange(1, 40))
        threads = algorithm(rows)
        assert sorted(n for t in threads for n in numbers(t)) == [r.number for r in rows]
        wire(threads)  # serialises


def _meta(mid: str, refs: list[str], subject: str, date: int) -> MessageMetadata:
    env = Envelope(None, None, None, None, None, None, None, None, None, None)
    body = BodyPart("TEXT", "PLAIN", [], None, None, "7BIT", 10, 1)
    return MessageMetadata(env, body, 100, date, subject, bool(refs), "", "", "", "", "", mid, [], refs)


@pytest.mark.parametrize("algorithm", [thread_references, thread_refs])
def test_deep_chain_is_not_recursive(algorithm: Algorithm) -> None:
    n = 5000  # each message replies to the previous one; References carries the last 20 ancestors
    rows = [SortRow(i, i, BASE + i, 10, _meta(f"<{i}>", [f"<{j}>" for j in range(max(1, i - 20), i)], "s",
                                              BASE + i)) for i in range(1, n + 1)]
    assert algorithm(rows) == [tuple(range(1, n + 1))]
    # a comb: every message has two children, one of them a leaf
    rows = [SortRow(1, 1, BASE, 10, _meta("<1>", [], "s", BASE))]
    for i in range(2, n + 1):
        parent = i - 1 if i % 2 == 0 else i - 2
        rows.append(SortRow(i, i, BASE + i, 10, _meta(f"<{i}>", [f"<{parent}>"], "s", BASE + i)))
    (thread,) = algorithm(rows)
    assert sorted(numbers(thread)) == list(range(1, n + 1))


def _synthetic(n: int) -> list[SortRow]:
    rng = random.Random(20_000)
    rows: list[SortRow] = []
    refs_of: list[list[str]] = []
    for i in range(1, n + 1):
        if i > 1 and rng.random() < 0.7:  # a reply to an earlier message, References capped at 10
            parent = rng.randrange(max(0, i - 500), i - 1)
            refs = ([*refs_of[parent], f"<{parent + 1}@x>"])[-10:]
        else:
            refs = []
        refs_of.append(refs)
        subject = f"topic {rng.randrange(n // 4)}"
        date = None if i % 97 == 0 else BASE + i * 60 + rng.randrange(-600, 600)
        mid = f"<{i}@x>" if i % 50 else None
        rows.append(SortRow(i, i, BASE + i * 60, 10, _meta(mid or "", refs, subject, date or 0)))
    return rows


@pytest.mark.serial  # timed: run alone, not beside another test (Makefile)
def test_speed_references_20k() -> None:
    rows = _synthetic(20_000)
    timings = {}
    for algorithm in ALGORITHMS:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            threads = algorithm(rows)
            best = min(best, time.perf_counter() - start)
        assert sum(1 for t in threads for _ in numbers(t)) == len(rows)
        timings[algorithm.__name__] = best
    print("\nTHREAD on 20,000 rows: " + ", ".join(f"{name} {t * 1000:.0f} ms" for name, t in timings.items()))
    assert timings["thread_references"] < 2.0
    assert timings["thread_refs"] < 2.0
