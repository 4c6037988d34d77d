"""\\Recent bookkeeping (RFC 3501 2.3.2): a session's own ranges, and the claim horizon in the index."""

from __future__ import annotations

from array import array
from pathlib import Path

import pytest

from imapd.session.recent import RecentClaims, RecentUids
from imapd.session.updates import Exists, Recent
from imapd.session.view import SelectedView
from imapd.store.store import Store


@pytest.mark.parametrize(("added", "ranges"), [
    ([(1, 3), (4, 6)], [(1, 6)]),                 # adjacent claims merge
    ([(5, 6), (1, 2)], [(1, 2), (5, 6)]),         # any order
    ([(1, 5), (3, 9), (12, 12)], [(1, 9), (12, 12)]),
    ([(4, 3)], []),                               # empty range
])
def test_recent_uids_ranges(added: list[tuple[int, int]], ranges: list[tuple[int, int]]) -> None:
    recent = RecentUids(added)
    assert recent.ranges() == ranges
    assert RecentUids(recent.ranges()).ranges() == ranges  # what a saved state carries comes back the same
    for lo, hi in ranges:
        assert lo in recent and hi in recent
        assert lo - 1 not in recent or any(a <= lo - 1 <= b for a, b in ranges)


def test_recent_uids_count_in_a_view() -> None:
    recent = RecentUids([(2, 4), (8, 20)])
    uids = array("I", [1, 2, 4, 5, 8, 9, 30])
    assert recent.count_in(uids, len(uids)) == 4
    assert recent.count_in(uids, 3) == 2


def _store(tmp_path: Path) -> Store:
    return Store(tmp_path, durability="normal")


def test_claims_once_peek_never_and_the_horizon_persists(tmp_path: Path) -> None:
    store = _store(tmp_path)
    user = store.create_user("u")
    mb = user.open("INBOX")
    for n in range(3):
        mb.append(b"Subject: %d\r\n\r\nx\r\n" % n)
    a, b = RecentClaims(), RecentClaims()  # two processes: nothing shared but the index
    assert a.peek(user, mb, 1, 3) == (1, 3)
    assert b.claim(user, mb, 3) == (1, 3)
    assert a.claim(user, mb, 3) is None
    assert a.peek(user, mb, 1, 3) is None
    assert a.unclaimed_count(user, mb.mailbox_id, mb.uidvalidity, mb.uidnext) == 0
    mb.append(b"Subject: new\r\n\r\nx\r\n")
    assert a.unclaimed_count(user, mb.mailbox_id, mb.uidvalidity, mb.uidnext) == 1
    store.close()
    store = _store(tmp_path)  # a restart
    user = store.create_user("u")
    mb = user.open("INBOX")
    c = RecentClaims()
    assert c.horizon(user, mb.mailbox_id, mb.uidvalidity) == 4
    assert c.claim(user, mb, 4) == (4, 4)
    store.close()


def test_view_claims_new_mail_as_it_is_announced(tmp_path: Path) -> None:
    store = _store(tmp_path)
    user = store.create_user("u")
    mb = user.open("INBOX")
    claims = RecentClaims()
    first = SelectedView(mb, readonly=False, claims=claims, user=user)
    second = SelectedView(mb, readonly=False, claims=claims, user=user)
    examine = SelectedView(mb, readonly=True, claims=claims, user=user)
    uid = mb.append(b"Subject: new\r\n\r\nx\r\n")
    assert examine.take_updates(allow_expunge=True, vanished=False) == [Exists(1), Recent(1)]  # looks only
    assert second.take_updates(allow_expunge=True, vanished=False) == [Exists(1), Recent(1)]  # told first
    assert first.take_updates(allow_expunge=True, vanished=False) == [Exists(1), Recent(0)]
    assert uid in second.recent and uid not in first.recent and uid in examine.recent
    store.close()


def test_a_restored_view_keeps_its_recent_and_claims_what_it_is_told(tmp_path: Path) -> None:
    store = _store(tmp_path)
    user = store.create_user("u")
    mb = user.open("INBOX")
    claims = RecentClaims()
    for n in range(2):
        mb.append(b"Subject: %d\r\n\r\nx\r\n" % n)
    saved = SelectedView(mb, readonly=False, claims=claims, user=user)
    saved.learn_recent(1, mb.uidnext - 1)  # what SELECT does
    state, client_uidnext = saved.recent.ranges(), mb.uidnext  # what a saved state carries
    late = mb.append(b"Subject: late\r\n\r\nx\r\n")
    restored = SelectedView(mb, readonly=False, claims=claims, user=user)
    restored.restore_recent(state, client_uidnext)
    assert restored.recent.ranges() == [(1, late)]
    other = SelectedView(mb, readonly=False, claims=claims, user=user)
    other.learn_recent(1, mb.uidnext - 1)
    assert not other.recent
    store.close()
