"""APPEND writes a message as an unnamed file (``O_TMPFILE``) and links it into ``cur/``; a MULTIAPPEND of
many, and a process that cannot link unnamed files, use named ``tmp/`` files. Either way the bytes, the
INTERNALDATE (the file's mtime) and an empty ``tmp/`` afterwards are the same."""

from __future__ import annotations

import os

import pytest

from imapd.store import AppendItem, UserStore, maildir
from imapd.store.mailbox import _UNNAMED_MAX

from .conftest import msg


def files(path: str, sub: str) -> list[str]:
    return sorted(os.listdir(os.path.join(path, sub)))


def check(alice: UserStore, count: int) -> None:
    mb = alice.open("INBOX")
    items = [AppendItem(msg(n), ("\\Seen",) if n % 2 else (), 1_700_000_000.0 + n) for n in range(count)]
    uids = mb.append_many(items)
    assert uids == list(range(1, count + 1))
    assert files(mb.path, "tmp") == []
    cur = files(mb.path, "cur")
    assert len(cur) == count
    by_uid = {info.uid: info for info in mb.message_info(uids)}
    for n, uid in enumerate(uids):
        assert by_uid[uid].internaldate == 1_700_000_000 + n
        assert by_uid[uid].flags == (("\\Seen",) if n % 2 else ())
    for name in cur:
        with open(os.path.join(mb.path, "cur", name), "rb") as f:
            data = f.read()
        n = int(data.split(b"Subject: test ")[1].split(b"\r\n")[0])
        assert data == msg(n)
        assert int(os.stat(os.path.join(mb.path, "cur", name)).st_mtime) == 1_700_000_000 + n
    mb.release()


def test_unnamed_files(alice: UserStore) -> None:
    check(alice, 3)
    assert maildir._unnamed_works is True  # (this machine's kernel and filesystem allow it)


def test_many_use_named_tmp_files(alice: UserStore) -> None:
    check(alice, _UNNAMED_MAX + 1)


def test_without_unnamed_files(alice: UserStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maildir, "_unnamed_works", False)
    check(alice, 2)


def test_unnamed_file_never_replaces(alice: UserStore) -> None:
    mb = alice.open("INBOX")
    got = maildir.write_unnamed(mb.path, b"x\r\n")
    assert got is not None
    fd, base = got
    try:
        target = os.path.join(mb.path, "cur", base)
        open(target, "wb").close()
        with pytest.raises(FileExistsError):
            maildir.link_unnamed(fd, target)
    finally:
        os.close(fd)
    mb.release()
