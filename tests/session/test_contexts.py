"""Live contexts (RFC 5267 4.3) on a SelectedView over a real store Mailbox: where ADDTO/REMOVEFROM go among
the other updates, how they number messages, and the frozen criteria."""

from __future__ import annotations

from pathlib import Path

from imapd.protocol import commands as c
from imapd.protocol.responses import ContextChange, EsearchResponse
from imapd.protocol.search_keys import SearchFlag, SearchSequence
from imapd.protocol.sequence import SequenceSet
from imapd.session import contexts
from imapd.session.sortrows import sort_uids
from imapd.session.updates import ContextUpdate, Exists, Expunge, FlagChange, Recent, Update
from imapd.session.view import SelectedView
from imapd.store.mailbox import Mailbox
from imapd.store.store import Store

S = SequenceSet.parse
FLAGGED = SearchFlag("\\Flagged")


def _setup(tmp_path: Path, subjects: list[str]) -> tuple[Store, Mailbox, list[int], SelectedView]:
    store = Store(tmp_path, durability="normal")
    mb = store.create_user("u").open("INBOX")
    uids = [mb.append(b"Subject: %s\r\n\r\nbody\r\n" % s.encode()) for s in subjects]
    view = SelectedView(mb, readonly=False)
    view.set_listener(mb.subscribe(view.on_event), None)
    return store, mb, uids, view


def _change(tag: str, uid: bool, *items: tuple[str, tuple[tuple[int, str], ...]]) -> ContextUpdate:
    return ContextUpdate(EsearchResponse(tag, uid, tuple(
        (name, ContextChange(tuple((pos, S(text)) for pos, text in pairs))) for name, pairs in items)))


def _take(view: SelectedView, *, allow_expunge: bool = True) -> list[Update]:
    return view.take_updates(allow_expunge=allow_expunge, vanished=False)


def test_flag_change_adds_after_its_fetch_and_expunge_removes_before_it(tmp_path: Path) -> None:
    store, mb, uids, view = _setup(tmp_path, ["a", "b", "c"])
    assert contexts.register(view, c.Search("B01", FLAGGED, uid=True, return_options=("UPDATE",)), [], limit=4)
    mb.store_flags(uids[1:], "add", ["\\Flagged"])
    assert _take(view) == [FlagChange(2, uids[1]), FlagChange(3, uids[2]),
                           _change("B01", True, ("ADDTO", ((0, f"{uids[1]}:{uids[2]}"),)))]
    mb.expunge([uids[1]])
    # During a FETCH the expunge is held back, and so is its REMOVEFROM.
    assert _take(view, allow_expunge=False) == []
    assert _take(view) == [_change("B01", True, ("REMOVEFROM", ((0, str(uids[1])),))), Expunge(2)]
    store.close()


def test_message_numbers_are_valid_when_sent(tmp_path: Path) -> None:
    store, mb, uids, view = _setup(tmp_path, ["a", "b", "c", "d"])
    mb.store_flags(uids[2:], "add", ["\\Flagged"])
    _take(view)
    assert contexts.register(view, c.Search("N1", FLAGGED, return_options=("UPDATE",)), uids[2:], limit=4)
    mb.expunge([uids[0], uids[3]])  # message 4 is in the result, message 1 is not
    new = mb.append(b"Subject: e\r\n\r\n", flags=["\\Flagged"])
    # REMOVEFROM numbers message 4 as it was before the expunges; ADDTO numbers the new one after EXISTS.
    assert _take(view) == [_change("N1", False, ("REMOVEFROM", ((0, "4"),))), Expunge(4), Expunge(1),
                           Exists(3), Recent(0), _change("N1", False, ("ADDTO", ((0, "3"),)))]
    assert view.seq_of(new) == 3
    store.close()


