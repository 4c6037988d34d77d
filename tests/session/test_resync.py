"""The one catch-up (imapd.session.resync) against a real store Mailbox: what vanished, the EXPUNGE
numbers the client must see, EXISTS and the changed messages, for exact UID ranges and fingerprints."""

from __future__ import annotations

import itertools
import tempfile
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from imapd.session.resync import NotRestorable, _expunge_seqs, missing_ranges, plan_restore
from imapd.store.mailbox import AppendItem
from imapd.store.store import Store
from statecodec import MailboxView, compact_uids


def _naive_missing(ranges: list[tuple[int, int]], present: set[int]) -> list[int]:
    return [u for lo, hi in ranges for u in range(lo, hi + 1) if u not in present]


@given(st.lists(st.integers(1, 400), unique=True).map(sorted),
       st.lists(st.tuples(st.integers(1, 400), st.integers(0, 60)), max_size=8))
def test_missing_ranges_is_the_set_difference(present: list[int], spans: list[tuple[int, int]]) -> None:
    ranges: list[tuple[int, int]] = []
    for lo, n in sorted(spans):
        if ranges and lo <= ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], lo + n))
        else:
            ranges.append((lo, lo + n))
    got = missing_ranges(ranges, array("I", present))
    assert [u for lo, hi in got for u in range(lo, hi + 1)] == _naive_missing(ranges, set(present))
    assert all(b[0] > a[1] + 1 for a, b in itertools.pairwise(got))  # maximal, ascending


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.data(), st.booleans(), st.booleans())
def test_plan_matches_a_client_replaying_it(n: int, data: st.DataObject, fingerprint: bool, gaps: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp, durability="normal")
        try:
            mb = store.create_user("u").open("INBOX")
            mb.append_many([AppendItem(b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(n)], fsync=False)
            if gaps:  # the client's map itself has holes
                mb.expunge(data.draw(st.sets(st.sampled_from(list(mb.uid_array)), max_size=n // 2)))
            known = list(mb.uid_array)
            saved = MailboxView("INBOX", b"x", mb.uidvalidity, False, mb.uidnext, len(known), mb.highestmodseq,
                                compact_uids(array("I", known), uidnext=mb.uidnext, max_bytes=0 if fingerprint else 64))
            gone = data.draw(st.sets(st.sampled_from(known), max_size=len(known))) if known else set()
            mb.expunge(gone)
            flagged = data.draw(st.sets(st.sampled_from(known), max_size=5)) if known else set()
            mb.store_flags(flagged, "add", ["\\Flagged"])
            new = data.draw(st.integers(0, 3))
            mb.append_many([AppendItem(b"Subject: new\r\n\r\nx\r\n") for _ in range(new)], fsync=False)

            plan = plan_restore(mb, saved, flags=None)

            client = list(known)
            for seq in _expunge_seqs(plan.expunge_runs):  # highest first, each valid when sent
                del client[seq - 1]
            assert sorted(set(known) - set(client)) == [u for lo, hi in plan.vanished for u in range(lo, hi + 1)]
            assert plan.exists == len(mb.uid_array) or (plan.exists is None and len(client) == len(mb.uid_array))
            client += [0] * (len(mb.uid_array) - len(client))  # new messages, UIDs learnt from FETCH
            assert [u for u in client if u] == [u for u in mb.uid_array if u in set(known)]
            changed = dict(zip(plan.changed_seqs, plan.changed_uids, strict=True))
            assert {mb.uid_array[s - 1] for s in changed} == set(changed.values())
            assert set(changed.values()) == (flagged - gone) | set(mb.uid_array[len(mb.uid_array) - new:])
            assert plan.highest_modseq == mb.highestmodseq
            mb.release()
        finally:
            store.close()


def test_a_message_the_token_never_knew_is_stale() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp, durability="normal")
        mb = store.create_user("u").open("INBOX")
        mb.append_many([AppendItem(b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(5)], fsync=False)
        uids = list(mb.uid_array)
        # The saved map claims UIDs 1..5 minus 3, but 3 is still in the mailbox: not this mailbox's past.
        known = array("I", [u for u in uids if u != uids[2]])
        saved = MailboxView("INBOX", b"x", mb.uidvalidity, False, mb.uidnext, 4, mb.highestmodseq,
                            compact_uids(known, uidnext=mb.uidnext))
        try:
            plan_restore(mb, saved, flags=None)
        except NotRestorable as exc:
            assert "never knew" in str(exc)
        else:
            raise AssertionError("expected NotRestorable")
        mb.release()
        store.close()
