from __future__ import annotations

import os
import statistics
import threading
import time

import argon2
import pytest

from imapd.store import NoSuchUser, UserExists
from imapd.store.users import PasswdFile, hash_password, verify_password


@pytest.fixture
def pf(tmp_path: object) -> PasswdFile:
    return PasswdFile(os.path.join(str(tmp_path), "passwd"))


def test_add_verify_passwd_generation(pf: PasswdFile) -> None:
    rec = pf.add("alice", "s3cret")
    assert rec.password.startswith("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$")
    assert rec.generation == 1
    with open(pf.path) as f:
        line = f.read().strip()
    assert line.startswith("alice:{ARGON2ID}$argon2id$") and line.endswith(":xstate_gen=1")
    assert len(line.split(":")) == 8
    assert pf.verify("alice", "s3cret") is not None
    assert pf.verify("alice", "wrong") is None
    assert pf.set_password("alice", "new") == 2
    assert pf.verify("alice", "s3cret") is None
    got = pf.verify("alice", "new")
    assert got is not None and got.generation == 2
    with pytest.raises(UserExists):
        pf.add("alice", "x")
    pf.add("bob", "b")
    assert pf.list() == ["alice", "bob"]
    pf.delete("bob")
    assert pf.list() == ["alice"]
    with pytest.raises(NoSuchUser):
        pf.delete("bob")
    with pytest.raises(NoSuchUser):
        pf.set_password("bob", "x")


def test_dovecot_hashes_accepted(pf: PasswdFile) -> None:
    # what `doveadm pw -s ARGON2ID` writes: argon2id, m=65536 KiB, t=3, p=1, 16-byte salt, 32-byte hash
    dove_id = argon2.PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1, hash_len=32, salt_len=16,
                                    type=argon2.Type.ID).hash("pw-id")
    dove_i = argon2.PasswordHasher(time_cost=3, memory_cost=32768, parallelism=1, hash_len=32, salt_len=16,
                                   type=argon2.Type.I).hash("pw-i")
    with open(pf.path, "w") as f:
        f.write(f"u1:{{ARGON2ID}}{dove_id}:1000:1000::/home/u1::\n")
        f.write(f"u2:{{ARGON2I}}{dove_i}:1000:1000::/home/u2::userdb_quota_rule=*:storage=1G\n")
        f.write("u3:{PLAIN}plainpw::::::\n")
        f.write("u4:{SHA512-CRYPT}$6$salt$abc::::::\n")
        f.write("# comment\n")
    assert pf.verify("u1", "pw-id") is not None
    assert pf.verify("u1", "nope") is None
    assert pf.verify("u2", "pw-i") is not None
    assert pf.verify("u3", "plainpw") is not None
    assert pf.verify("u4", "anything") is None  # unsupported scheme never matches
    assert pf.get("u1") is not None and pf.get("u1").home == "/home/u1"  # type: ignore[union-attr]
    assert pf.set_password("u1", "x") == 1
    assert pf.get("u2").extra == {"userdb_quota_rule": "*:storage=1G"}  # type: ignore[union-attr]


def test_verify_password_primitives() -> None:
    assert verify_password(hash_password("a"), "a")
    assert not verify_password("no-scheme", "a")
    assert not verify_password("{ARGON2ID}garbage", "a")


def test_unknown_user_costs_like_wrong_password(pf: PasswdFile) -> None:
    pf.add("alice", "pw")
    pf.verify("nobody", "x")  # warm the dummy hash

    def timed(user: str) -> float:
        t = time.perf_counter()
        pf.verify(user, "wrong")
        return time.perf_counter() - t

    wrong = statistics.median(timed("alice") for _ in range(5))
    unknown = statistics.median(timed("nobody") for _ in range(5))
    assert 0.5 < unknown / wrong < 2.0


def test_concurrent_writers_lose_nothing(pf: PasswdFile) -> None:
    def add(i: int) -> None:
        PasswdFile(pf.path).add(f"user{i}", "pw")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pf.list() == sorted(f"user{i}" for i in range(6))
