"""The Maildir describes itself: dovecot-uidlist is kept up to date, so a rebuilt or restored index keeps
UIDs and UIDVALIDITY; a lost cur/ new/ tmp/ or a crashed RENAME does not re-index the folder."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time

import pytest

from imapd.store import Store, UserStore
from imapd.store.dovecot import read_uidlist
from imapd.store.userstore import INDEX_FILE

from .conftest import msg


def uidlist_lines(folder: str) -> list[str]:
    with open(os.path.join(folder, "dovecot-uidlist")) as f:
        return f.read().splitlines()


def test_uidlist_written_as_dovecot_does(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    assert uidlist_lines(mb.path) == [f"3 V{mb.uidvalidity} N1 G{mb.mailboxid}"]
    mb.append(msg(1))
    mb.append(msg(2), ["$Label"])
    lines = uidlist_lines(mb.path)
    rows = mb.index_rows(None, "base")
    # header as created, then one appended "<uid> :<base name>" line per message, in UID order
    assert lines == [f"3 V{mb.uidvalidity} N1 G{mb.mailboxid}", f"1 :{rows[0][1]}", f"2 :{rows[1][1]}"]
    parsed = read_uidlist(mb.path)
    assert parsed is not None and parsed.uidnext == 3 and parsed.guid == mb.mailboxid
    assert parsed.uids == {rows[0][1]: 1, rows[1][1]: 2}
    mb.copy([1], "Archive")
    arch = alice.folder_path("Archive")
    assert [ln.split()[0] for ln in uidlist_lines(arch)[1:]] == ["1"]
    mb.release()


def test_uidlist_compacted_when_stale_lines_dominate(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    from imapd.store.mailbox import AppendItem

    uids = mb.append_many([AppendItem(msg(i)) for i in range(600)], fsync=False)
    assert len(uidlist_lines(mb.path)) == 601
    mb.expunge(uids[:590])
    lines = uidlist_lines(mb.path)
    assert lines[0] == f"3 V{mb.uidvalidity} N601 G{mb.mailboxid}"  # rewritten: header carries UIDNEXT
    assert [int(ln.split()[0]) for ln in lines[1:]] == uids[590:]
    mb.release()


def test_rebuild_keeps_uids_and_uidvalidity(store: Store, alice: UserStore) -> None:
    mb = alice.open("INBOX")
    for i in range(5):
        mb.append(msg(i), ["\\Seen"] if i % 2 else [])
    mb.expunge([2])
    mb.store_flags([4], "add", ["\\Flagged", "Work"])
    before = (mb.uidvalidity, mb.uids().tolist(), mb.uidnext, [mb.flags(u) for u in mb.uids()])
    mb.release()
    arch = alice.open("Archive")
    arch.append(msg(9))
    arch_uv = arch.uidvalidity
    arch.release()
    store.close()
    # the index is lost entirely
    root = os.path.join(store.mail_root, "alice")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(os.path.join(root, INDEX_FILE + suffix)):
            os.unlink(os.path.join(root, INDEX_FILE + suffix))
    s2 = Store(store.data_dir, durability="normal")
    us = s2.user("alice")
    done = dict((n, (uv, c)) for n, uv, c in us.rebuild_index())
    assert done["INBOX"] == (before[0], 4) and done["Archive"] == (arch_uv, 1)
    mb = us.open("INBOX")
    assert (mb.uidvalidity, mb.uids().tolist(), mb.uidnext, [mb.flags(u) for u in mb.uids()]) == before
    assert mb.append(msg(7)) == 6
    mb.release()
    s2.close()


def test_rebuild_one_mailbox(alice: UserStore) -> None:
    mb = alice.open("Archive")
    mb.append(msg(1))
    mb.append(msg(2))
    uv = mb.uidvalidity
    mb.expunge([1])
    mb.release()
    assert alice.rebuild_index("Archive") == [("Archive", uv, 1)]
    mb = alice.open("Archive")
    assert mb.uidvalidity == uv and mb.uids().tolist() == [2] and mb.uidnext == 3
    mb.release()


def test_restored_index_backup_does_not_reuse_uids(store: Store, alice: UserStore, tmp_path: object) -> None:
    mb = alice.open("INBOX")
    for i in range(3):
        mb.append(msg(i))
    mb.copy([1, 2], "Archive")
    backup = os.path.join(str(tmp_path), "backup.sqlite")
    with sqlite3.connect(backup) as dst:
        alice.index.conn.backup(dst)
    mb.append(msg(3), ["\\Seen"])  # UID 4: after the backup, still on disk
    mb.append(msg(4))  # UID 5: after the backup, then expunged
    mb.copy([3], "Archive")  # Archive UID 3, after the backup
    mb.expunge([1, 5])
    seen_modseq = mb.highestmodseq
    mb.release()
    store.close()
    root = os.path.join(store.mail_root, "alice")
    for suffix in ("-wal", "-shm"):
        if os.path.exists(os.path.join(root, INDEX_FILE + suffix)):
            os.unlink(os.path.join(root, INDEX_FILE + suffix))
    shutil.copy(backup, os.path.join(root, INDEX_FILE))
    s2 = Store(store.data_dir, durability="normal")
    mb = s2.open_mailbox("alice", "INBOX")
    assert mb.uids().tolist() == [2, 3, 4]  # the later message kept its UID, the expunged ones are gone
    assert mb.flags(4) == ("\\Seen",)
    assert mb.read_message(4) == msg(3)
    assert mb.uidnext == 6
    assert mb.append(msg(5)) == 6  # never 4 or 5 again under this UIDVALIDITY
    assert mb.expunged_since(0)[1] is False  # the history of that gap is unknown, and said so
    assert mb.expunged_since(seen_modseq)[1] is False
    assert mb.highestmodseq > seen_modseq  # MODSEQ never goes back below what clients have seen
    # a mailbox nobody opened is checked too before a COPY gives out its UIDs
    assert mb.copy([2], "Archive") == [(2, 4)]
    assert s2.user("alice").status("Archive").uidnext == 5
    mb.release()
    s2.close()


@pytest.mark.parametrize("sub", ["new", "cur", "tmp"])
@pytest.mark.parametrize("folder", ["INBOX", "Archive"])
def test_missing_subdirectory_keeps_uidvalidity(store: Store, alice: UserStore, sub: str, folder: str) -> None:
    mb = alice.open(folder)
    mb.append(msg(1), ["Kw"])
    uv, mailboxid = mb.uidvalidity, mb.mailboxid
    mb.release()
    path = alice.folder_path(folder)
    if sub == "cur":
        shutil.rmtree(os.path.join(path, "cur"))
    else:
        os.rmdir(os.path.join(path, sub))
    # another process (a fresh Store) sees the folder first
    s2 = Store(store.data_dir, durability="normal")
    us = s2.user("alice")
    assert folder in [m.name for m in us.list_mailboxes()]
    mb = us.open(folder)
    assert (mb.uidvalidity, mb.mailboxid) == (uv, mailboxid)
    assert os.path.isdir(os.path.join(path, sub))
    if sub == "cur":
        assert mb.uids().tolist() == [] and mb.expunged_since(0)[0] == [1]  # the file went with cur/
    else:
        assert mb.uids().tolist() == [1] and mb.flags(1) == ("Kw",)
    mb.release()
    s2.close()


def test_missing_new_in_open_mailbox(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    mb.append(msg(1))
    uv = mb.uidvalidity
    os.rmdir(os.path.join(mb.path, "new"))
    os.rmdir(os.path.join(mb.path, "tmp"))
    mb.sync()
    assert not mb.deleted and mb.uidvalidity == uv and mb.uids().tolist() == [1]
    assert os.path.isdir(os.path.join(mb.path, "new"))
    assert mb.append(msg(2)) == 2  # tmp/ comes back for the write
    mb.release()


def test_rename_crash_before_commit_is_recovered(store: Store, alice: UserStore) -> None:
    alice.create_mailbox("Work")
    alice.create_mailbox("Work/Sub")
    alice.subscribe("Work")
    mb = alice.open("Work")
    mb.append(msg(1), ["Kw"])
    uv, mid, mailboxid = mb.uidvalidity, mb.mailbox_id, mb.mailboxid
    mb.release()
    store.close()
    # the directory renames of RENAME Work Jobs happened, the index COMMIT did not (crash)
    root = os.path.join(store.mail_root, "alice")
    os.rename(os.path.join(root, ".Work"), os.path.join(root, ".Jobs"))
    os.rename(os.path.join(root, ".Work.Sub"), os.path.join(root, ".Jobs.Sub"))
    s2 = Store(store.data_dir, durability="normal")
    us = s2.user("alice")
    names = [m.name for m in us.list_mailboxes()]
    assert "Jobs" in names and "Jobs/Sub" in names and "Work" not in names
    mb = us.open("Jobs")
    assert (mb.uidvalidity, mb.mailbox_id, mb.mailboxid) == (uv, mid, mailboxid)
    assert mb.uids().tolist() == [1] and mb.flags(1) == ("Kw",)
    assert "Jobs" in us.subscriptions()
    mb.release()
    s2.close()


def test_rename_writes_guid_for_folders_without_uidlist(store: Store, alice: UserStore) -> None:
    alice.create_mailbox("Old")
    mb = alice.open("Old")
    mb.append(msg(1))
    uv = mb.uidvalidity
    mb.release()
    os.unlink(os.path.join(mb.path, "dovecot-uidlist"))  # as an index made before uidlists were written
    alice.rename_mailbox("Old", "New")
    head = uidlist_lines(alice.folder_path("New"))[0]
    assert head.startswith(f"3 V{uv} ") and head.endswith(f" G{alice.status('New').mailboxid}")


def test_old_tmp_files_are_swept_on_open(store: Store, alice: UserStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import imapd.store.maildir as md

    path = alice.folder_path("Archive")
    old = os.path.join(path, "tmp", "1.M1P1.crashed")
    with open(old, "wb") as f:
        f.write(b"partial")
    time.sleep(0.3)
    fresh = os.path.join(path, "tmp", "2.M2P2.writing")
    with open(fresh, "wb") as f:
        f.write(b"in progress")
    monkeypatch.setattr(md, "TMP_MAX_AGE", 0.2)  # stands for 36 hours
    assert md.TMP_MAX_AGE == 0.2
    mb = alice.open("Archive")
    assert os.listdir(os.path.join(path, "tmp")) == ["2.M2P2.writing"]
    mb.release()
    assert md.sweep_tmp(path, max_age=36 * 3600) == 0


def test_default_tmp_age_is_36_hours() -> None:
    import imapd.store.maildir as md

    assert md.TMP_MAX_AGE == 36 * 3600


def test_open_takes_no_write_lock_when_schema_is_current(store: Store, alice: UserStore) -> None:
    path = alice.index.path
    from imapd.store.index import SCHEMA_VERSION

    assert alice.index.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        from imapd.store.index import UserIndex

        t = time.perf_counter()
        idx = UserIndex(path, durability="normal")  # must not wait for the lock (busy_timeout is 30 s)
        assert time.perf_counter() - t < 1.0
        idx.close()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