def test_own_store_counts_even_when_its_fetch_was_sent(tmp_path: Path) -> None:
    store, mb, uids, view = _setup(tmp_path, ["a", "b"])
    assert contexts.register(view, c.Search("O1", FLAGGED, uid=True, return_options=("UPDATE",)), [], limit=4)
    mb.store_flags([uids[0]], "add", ["\\Flagged"])
    view.forget_flag_updates([uids[0]])  # what STORE does after sending its own FETCH
    assert view.has_pending
    assert _take(view) == [_change("O1", True, ("ADDTO", ((0, str(uids[0])),)))]
    store.close()


def test_message_numbers_in_criteria_are_frozen(tmp_path: Path) -> None:
    # RFC 5267 4.3: sequence numbers in the search program are evaluated when the command is received.
    store, mb, uids, view = _setup(tmp_path, ["a", "b", "c"])
    criteria = SearchSequence(S("2:*"))
    frozen = contexts.freeze(view, criteria, None)
    assert frozen == SearchSequence(SequenceSet.of(uids[1:]), uid=True)
    assert contexts.register(view, c.Search("F1", criteria, uid=True, return_options=("UPDATE",)), uids[1:],
                             limit=4)
    mb.expunge([uids[0]])
    mb.append(b"Subject: d\r\n\r\n")  # would be 2:* now, but was not then
    updates = _take(view)
    assert not [u for u in updates if isinstance(u, ContextUpdate)]
    store.close()


def test_sorted_context_inserts_at_sort_positions(tmp_path: Path) -> None:
    store, mb, uids, view = _setup(tmp_path, ["delta", "bravo", "foxtrot"])
    keys = (c.SortKey("SUBJECT"),)
    result = [uids[1], uids[0], uids[2]]  # bravo, delta, foxtrot
    assert contexts.register(view, c.Sort("S1", keys, "UTF-8", SearchFlag("\\Seen", False), uid=True,
                                          return_options=("UPDATE",)), result, limit=4)
    alpha = mb.append(b"Subject: alpha\r\n\r\n")
    charlie = mb.append(b"Subject: charlie\r\n\r\n")
    echo = mb.append(b"Subject: echo\r\n\r\n")
    updates = _take(view)
    assert updates[-1] == _change("S1", True, ("ADDTO", ((1, str(alpha)), (3, str(charlie)), (5, str(echo)))))
    mb.store_flags([uids[0], charlie], "add", ["\\Seen"])  # delta and charlie: adjacent, one run
    updates = _take(view)
    assert updates[-1] == _change("S1", True, ("REMOVEFROM", ((3, f"{charlie},{uids[0]}"),)))
    assert view.contexts is not None
    assert view.contexts.entries["S1"].result == [alpha, uids[1], echo, uids[2]]
    store.close()


def test_limit_and_cancel(tmp_path: Path) -> None:
    store, mb, uids, view = _setup(tmp_path, ["a"])
    search = c.Search("L1", FLAGGED, uid=True, return_options=("UPDATE",))
    assert contexts.register(view, search, [], limit=0)  # at least one context, whatever the setting
    assert not contexts.register(view, c.Search("L2", FLAGGED, uid=True), [], limit=1)
    assert contexts.in_use(view, "L1") and not contexts.in_use(view, "L2")
    contexts.cancel(view, ["L1", "never"])
    mb.store_flags(uids, "add", ["\\Flagged"])
    assert not [u for u in _take(view) if isinstance(u, ContextUpdate)]
    store.close()


def _replay(result: list[int], responses: list[EsearchResponse]) -> list[int]:
    out = list(result)
    for response in responses:
        for name, value in response.results:
            assert isinstance(value, ContextChange)
            for pos, seqset in value.pairs:
                numbers = [n for lo, hi in seqset.ranges if lo is not None and hi is not None
                           for n in range(lo, hi + 1)]
                if name == "REMOVEFROM":
                    out = [u for u in out if u not in numbers] if pos == 0 else out[: pos - 1] + out[pos - 1 + len(numbers):]
                elif pos == 0:
                    out = sorted({*out, *numbers})
                else:
                    out[pos - 1 : pos - 1] = numbers
    return out


