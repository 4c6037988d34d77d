"""End-to-end: SEARCH answered by the full-text index, with imaplib against real server processes.

Mail that was in the Maildir before the server started is indexed by the background backfill; APPEND
is queued for the index after its tagged OK and found by a SEARCH before and after the index has it; a foreign delivery, EXPUNGE, RENAME, DELETE and ``imapd index rebuild-fts`` keep
the answers right. The same searches against a server with ``search.fts=false`` give the same answers.
"""

from __future__ import annotations

import imaplib
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server

COUNT = 240
WORDS = ["alpha", "Bravo", "charlie", "DELTA", "écho", "straße"]


def make(i: int) -> bytes:
    word = WORDS[i % len(WORDS)]
    subject = f"=?utf-8?q?Rapport_{i}_=C3=A9t=C3=A9?=" if i % 5 == 0 else f"Report {i} {word}"
    body = f"Line one of {i}.\r\nThe {word} part, number {i * 7}.\r\n".encode()
    return (f"From: Sender {i % 4} <s{i % 4}@example.org>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
            f"X-Batch: b{i % 3}\r\nMessage-ID: <{i}@example.org>\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n").encode() + body


def texts(i: int) -> dict[str, str]:
    """What SUBJECT/FROM/BODY/TEXT/HEADER X-Batch see in message i (UID i+1), decoded and case-folded."""
    word = WORDS[i % len(WORDS)]
    subject = f"Rapport {i} été" if i % 5 == 0 else f"Report {i} {word}"
    body = f"Line one of {i}.\r\nThe {word} part, number {i * 7}.\r\n"
    return {"SUBJECT": subject.casefold(), "FROM": f"sender {i % 4} <s{i % 4}@example.org>",
            "BODY": body.casefold(), "TEXT": f"<s{i % 4}@example.org> {subject}\n".casefold() + body.casefold(),
            "HEADER X-Batch": f"b{i % 3}"}


# (key, value): a decoded subject, an address, a charset-folded body word (ß = ss), a header-only needle
# for TEXT, a header value, a short needle (no trigram: answered by instr()).
CRITERIA = [("SUBJECT", "été"), ("FROM", "s2@"), ("BODY", "STRASSE"), ("TEXT", "S1@EXAMPLE"),
            ("HEADER X-Batch", "b2"), ("BODY", "77")]


def expected(key: str, value: str) -> list[int]:
    """What a scan must answer, computed from how the messages were made."""
    return [i + 1 for i in range(COUNT) if value.casefold() in texts(i)[key]]


def seed(data_dir: Path) -> Path:
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data_dir), stdin="secret1")
    new = data_dir / "mail" / "alice" / "new"
    for i in range(COUNT):
        (new / f"{1700000000 + i}.M{i}P1.seed").write_bytes(make(i))
    return data_dir / "mail" / "alice"


def search_literal(imap: imaplib.IMAP4, key: str, value: str) -> list[int]:
    imap.literal = value.encode()
    typ, data = imap.uid("SEARCH", "CHARSET", "UTF-8", *key.split())
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


def run_all(imap: imaplib.IMAP4) -> dict[tuple[str, str], list[int]]:
    return {(key, value): search_literal(imap, key, value) for key, value in CRITERIA}


def docs(root: Path, mailbox_id: int = 1) -> int:
    path = root / "imapd-fts" / f"{mailbox_id}.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM docs").fetchone()[0])


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    data_dir = tmp_path_factory.mktemp("fts") / "data"
    data_dir.mkdir()
    root = seed(data_dir)
    srv = start_server(data_dir)
    srv.users["alice"] = "secret1"
    try:
        yield srv, root
    finally:
        stop_server(srv)


def connect(server: RunningServer) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(server.host, server.port, timeout=30)
    imap.login("alice", "secret1")
    return imap


def test_existing_mail_is_backfilled_and_answers_match_the_scan(indexed: tuple[RunningServer, Path]) -> None:
    srv, root = indexed
    imap = connect(srv)
    imap.select("INBOX")
    first = run_all(imap)  # whatever the backfill has done by now: the answers are the scan's
    for (key, value), uids in first.items():
        assert uids == expected(key, value), (key, value)
    assert expected("BODY", "STRASSE") and expected("TEXT", "S1@EXAMPLE")
    deadline = time.monotonic() + 60
    while docs(root) < COUNT and time.monotonic() < deadline:
        time.sleep(0.1)
    assert docs(root) == COUNT
    assert re.search(r"full-text backfill of alice/1: \d+ messages indexed", srv.log()), srv.log()[-2000:]
    for (key, value), uids in run_all(imap).items():
        assert uids == expected(key, value), (key, value)
    imap.logout()


