"""SelectedView against a real store Mailbox: the sequence map the client sees, under interleavings the
multi-client soak test found."""

from __future__ import annotations

from pathlib import Path

from imapd.session.updates import Exists, Expunge, Recent
from imapd.session.view import SelectedView
from imapd.store.store import Store


def _mailbox(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = Store(tmp_path, durability="normal")
    mb = store.create_user("u").open("INBOX")
    return store, mb


def _msg(n: int) -> bytes:
    return b"Subject: m%d\r\n\r\nbody\r\n" % n


def test_held_expunge_then_arrival_expunged_is_never_announced(tmp_path: Path) -> None:
    # The client knows one message; a new one arrives (appended in place to the shared array), the known
    # one is expunged (array replaced), then the new one is expunged too, all before the client is told.
    store, mb = _mailbox(tmp_path)
    first = mb.append(_msg(1))
    view = SelectedView(mb, readonly=False)
    view.set_listener(mb.subscribe(view.on_event), None)
    second = mb.append(_msg(2))
    mb.expunge([first])
    mb.expunge([second])
    # During FETCH (no EXPUNGE allowed) nothing may be announced: the client must not see EXISTS 2.
    assert view.take_updates(allow_expunge=False, vanished=False) == []
    assert view.exists == 1
    # At the next NOOP: one EXPUNGE, and the count the client computes (0) matches the server's.
    assert view.take_updates(allow_expunge=True, vanished=False) == [Expunge(1)]
    assert view.exists == 0 == len(mb.uid_array)
    store.close()


def test_held_expunge_with_new_mail_keeps_the_old_numbers(tmp_path: Path) -> None:
    store, mb = _mailbox(tmp_path)
    uids = [mb.append(_msg(i)) for i in range(3)]
    view = SelectedView(mb, readonly=False)
    view.set_listener(mb.subscribe(view.on_event), None)
    mb.expunge([uids[1]])
    new = mb.append(_msg(9))
    assert view.take_updates(allow_expunge=False, vanished=False) == [Exists(4), Recent(0)]  # RFC 3501 7.3.2: RECENT with every EXISTS
    assert [view.uid_of(s) for s in range(1, 5)] == [*uids, new]
    mb.expunge([new])
    assert view.take_updates(allow_expunge=True, vanished=False) == [Expunge(4), Expunge(2)]
    assert view.exists == 2 and list(view.uids[: view.exists]) == [uids[0], uids[2]]
    store.close()