def test_saved_contexts_catch_up_on_a_new_view(tmp_path: Path) -> None:
    # X-STATE: what to_saved keeps, restore_saved puts on a fresh view of the changed mailbox, telling the
    # client exactly the difference; updates then continue.
    store, mb, uids, view = _setup(tmp_path, ["d", "b", "f", "a", "c"])
    unseen = SearchFlag("\\Seen", False)
    sort = c.Sort("S1", (c.SortKey("SUBJECT"),), "UTF-8", unseen, uid=True, return_options=("UPDATE",))
    held_sort = [uids[3], uids[1], uids[4], uids[0], uids[2]]
    assert contexts.register(view, sort, held_sort, limit=4)
    assert contexts.register(view, c.Search("B1", FLAGGED, uid=True, return_options=("UPDATE",)), [], limit=4)
    assert contexts.register(view, c.Search("N1", FLAGGED, return_options=("UPDATE",)), [], limit=4)
    saved = contexts.to_saved(view)
    assert [contexts.parse_saved(x.command) for x in saved] == [sort, c.Search(
        "B1", FLAGGED, uid=True, charset=None, return_options=("UPDATE",))]  # message numbers are not kept
    view.close()
    mb.store_flags([uids[1], uids[2]], "add", ["\\Seen", "\\Flagged"])
    new = mb.append(b"Subject: e\r\n\r\n", flags=["\\Flagged"])
    fresh = SelectedView(mb, readonly=False)
    fresh.set_listener(mb.subscribe(fresh.on_event), None)
    told = contexts.restore_saved(fresh, saved, limit=4)
    assert all(isinstance(r, EsearchResponse) for r in told)
    by_tag = {r.tag: [r] for r in told if isinstance(r, EsearchResponse)}
    assert _replay(held_sort, by_tag["S1"]) == [uids[3], uids[4], uids[0], new]  # a, c, d, e
    assert _replay([], by_tag["B1"]) == [uids[1], uids[2], new]
    mb.store_flags([uids[0]], "add", ["\\Seen"])
    later = [u.response for u in _take(fresh) if isinstance(u, ContextUpdate)]
    assert [r.tag for r in later] == ["S1"]
    assert _replay([uids[3], uids[4], uids[0], new], later) == [uids[3], uids[4], new]
    store.close()


def test_saved_contexts_are_bounded(tmp_path: Path) -> None:
    store, _, uids, view = _setup(tmp_path, [str(i) for i in range(600)])
    scattered = uids[::2]  # 300 single-UID ranges: too large to keep next to a second one
    assert contexts.register(view, c.Search("BIG", FLAGGED, uid=True), scattered, limit=4)
    assert contexts.register(view, c.Search("BIG2", FLAGGED, uid=True), scattered, limit=4)
    saved = contexts.to_saved(view)
    assert [contexts.parse_saved(x.command).tag for x in saved] == ["BIG"]  # type: ignore[union-attr]
    store.close()


def test_many_and_few_arrivals_place_alike(tmp_path: Path) -> None:
    # Up to contexts._FEW arrivals are placed by binary search, more by one sort: both rebuild the sort order.
    store, mb, uids, view = _setup(tmp_path, [f"m{(i * 7) % 11}" for i in range(11)])
    keys = (c.SortKey("SUBJECT", True), c.SortKey("ARRIVAL"))
    everything = SearchFlag("\\Deleted", False)
    held = sort_uids(mb, uids, keys)
    assert contexts.register(view, c.Sort("M", keys, "UTF-8", everything, uid=True), held, limit=4)
    client = list(held)
    for batch in (3, contexts._FEW + 4, 1):
        for i in range(batch):
            mb.append(b"Subject: m%d\r\n\r\n" % ((i * 5) % 13))
        client = _replay(client, [u.response for u in _take(view) if isinstance(u, ContextUpdate)])
        assert client == sort_uids(mb, list(mb.uid_array), keys)
    store.close()
