"""Batched FETCH (FetchPlan.prefetch) and the serialized ENVELOPE/BODYSTRUCTURE cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imapd.protocol.fetch_items import BodySection, FetchAttr, FetchBody
from imapd.protocol.response_writer import ResponseWriter
from imapd.protocol.responses import FetchResponse
from imapd.protocol.values import Raw
from imapd.session.fetch import FetchPlan, ValueCache, render
from imapd.store import Mailbox, Store

EIGHT_BIT = "From: José <jose@exämple.org>\r\nSubject: café ☕\r\nMessage-ID: <c@x>\r\n\r\nhi\r\n".encode()
ITEMS = (FetchAttr("UID"), FetchAttr("FLAGS"), FetchAttr("RFC822.SIZE"), FetchAttr("ENVELOPE"),
         FetchAttr("BODYSTRUCTURE"), FetchAttr("BODY"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data", durability="normal")
    yield s
    s.close()


@pytest.fixture
def mailbox(store: Store) -> Iterator[Mailbox]:
    mb = store.create_user("alice").open("INBOX")
    mb.append(EIGHT_BIT, internaldate=1_700_000_000)
    for i in range(2, 6):
        mb.append(f"Subject: plain {i}\r\nFrom: a{i}@x\r\n\r\nbody\r\n".encode(), internaldate=1_700_000_000)
    yield mb
    mb.release()


def _wire(mb: Mailbox, plan: FetchPlan, utf8: bool, cache: ValueCache | None = None) -> list[bytes]:
    writer = ResponseWriter(utf8=utf8)
    uids = list(mb.uids())
    batch = plan.prefetch(mb, uids, utf8=utf8, cache=cache) if cache is not None else None
    out = []
    for seq, u in enumerate(uids, 1):
        items = render(plan, mb, u, info=None, flags=mb.flags(u) or (), modseq=None, batch=batch)
        out.append(writer.write(FetchResponse(seq, items)))
    return out


@pytest.mark.parametrize("utf8", [False, True])
def test_batch_serializes_like_plain_render(mailbox: Mailbox, utf8: bool) -> None:
    plan = FetchPlan(ITEMS)
    cache = ValueCache()
    expected = _wire(mailbox, plan, utf8)
    assert _wire(mailbox, plan, utf8, cache) == expected  # cold: rendered, serialized, stored
    assert cache.hits == 0 and len(cache) == 4 * 5  # RFC822.SIZE, ENVELOPE, BODYSTRUCTURE, BODY
    assert _wire(mailbox, plan, utf8, cache) == expected  # warm: every value from the cache
    assert cache.hits == 4 * 5


def test_utf8_mode_is_part_of_the_key(mailbox: Mailbox) -> None:
    plan = FetchPlan((FetchAttr("ENVELOPE"),))
    cache = ValueCache()
    plain = _wire(mailbox, plan, False, cache)[0]
    utf8 = _wire(mailbox, plan, True, cache)[0]
    assert b'"caf\xc3\xa9 \xe2\x98\x95"' in utf8  # quoted UTF-8 under UTF8=ACCEPT
    assert b'{9}\r\ncaf\xc3\xa9 \xe2\x98\x95' in plain  # a literal otherwise
    assert cache.hits == 0 and len(cache) == 2 * 5
    assert _wire(mailbox, plan, False, cache)[0] == plain


def test_warm_batch_skips_metadata(mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = FetchPlan((FetchAttr("UID"), FetchAttr("ENVELOPE"), FetchAttr("BODYSTRUCTURE")))
    cache = ValueCache()
    calls: list[list[int]] = []
    real = Mailbox.metadata_many

    def spy(self: Mailbox, uids: list[int]) -> object:
        calls.append(list(uids))
        return real(self, uids)

    monkeypatch.setattr(Mailbox, "metadata_many", spy)
    monkeypatch.setattr(Mailbox, "metadata", lambda self, uid: pytest.fail("one query per message"))
    first = _wire(mailbox, plan, False, cache)
    assert calls == [list(mailbox.uids())]  # one query for the whole batch
    calls.clear()
    assert _wire(mailbox, plan, False, cache) == first
    assert calls == []


def test_sections_still_need_metadata(mailbox: Mailbox) -> None:
    plan = FetchPlan((FetchAttr("ENVELOPE"), FetchBody(BodySection((), "HEADER", ()), None, True, False)))
    cache = ValueCache()
    first = _wire(mailbox, plan, False, cache)
    assert _wire(mailbox, plan, False, cache) == first == _wire(mailbox, plan, False)


def test_values_are_raw_only_with_a_batch(mailbox: Mailbox) -> None:
    plan = FetchPlan((FetchAttr("ENVELOPE"),))
    u = mailbox.uids()[0]
    assert isinstance(render(plan, mailbox, u, info=None, flags=(), modseq=None)[0][1], list)
    batch = plan.prefetch(mailbox, [u], utf8=False, cache=ValueCache())
    assert isinstance(render(plan, mailbox, u, info=None, flags=(), modseq=None, batch=batch)[0][1], Raw)


def test_recreated_mailbox_does_not_see_stale_values(store: Store) -> None:
    """Same user, same name, same UIDs after DELETE + CREATE: MAILBOXID and UIDVALIDITY change."""
    user = store.create_user("bob")
    user.create_mailbox("Box")
    plan = FetchPlan((FetchAttr("ENVELOPE"),))
    cache = ValueCache()
    mb = user.open("Box")
    mb.append(b"Subject: old\r\n\r\nx\r\n")
    old = _wire(mb, plan, False, cache)
    mb.release()
    user.delete_mailbox("Box")
    user.create_mailbox("Box")
    mb = user.open("Box")
    mb.append(b"Subject: new\r\n\r\nx\r\n")
    assert mb.uids()[0] == 1
    new = _wire(mb, plan, False, cache)
    assert b'"new"' in new[0] and new != old
    mb.release()


def test_expunged_uid_is_never_served_again(mailbox: Mailbox) -> None:
    plan = FetchPlan((FetchAttr("ENVELOPE"),))
    cache = ValueCache()
    _wire(mailbox, plan, False, cache)
    gone = mailbox.uids()[-1]
    mailbox.expunge([gone])
    batch = plan.prefetch(mailbox, [gone], utf8=False, cache=ValueCache())
    with pytest.raises(KeyError):
        render(plan, mailbox, gone, info=None, flags=(), modseq=None, batch=batch)
    fresh = mailbox.append(b"Subject: later\r\n\r\nx\r\n")
    assert fresh > gone  # a UID never comes back under the same UIDVALIDITY: the old entry is unreachable
    assert b'"later"' in _wire(mailbox, plan, False, cache)[-1]


def test_cache_is_bounded_by_bytes() -> None:
    cache = ValueCache(max_bytes=2000)
    for i in range(100):
        cache.put(("u", "m", 1, i, False, "ENVELOPE"), Raw(b"x" * 100))
    assert cache.bytes <= 2000 and len(cache) == 2000 // 300
    assert cache.get(("u", "m", 1, 99, False, "ENVELOPE")) is not None
    assert cache.get(("u", "m", 1, 0, False, "ENVELOPE")) is None
    cache.put(("u", "m", 1, 1000, False, "BODY"), Raw(b"y" * 5000))  # larger than the whole cache
    assert cache.get(("u", "m", 1, 1000, False, "BODY")) is None


@pytest.mark.parametrize("text", ["HEADER.FIELDS", "HEADER.FIELDS.NOT"])
def test_header_fields_are_cached_and_read_once(mailbox: Mailbox, text: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A webmail's message list (BODY.PEEK[HEADER.FIELDS (...)]) is served from the value cache when
    warm: the same bytes, and no message file read."""
    fields = BodySection(text=text, fields=("SUBJECT", "FROM", "X-NONE"))
    plan = FetchPlan((FetchAttr("UID"), FetchBody(section=fields, peek=True), FetchAttr("FLAGS")))
    assert not plan.needs_raw and f"BODY[{text} (SUBJECT FROM X-NONE)]" in plan.cacheable
    partial = FetchPlan((FetchBody(section=fields, peek=True, partial=(0, 10)),))
    assert partial.needs_raw and not partial.cacheable  # (the response key does not name the count)
    cache = ValueCache()
    expected = _wire(mailbox, plan, False)
    assert _wire(mailbox, plan, False, cache) == expected
    reads = []
    real = Mailbox.read_message
    monkeypatch.setattr(Mailbox, "read_message", lambda self, uid: reads.append(uid) or real(self, uid))
    assert _wire(mailbox, plan, False, cache) == expected
    assert reads == [] and cache.hits == 5
    seen = FetchPlan((FetchBody(section=fields, peek=False),))
    assert seen.cacheable and seen.sets_seen  # BODY[...] without PEEK still sets \Seen


