"""Store support for the small extensions: \\Deleted totals (STATUS DELETED / DELETED-STORAGE), save dates
(SAVEDATE) and the schema migration they need."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from imapd.store import Store, UserStore
from imapd.store.index import SCHEMA_VERSION, UserIndex

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


def test_savedate_is_when_the_message_entered_this_mailbox(alice: UserStore) -> None:
    alice.create_mailbox("Other")
    mb = alice.open("INBOX")
    try:
        before = int(time.time())
        uid = mb.append(msg(1), internaldate=1_000_000_000)  # an old INTERNALDATE, saved now
        after = int(time.time())
        (info,) = mb.message_info([uid])
        assert info.internaldate == 1_000_000_000 and before <= info.savedate <= after
        time.sleep(1.1)
        ((_, copied),) = mb.copy([uid], "Other")
    finally:
        mb.release()
    other = alice.open("Other")
    try:
        (info2,) = other.message_info([copied])
        assert info2.savedate > info.savedate  # a copy is saved anew (RFC 8514 3)
        assert info2.internaldate == 1_000_000_000 and info2.emailid == info.emailid
    finally:
        other.release()


def test_schema_2_index_is_migrated_and_old_rows_report_internaldate(tmp_path: Path) -> None:
    store = Store(tmp_path / "data", durability="normal")
    user = store.create_user("bob")
    mb = user.open("INBOX")
    old_uid = mb.append(msg(1), internaldate=1_200_000_000)
    mb.release()
    path = user.index.path
    store.close()
    # what an index of schema version 2 (before save dates and thread ids) looks like: no savedate or
    # threadid column, no threads table
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE messages DROP COLUMN savedate")
    conn.execute("ALTER TABLE messages DROP COLUMN threadid")
    conn.execute("DROP TABLE threads")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()

    store = Store(tmp_path / "data", durability="normal")
    try:
        user = store.user("bob")
        assert user.index.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        mb = user.open("INBOX")
        try:
            (old,) = mb.message_info([old_uid])
            assert old.savedate == old.internaldate == 1_200_000_000  # stored before: INTERNALDATE
            assert old.threadid is None  # and no thread id (FETCH THREADID NIL)
            new_uid = mb.append(msg(2), internaldate=1_200_000_000)
            (new,) = mb.message_info([new_uid])
            assert new.savedate >= int(time.time()) - 5
            assert new.threadid is not None
        finally:
            mb.release()
    finally:
        store.close()
    # opening again (already current) changes nothing
    assert UserIndex(path, durability="normal").conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def _mail(msgid: str | None, *, refs: str = "", in_reply_to: str = "") -> bytes:
    head = f"Message-ID: {msgid}\r\n" if msgid else ""
    head += f"References: {refs}\r\n" if refs else ""
    head += f"In-Reply-To: {in_reply_to}\r\n" if in_reply_to else ""
    return f"From: a@example.org\r\nSubject: s\r\n{head}\r\nbody\r\n".encode()


def test_thread_ids_are_given_once_and_shared_by_a_thread(alice: UserStore) -> None:
    alice.create_mailbox("Other")
    mb = alice.open("INBOX")
    try:
        uids = {
            "root": mb.append(_mail("<root@x>")),
            "reply": mb.append(_mail("<r1@x>", refs="<root@x>", in_reply_to="<root@x>")),
            "deep": mb.append(_mail("<r2@x>", refs="<root@x> <r1@x>")),
            "only-irt": mb.append(_mail("<r3@x>", in_reply_to="<r1@x>")),
            "other": mb.append(_mail("<other@x>")),
            "early": mb.append(_mail("<e1@x>", refs="<late@x>")),  # its parent arrives after it
            "late": mb.append(_mail("<late@x>")),
            "sibling": mb.append(_mail("<e2@x>", refs="<late@x>")),
            "no-ids": mb.append(_mail(None)),
            "no-ids-2": mb.append(_mail(None)),
        }
        info = {name: i for name, i in zip(uids, mb.message_info(uids.values()), strict=True)}
        tid = {name: i.threadid for name, i in info.items()}
        assert all(t is not None and t.startswith("T") for t in tid.values()), tid
        assert tid["root"] == tid["reply"] == tid["deep"] == tid["only-irt"]
        assert tid["early"] == tid["late"] == tid["sibling"]
        assert len({tid["root"], tid["other"], tid["early"], tid["no-ids"], tid["no-ids-2"]}) == 5
        ((_, copied),) = mb.copy([uids["deep"]], "Other")
        moved = dict(mb.move([uids["other"]], "Other"))[uids["other"]]
    finally:
        mb.release()
    other = alice.open("Other")
    try:
        got = {i.uid: i.threadid for i in other.message_info([copied, moved])}
        assert got == {copied: tid["root"], moved: tid["other"]}  # COPY and MOVE keep the thread
        later = other.append(_mail("<r4@x>", refs="<root@x> <r2@x>"))  # another mailbox, same thread
        (info_later,) = other.message_info([later])
        assert info_later.threadid == tid["root"]
    finally:
        other.release()
