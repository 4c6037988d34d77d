from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imapd.store import Store, UserStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data", durability="normal")
    yield s
    s.close()


@pytest.fixture
def alice(store: Store) -> UserStore:
    return store.create_user("alice")


def msg(n: int = 0, body: str = "hello") -> bytes:
    return (f"From: a@example.org\r\nTo: b@example.org\r\nSubject: test {n}\r\n"
            f"Message-ID: <{n}@example.org>\r\n\r\n{body} {n}\r\n").encode()