def test_append_foreign_delivery_and_expunge(indexed: tuple[RunningServer, Path]) -> None:
    srv, root = indexed
    imap = connect(srv)
    imap.select("INBOX")
    typ, _ = imap.append("INBOX", "", None, b"Subject: fresh zebra\r\n\r\nquokka inside\r\n")
    assert typ == "OK"
    assert search_literal(imap, "BODY", "QUOKKA") == [COUNT + 1]
    assert search_literal(imap, "SUBJECT", "zebr") == [COUNT + 1]
    (root / "new" / "1800000000.M1P2.foreign").write_bytes(b"Subject: from outside\r\n\r\nwombat quokka\r\n")
    imap.noop()
    assert search_literal(imap, "BODY", "quokka") == [COUNT + 1, COUNT + 2]
    imap.uid("STORE", str(COUNT + 1), "+FLAGS.SILENT", "(\\Deleted)")
    imap.expunge()
    assert search_literal(imap, "BODY", "quokka") == [COUNT + 2]
    assert search_literal(imap, "TEXT", "wombat") == [COUNT + 2]
    imap.logout()


def indexed_uids(root: Path, mailbox_id: int = 1) -> set[int]:
    path = root / "imapd-fts" / f"{mailbox_id}.sqlite"
    with sqlite3.connect(path) as conn:
        return {int(uid) for (uid,) in conn.execute("SELECT uid FROM docs")}


def test_appended_mail_is_found_while_queued_and_then_indexed(indexed: tuple[RunningServer, Path]) -> None:
    """APPEND answers before the full-text index holds its message (the queue is written later, off the
    tagged OK): a SEARCH at once scans it; within the flush delay the index holds it and answers the same."""
    srv, root = indexed
    imap = connect(srv)
    imap.select("INBOX")
    typ, data = imap.append("INBOX", "", None, b"Subject: queued\r\n\r\nnarwhal capybara\r\n")
    assert typ == "OK"
    uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))  # type: ignore[union-attr]
    assert search_literal(imap, "BODY", "CAPYBARA") == [uid]
    deadline = time.monotonic() + 30
    while uid not in indexed_uids(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uid in indexed_uids(root)
    assert search_literal(imap, "BODY", "capybara") == [uid]
    assert search_literal(imap, "TEXT", "narwhal") == [uid]
    imap.logout()


def test_rename_delete_and_rebuild(indexed: tuple[RunningServer, Path]) -> None:
    srv, root = indexed
    imap = connect(srv)
    imap.create("Proj")
    for i in range(3):
        imap.append("Proj", "", None, f"Subject: proj {i}\r\n\r\nbody platypus{i}\r\n".encode())
    imap.select("Proj")
    assert search_literal(imap, "BODY", "platypus1") == [2]
    files = set(os.listdir(root / "imapd-fts"))
    imap.close()
    assert imap.rename("Proj", "Work")[0] == "OK"
    imap.select("Work")
    assert search_literal(imap, "BODY", "platypus") == [1, 2, 3]
    assert set(os.listdir(root / "imapd-fts")) == files  # the file is named by the mailbox id
    proc = imapd_cli("index", "rebuild-fts", "alice", "--data-dir", str(srv.data_dir))
    assert re.search(rb"INBOX: \d+ messages indexed", proc.stdout), proc.stdout
    assert search_literal(imap, "BODY", "platypus2") == [3]
    imap.close()
    ids = {int(name.split(".")[0]) for name in files}
    assert imap.delete("Work")[0] == "OK"
    left = {int(name.split(".")[0]) for name in os.listdir(root / "imapd-fts")}
    assert len(ids - left) == 1  # the deleted mailbox's file went with it
    imap.select("INBOX")
    assert search_literal(imap, "BODY", "STRASSE") == expected("BODY", "STRASSE")
    imap.logout()


def test_same_answers_without_the_index(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    root = seed(data_dir)
    srv = start_server(data_dir, "-o", "search.fts=false")
    try:
        imap = connect(srv)
        imap.select("INBOX")
        for (key, value), uids in run_all(imap).items():
            assert uids == expected(key, value), (key, value)
        imap.logout()
    finally:
        stop_server(srv)
    assert not (root / "imapd-fts").exists()
