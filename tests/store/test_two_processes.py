"""Two server processes on one data directory: a change stored only in the index (a keyword past the 26
that have Maildir letters, so no file is renamed) by one reaches an IDLE client of the other promptly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, start_server, stop_server
from tests.rawimap import RawIMAP

MESSAGE = b"From: a@example.org\r\nSubject: two\r\n\r\nhello\r\n"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[RunningServer, RunningServer]]:
    a = start_server(tmp_path / "data")
    a.add_user("alice", "pw")
    b = start_server(tmp_path / "data")
    b.users = a.users
    try:
        yield a, b
    finally:
        stop_server(b)
        stop_server(a)


def login(server: RunningServer) -> RawIMAP:
    c = RawIMAP(server.host, server.port)
    c.ok("LOGIN alice pw")
    return c


def test_index_only_keyword_reaches_idle_client_of_other_process(
        servers: tuple[RunningServer, RunningServer]) -> None:
    a, b = servers
    writer = login(b)
    writer.ok(b"APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE)
    writer.ok("SELECT INBOX")
    letters = " ".join(f"kw{i:02d}" for i in range(26))  # these 26 get file-name letters a..z
    writer.ok(f"STORE 1 +FLAGS.SILENT ({letters})")
    watcher = login(a)
    watcher.ok("SELECT INBOX")
    watcher.sock.sendall(b"w1 IDLE\r\n")
    assert watcher.readline().startswith(b"+")
    time.sleep(0.5)  # the watcher is idle; nothing else happens in the Maildir from here on
    t = time.monotonic()
    writer.ok("STORE 1 +FLAGS.SILENT (kw26)")  # the 27th keyword: in the index only, no rename
    lines = watcher.read_until(rb"FETCH .*kw26", timeout=5)  # (a * FLAGS announcing kw26 may come first)
    elapsed = time.monotonic() - t
    fetch = [ln for ln in lines if b"FETCH" in ln]
    assert fetch and fetch[-1].startswith(b"* 1 FETCH (FLAGS (") and b"kw25 kw26)" in fetch[-1]
    assert elapsed < 2.0
    watcher.sock.sendall(b"DONE\r\n")
    watcher.read_until(b"w1 OK")
    writer.close()
    watcher.close()
    # watchfiles saw many batches; its "N changes detected" lines are DEBUG, not in an INFO log
    assert " detected" not in a.log() and " detected" not in b.log()
