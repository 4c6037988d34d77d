"""Recipient address -> user, as documented in imapd/delivery/recipients.py (a real passwd file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapd.delivery.recipients import Recipient, RecipientResolver
from imapd.store.users import PasswdFile


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> PasswdFile:
    pf = PasswdFile(tmp_path_factory.mktemp("users") / "passwd")
    for name in ("alice", "bob+x", "carol@example.org", "dave@other.test"):
        pf.add(name, "pw")
    return pf


@pytest.mark.parametrize(("address", "domains", "expected"), [
    ("alice@example.org", [], Recipient("alice@example.org", "alice")),
    ("alice@example.org", ["example.org"], Recipient("alice@example.org", "alice")),
    ("alice@elsewhere.test", ["example.org"], None),
    ("alice@EXAMPLE.org", ["Example.ORG"], Recipient("alice@EXAMPLE.org", "alice")),
    ("Alice@example.org", [], Recipient("Alice@example.org", "alice")),
    ("alice", ["example.org"], Recipient("alice", "alice")),
    ("alice+Work@example.org", [], Recipient("alice+Work@example.org", "alice", "Work")),
    ("alice+Lists+x@example.org", [], Recipient("alice+Lists+x@example.org", "alice", "Lists+x")),
    ("bob+x@example.org", [], Recipient("bob+x@example.org", "bob+x")),  # a user with the delimiter
    ("bob+y@example.org", [], None),
    ("carol@example.org", ["nothing.test"], Recipient("carol@example.org", "carol@example.org")),
    ("carol+Junk@example.org", [], Recipient("carol+Junk@example.org", "carol@example.org", "Junk")),
    ("carol@other.test", [], None),
    ("dave@other.test", [], Recipient("dave@other.test", "dave@other.test")),
    ('"alice"@example.org', [], Recipient('"alice"@example.org', "alice")),
    ("nobody@example.org", [], None),
])
def test_resolve(users: PasswdFile, address: str, domains: list[str], expected: Recipient | None) -> None:
    assert RecipientResolver(users, domains, "+").resolve(address) == expected


def test_no_delimiter(users: PasswdFile) -> None:
    resolver = RecipientResolver(users, [], "")
    assert resolver.resolve("alice+Work@example.org") is None
    assert resolver.resolve("bob+x@example.org") == Recipient("bob+x@example.org", "bob+x")


def test_users_file_changes_are_seen(tmp_path: Path) -> None:
    users = PasswdFile(tmp_path / "passwd")
    resolver = RecipientResolver(users, [], "+")
    assert resolver.resolve("erin@example.org") is None
    PasswdFile(users.path).add("erin", "pw")  # another process (imapd user add)
    assert resolver.resolve("erin@example.org") == Recipient("erin@example.org", "erin")


def test_resolve_recent_answers_known_users_only_while_fresh(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from imapd.delivery import recipients

    pf = PasswdFile(tmp_path / "passwd")
    pf.add("alice", "pw")
    resolver = RecipientResolver(pf, [], "+")
    assert resolver.resolve_recent("alice@example.org") is None  # nothing read yet: go to the file
    assert resolver.resolve("alice@example.org") == Recipient("alice@example.org", "alice")
    assert resolver.resolve_recent("alice+x@example.org") == Recipient("alice+x@example.org", "alice", "x")
    pf.add("bob", "pw")
    assert resolver.resolve_recent("bob@example.org") is None  # unknown to the last read: never a 550 from it
    assert resolver.resolve("bob@example.org") == Recipient("bob@example.org", "bob")
    now = recipients.time.monotonic()
    monkeypatch.setattr(recipients.time, "monotonic", lambda: now + recipients.RECENT_SECONDS + 0.1)
    assert resolver.resolve_recent("alice@example.org") is None  # stale: read the file again
