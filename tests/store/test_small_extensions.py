"""Store support for the small extensions: \\Deleted totals (STATUS DELETED / DELETED-STORAGE)."""

from __future__ import annotations

from imapd.store import UserStore

from .conftest import msg


def test_deleted_totals_open_and_closed(alice: UserStore) -> None:
    alice.create_mailbox("Box")
    mb = alice.open("Box")
    try:
        uids = [mb.append(msg(i, "x" * (100 * i))) for i in range(1, 5)]
        sizes = dict(zip(uids, (info.size for info in mb.message_info(uids)), strict=True))
        st = mb.status()
        assert (st.deleted, st.deleted_size) == (0, 0)
        mb.store_flags([uids[1], uids[3]], "add", ["\\Deleted"])
        st = mb.status()
        assert st.deleted == 2 and st.deleted_size == sizes[uids[1]] + sizes[uids[3]]
        assert st.size == sum(sizes.values())
    finally:
        mb.release()
    # not open: the same figures from the index alone
    assert alice.store.registry_get("alice", mb.mailbox_id) is None
    st = alice.status("Box")
    assert st.deleted == 2 and st.deleted_size == sizes[uids[1]] + sizes[uids[3]]
    mb = alice.open("Box")
    try:
        mb.expunge([uids[1]])
        st = mb.status()
        assert st.deleted == 1 and st.deleted_size == sizes[uids[3]]
    finally:
        mb.release()
