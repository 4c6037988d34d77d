"""Write failures (ENOSPC, EACCES) leave no partial message and no index row, and say who/where."""

from __future__ import annotations

import errno
import os
import sqlite3

import pytest

from imapd.store import AppendItem, StorageIOError, UserStore

from .conftest import msg


def listing(mb_path: str) -> dict[str, list[str]]:
    return {d: sorted(os.listdir(os.path.join(mb_path, d))) for d in ("cur", "new", "tmp")}


def test_enospc_on_write(alice: UserStore, monkeypatch: pytest.MonkeyPatch) -> None:
    mb = alice.open("INBOX")
    mb.append(msg(1))
    before = listing(mb.path)
    state = (mb.uidnext, mb.highestmodseq, mb.exists)
    real_write = os.write
    calls = {"n": 0}

    def full(fd: int, data: bytes | memoryview) -> int:
        calls["n"] += 1
        if calls["n"] >= 2:  # the second message of the batch hits a full disk half way
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data)[:10])

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageIOError) as ei:
        mb.append_many([AppendItem(msg(2)), AppendItem(msg(3))])
    monkeypatch.setattr(os, "write", real_write)
    err = ei.value
    assert err.code == "OVERQUOTA" and err.disk_full
    assert "alice" in str(err) and "INBOX" in str(err)
    assert listing(mb.path) == before
    assert (mb.uidnext, mb.highestmodseq, mb.exists) == state
    row = alice.index.conn.execute("SELECT count(*) FROM messages WHERE mailbox=?", (mb.mailbox_id,)).fetchone()
    assert row[0] == 1
    assert mb.append(msg(4)) == 2  # and the next append works
    mb.release()


def test_unwritable_folder(alice: UserStore, monkeypatch: pytest.MonkeyPatch) -> None:
    mb = alice.open("Sent")
    os.chmod(os.path.join(mb.path, "tmp"), 0o500)
    real_open = os.open

    def denied(path: str, flags: int, mode: int = 0o777) -> int:
        creates = (("/tmp/" in str(path) and flags & os.O_CREAT)
                   or (str(path).endswith("/tmp") and flags & os.O_TMPFILE == os.O_TMPFILE))  # (an unnamed file)
        if os.geteuid() == 0 and creates:
            raise PermissionError(errno.EACCES, "Permission denied")  # root ignores the mode bits
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", denied)
    try:
        with pytest.raises(StorageIOError) as ei:
            mb.append(msg())
    finally:
        monkeypatch.undo()
        os.chmod(os.path.join(mb.path, "tmp"), 0o700)
    assert ei.value.code == "UNAVAILABLE" and "Sent" in str(ei.value)
    assert mb.exists == 0
    mb.release()


def test_index_failure_after_link_removes_file(alice: UserStore, monkeypatch: pytest.MonkeyPatch) -> None:
    mb = alice.open("Drafts")
    import imapd.store.mailbox as mailbox_mod

    def broken_fsync(path: str) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(mailbox_mod.maildir, "fsync_dir", broken_fsync)
    with pytest.raises(StorageIOError) as ei:
        mb.append(msg(), ["\\Draft"])
    monkeypatch.undo()
    assert ei.value.code == "UNAVAILABLE"
    assert listing(mb.path) == {"cur": [], "new": [], "tmp": []}
    assert mb.exists == 0 and mb.uidnext == 1
    assert mb.append(msg()) == 1
    mb.release()


def test_sqlite_full_is_typed(alice: UserStore) -> None:
    err = StorageIOError("alice", "INBOX", "append", sqlite3.OperationalError("database or disk is full"))
    assert err.code == "OVERQUOTA"
