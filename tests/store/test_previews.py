"""The RFC 8970 preview cache: computed once, kept in the index, gone with the message, and the
migration of an index made before it (schema version 2)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from imapd.mime.preview import preview_text
from imapd.store import Store, UserStore
from imapd.store.index import SCHEMA_VERSION
from imapd.store.userstore import INDEX_FILE

from .conftest import msg


def test_previews_are_computed_once_and_cached(alice: UserStore) -> None:
    inbox = alice.open("INBOX")
    uids = [inbox.append(msg(i, "preview body")) for i in range(3)]
    assert inbox.previews(uids, None) == {}  # nothing computed yet: what LAZY sees
    calls: list[bytes] = []

    def compute(raw: bytes) -> str:
        calls.append(raw)
        return preview_text(raw)

    first = inbox.previews(uids[:2], compute)
    assert first == {uids[0]: "preview body 0", uids[1]: "preview body 1"} and len(calls) == 2
    assert inbox.previews(uids, compute) == {u: f"preview body {i}" for i, u in enumerate(uids)}
    assert len(calls) == 3  # only the third was computed now
    assert inbox.previews(uids, None) == {u: f"preview body {i}" for i, u in enumerate(uids)}
    assert inbox.previews([999], compute) == {}  # no such message
    inbox.release()


def test_preview_rows_go_with_their_messages(alice: UserStore) -> None:
    inbox = alice.open("INBOX")
    uids = [inbox.append(msg(i)) for i in range(3)]
    inbox.previews(uids, preview_text)
    inbox.expunge(uids[:1])
    alice.create_mailbox("Other")
    inbox.move(uids[1:2], "Other")
    conn = alice.index.conn
    assert sorted(u for (u,) in conn.execute("SELECT uid FROM previews")) == uids[2:]
    alice.delete_mailbox("Other")
    inbox.expunge(uids[2:])
    assert conn.execute("SELECT count(*) FROM previews").fetchone()[0] == 0
    inbox.release()


def test_an_index_made_before_previews_is_migrated(tmp_path: Path) -> None:
    store = Store(tmp_path, durability="normal")
    user = store.create_user("u")
    mb = user.open("INBOX")
    uid = mb.append(msg(1, "kept"))
    mb.release()
    store.close()
    conn = sqlite3.connect(os.path.join(tmp_path, "mail", "u", INDEX_FILE))
    conn.executescript("DROP TRIGGER previews_message_gone; DROP TABLE previews; PRAGMA user_version=2;")
    conn.close()
    store = Store(tmp_path, durability="normal")
    user = store.user("u")
    assert user.index.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    mb = user.open("INBOX")
    assert mb.previews([uid], preview_text) == {uid: "kept 1"}
    mb.expunge([uid])
    assert user.index.conn.execute("SELECT count(*) FROM previews").fetchone()[0] == 0
    mb.release()
    store.close()