def test_warm_size_and_date_skip_the_index(mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC822.SIZE and INTERNALDATE never change for a UID: warm, they need no message_info query (so
    Roundcube's message-list FETCH is answered from memory); EMAILID still does."""
    plan = FetchPlan((FetchAttr("UID"), FetchAttr("RFC822.SIZE"), FetchAttr("INTERNALDATE"), FetchAttr("FLAGS")))
    assert plan.needs_info and not plan.uncached_info
    cache = ValueCache()
    calls: list[list[int]] = []
    real = Mailbox.message_info
    monkeypatch.setattr(Mailbox, "message_info", lambda self, uids: calls.append(list(uids)) or real(self, uids))
    first = _wire(mailbox, plan, False, cache)
    assert first == _wire(mailbox, plan, False) and calls[0] == list(mailbox.uids())
    assert b'INTERNALDATE "14-Nov-2023 22:13:20 +0000"' in first[0]
    calls.clear()
    assert _wire(mailbox, plan, False, cache) == first
    assert calls == []
    assert plan.prefetch(mailbox, (), utf8=False, cache=cache).all_cached(mailbox.uids())
    with_id = FetchPlan((FetchAttr("RFC822.SIZE"), FetchAttr("EMAILID")))
    assert with_id.uncached_info
    assert not with_id.prefetch(mailbox, (), utf8=False, cache=cache).all_cached(mailbox.uids())


@pytest.mark.parametrize("want_uid", [False, True])
@pytest.mark.parametrize("items", [
    (FetchAttr("ENVELOPE"), FetchAttr("FLAGS")),
    (FetchAttr("UID"), FetchAttr("RFC822.SIZE"), FetchAttr("FLAGS"), FetchAttr("INTERNALDATE"),
     FetchBody(section=BodySection(text="HEADER.FIELDS", fields=("DATE", "FROM", "SUBJECT")), peek=True)),
    (FetchAttr("FLAGS"), FetchAttr("MODSEQ"), FetchAttr("BODYSTRUCTURE"), FetchAttr("BODY"), FetchAttr("UID")),
])
def test_wire_is_byte_identical_to_the_writer(mailbox: Mailbox, items: tuple, want_uid: bool) -> None:
    """FetchPlan.wire (the FETCH fast path) gives exactly the writer's bytes, cold and warm, with
    keywords, \\Recent and an empty flag list."""
    mailbox.store_flags([1], "add", ["\\Seen", "$Label1"])
    mailbox.store_flags([2], "replace", [])
    plan = FetchPlan(items)
    assert plan.wire_items is not None
    writer = ResponseWriter(utf8=False)
    uids = list(mailbox.uids())
    uids_flags = mailbox.flag_rows(uids)
    rows = [(seq, u, (*f, "\\Recent") if seq == 3 else f, m)
            for seq, (u, f, m) in enumerate(zip(*uids_flags, strict=True), 1)]
    expected = b""
    for seq, u, f, m in rows:
        out = render(plan, mailbox, u, info=None, flags=f, modseq=m)
        if want_uid:
            out.insert(0, ("UID", u))
        expected += writer.write(FetchResponse(seq, out))
    cache = ValueCache()
    for _ in range(2):  # cold, then warm
        batch = plan.prefetch(mailbox, uids, utf8=False, cache=cache)
        assert plan.wire(batch, rows, want_uid=want_uid) == (expected, False)
    assert FetchPlan((FetchAttr("ENVELOPE"), FetchAttr("EMAILID"))).wire_items is None
