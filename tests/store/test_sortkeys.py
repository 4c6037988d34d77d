"""Mailbox.metadata_many, the in-memory sort keys (built from one query, kept in step), bulk append."""

from __future__ import annotations

import msgspec

from imapd.mime import MessageMetadata
from imapd.store import Mailbox, UserStore
from imapd.store.mailbox import AppendItem
from imapd.store.sortkeys import SortFields, SortKeys, ThreadFields, thread_rows

from .conftest import msg


def _fields(t: type[msgspec.Struct]) -> list[str]:
    return [f.name for f in msgspec.structs.fields(t)]


def test_partial_structs_mirror_message_metadata() -> None:
    full = _fields(MessageMetadata)
    assert _fields(ThreadFields) == full
    assert _fields(SortFields) == full[: len(_fields(SortFields))]
    assert MessageMetadata.__struct_config__.array_like


def _snapshot(keys: SortKeys) -> tuple[object, ...]:
    strings = {name: [col.values[i] for i in col.ids] for name, col in keys.strings.items()}
    return (list(keys.uids), list(keys.internaldate), list(keys.size), list(keys.date), strings)


def test_metadata_many_matches_metadata(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    uids = [mb.append(msg(i), internaldate=1_700_000_000 + i) for i in range(5)]
    many = mb.metadata_many([*uids, 999])
    assert sorted(many) == uids
    for u in uids:
        assert many[u] == mb.metadata(u)
    # not cached yet (e.g. indexed while imapd.mime failed): parsed and stored on the way
    with mb._index.write() as conn:
        conn.execute("UPDATE messages SET meta=NULL WHERE uid=?", (uids[2],))
    again = mb.metadata_many(uids)
    assert again[uids[2]] == many[uids[2]]
    assert mb.index_rows([uids[2]], "meta")[0][1] is not None
    mb.release()


def test_sort_keys_follow_appends_and_expunges(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    uids = mb.append_many([_item(i) for i in range(20)])
    keys = mb.sort_keys()
    assert list(keys.uids) == uids
    assert _snapshot(keys) == _snapshot(SortKeys.build(mb))
    assert keys.strings["base_subject"].values[keys.strings["base_subject"].ids[0]] == "test 0"
    mb.expunge(uids[3:6])
    more = mb.append_many([_item(i) for i in range(20, 25)])
    again = mb.sort_keys()
    assert again is keys  # refreshed in place, not rebuilt
    assert list(again.uids) == [u for u in uids if u not in uids[3:6]] + more
    assert _snapshot(again) == _snapshot(SortKeys.build(mb))
    mb.append(msg(99))
    assert _snapshot(mb.sort_keys()) == _snapshot(SortKeys.build(mb))
    mb.release()


def test_sort_keys_positions(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    uids = mb.append_many([_item(i) for i in range(6)])
    keys = mb.sort_keys()
    assert keys.positions(uids) is None
    assert keys.positions([uids[1], uids[4], 4242]) == [1, 4]
    assert keys.positions([]) == []
    mb.release()


def test_thread_rows(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    raw = b"Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nReferences: <z@x> <a@x>\r\nSubject: Re: hi\r\n\r\nx\r\n"
    uid = mb.append(raw, internaldate=1_700_000_000)
    [(u, idate, size, fields)] = thread_rows(mb, [uid, 77])
    assert (u, idate, size) == (uid, 1_700_000_000, len(raw))
    meta = mb.metadata(uid)
    assert (fields.message_id, fields.in_reply_to, fields.references, fields.base_subject, fields.is_reply) == (
        meta.message_id, meta.in_reply_to, meta.references, meta.base_subject, meta.is_reply)
    mb.release()


def test_append_many_without_fsync(alice: UserStore) -> None:
    mb: Mailbox = alice.open("INBOX")
    uids = mb.append_many([_item(i) for i in range(3)], fsync=False)
    assert [mb.read_message(u) for u in uids] == [msg(i) for i in range(3)]
    mb.release()


def _item(i: int) -> AppendItem:
    return AppendItem(msg(i), (), 1_700_000_000 + i)
