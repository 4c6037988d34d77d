"""Revoked X-STATE lineages in the user's index: visible to another process, bounded by expiry."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from imapd.store.revocations import is_revoked, revoke
from imapd.store.store import Store


def test_revocation_is_shared_and_expires(tmp_path: Path) -> None:
    first, second = Store(tmp_path, durability="normal"), Store(tmp_path, durability="normal")
    try:
        a = first.create_user("u")
        b = second.user("u")  # another process on the same storage
        assert not is_revoked(b, b"L1", now=1000)  # no table yet: nothing revoked, nothing written
        revoke(a, b"L1", until=2000, now=1000)
        assert is_revoked(b, b"L1", now=1500) and not is_revoked(b, b"L2", now=1500)
        assert not is_revoked(b, b"L1", now=2002)  # every token of L1 has expired by then anyway
        assert not is_revoked(b, b"", now=1500)  # version-1 tokens have no lineage
        revoke(b, b"L2", until=5000, now=3000)  # each revocation drops the expired rows
        rows = sqlite3.connect(tmp_path / "mail" / "u" / "imapd-index.sqlite").execute(
            "SELECT lineage FROM xstate_revoked").fetchall()
        assert rows == [(b"L2",)]
    finally:
        first.close()
        second.close()
