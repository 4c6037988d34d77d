from __future__ import annotations

import argparse
import io
import os
import sys

import pytest

from imapd.delivery.command import register_cli as register_deliver
from imapd.store import Store
from imapd.store.admin import register_cli


def run(argv: list[str], stdin: bytes = b"", monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imapd")
    sub = parser.add_subparsers(dest="command", required=True)
    register_cli(sub)
    register_deliver(sub)
    args = parser.parse_args(argv)
    assert monkeypatch is not None
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    rc: int = args.func(args)
    return rc


def test_user_lifecycle_and_deliver(tmp_path: object, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    d = os.path.join(str(tmp_path), "data")
    assert run(["user", "add", "alice", "--password-stdin", "--data-dir", d], b"pw\n", monkeypatch) == 0
    assert os.path.isdir(os.path.join(d, "mail", "alice", ".Sent", "cur"))
    assert run(["user", "add", "alice", "--password-stdin", "--data-dir", d], b"pw\n", monkeypatch) == 65
    assert run(["user", "add", "../x", "--password-stdin", "--data-dir", d], b"pw\n", monkeypatch) == 65
    assert run(["user", "passwd", "alice", "--password-stdin", "--data-dir", d], b"pw2\n", monkeypatch) == 0
    assert run(["user", "passwd", "bob", "--password-stdin", "--data-dir", d], b"pw2\n", monkeypatch) == 67
    capsys.readouterr()
    assert run(["user", "list", "--data-dir", d], b"", monkeypatch) == 0
    assert capsys.readouterr().out == "alice\n"
    message = b"Subject: delivered\r\n\r\nhi\r\n"
    assert run(["deliver", "alice", "-v", "--data-dir", d], message, monkeypatch) == 0
    assert capsys.readouterr().out == "1\n"
    assert run(["deliver", "alice", "--mailbox", "Archive", "--data-dir", d], message, monkeypatch) == 0
    assert run(["deliver", "nobody", "--data-dir", d], message, monkeypatch) == 67
    assert run(["deliver", "alice", "--mailbox", "Nope", "--data-dir", d], message, monkeypatch) == 65
    assert run(["deliver", "alice", "--data-dir", d], b"", monkeypatch) == 65
    s = Store(d)
    assert s.open_mailbox("alice", "INBOX").read_message(1) == message
    assert s.user("alice").status("Archive").messages == 1
    s.close()
    assert run(["user", "del", "alice", "--data-dir", d], b"", monkeypatch) == 0
    assert run(["user", "del", "alice", "--data-dir", d], b"", monkeypatch) == 67


def test_deliver_disk_full_is_tempfail(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    d = os.path.join(str(tmp_path), "data")
    assert run(["user", "add", "alice", "--password-stdin", "--data-dir", d], b"pw\n", monkeypatch) == 0

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    parser = argparse.ArgumentParser()
    register_deliver(parser.add_subparsers())
    args = parser.parse_args(["deliver", "alice", "--data-dir", d])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Subject: x\r\n\r\n")))
    monkeypatch.setattr(os, "write", full)
    assert args.func(args) == 75
    monkeypatch.undo()
    assert os.listdir(os.path.join(d, "mail", "alice", "tmp")) == []


def test_index_rebuild_cli(tmp_path: object, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    d = os.path.join(str(tmp_path), "data")
    assert run(["user", "add", "alice", "--password-stdin", "--data-dir", d], b"pw\n", monkeypatch) == 0
    message = b"Subject: delivered\r\n\r\nhi\r\n"
    for _ in range(3):
        assert run(["deliver", "alice", "--data-dir", d], message, monkeypatch) == 0
    s = Store(d)
    uv = s.open_mailbox("alice", "INBOX").uidvalidity
    s.close()
    capsys.readouterr()
    assert run(["index", "rebuild", "alice", "INBOX", "--data-dir", d], b"", monkeypatch) == 0
    assert capsys.readouterr().out == f"INBOX: UIDVALIDITY {uv}, 3 messages\n"
    assert run(["index", "rebuild", "alice", "Nope", "--data-dir", d], b"", monkeypatch) == 65
    assert run(["index", "rebuild", "nobody", "--data-dir", d], b"", monkeypatch) == 67
    # an index SQLite cannot read is set aside and rebuilt from the Maildir, UIDs kept
    index = os.path.join(d, "mail", "alice", "imapd-index.sqlite")
    for suffix in ("-wal", "-shm"):
        if os.path.exists(index + suffix):
            os.unlink(index + suffix)
    with open(index, "wb") as f:
        f.write(b"not a database" * 100)
    capsys.readouterr()
    assert run(["index", "rebuild", "alice", "--data-dir", d], b"", monkeypatch) == 0
    out = capsys.readouterr()
    assert f"INBOX: UIDVALIDITY {uv}, 3 messages\n" in out.out and "moved to" in out.err
    assert [n for n in os.listdir(os.path.join(d, "mail", "alice")) if ".broken-" in n]
    s = Store(d)
    mb = s.open_mailbox("alice", "INBOX")
    assert mb.uids().tolist() == [1, 2, 3] and mb.append(message) == 4
    s.close()
