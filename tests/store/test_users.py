from __future__ import annotations

import os
import shutil
import statistics
import subprocess
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
    assert rec.counter == 1
    with open(pf.path) as f:
        line = f.read().strip()
    assert line.startswith("alice:{ARGON2ID}$argon2id$") and line.endswith(":xstate_gen=1")
    assert len(line.split(":")) == 8
    assert pf.verify("alice", "s3cret") is not None
    assert pf.verify("alice", "wrong") is None
    first = pf.get("alice")
    assert first is not None and first.generation == rec.generation
    new_gen = pf.set_password("alice", "new")
    assert new_gen != rec.generation and 0 <= new_gen < 2**63
    assert pf.verify("alice", "s3cret") is None
    got = pf.verify("alice", "new")
    assert got is not None and got.generation == new_gen and got.counter == 2
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


def _edit(pf: PasswdFile, old: str, new: str) -> None:
    """What another tool does: rewrite the file in place, no lock, no counter."""
    with open(pf.path) as f:
        text = f.read()
    assert old in text
    with open(pf.path, "w") as f:
        f.write(text.replace(old, new))


def test_generation_follows_every_change_to_the_entry(pf: PasswdFile) -> None:
    pf.add("carol", "one")
    carol = pf.get("carol")
    assert carol is not None
    seen = {carol.generation}
    # Delete and re-add with imapd: a new hash, and a counter that did not go back to 1.
    pf.delete("carol")
    assert pf.get("carol") is None
    pf.add("carol", "one")
    carol = pf.get("carol")
    assert carol is not None and carol.counter == 3 and carol.generation not in seen
    seen.add(carol.generation)
    # Outside edits, read at once (the file is stat()ed on every lookup): the hash, another field.
    _edit(pf, carol.password, "{PLAIN}two")
    edited = pf.get("carol")
    assert edited is not None and edited.generation not in seen and pf.verify("carol", "two") is not None
    seen.add(edited.generation)
    _edit(pf, ":xstate_gen=", ":nologin=y xstate_gen=")
    flagged = pf.get("carol")
    assert flagged is not None and flagged.generation not in seen
    seen.add(flagged.generation)
    # Another tool deletes the line and later puts back the very same line: still a new generation,
    # because `imapd user del` moved the counter on in passwd.generations, which the tool did not touch.
    line = flagged.to_line()
    pf.delete("carol")
    with open(pf.path, "a") as f:
        f.write(line + "\n")
    back = pf.get("carol")
    assert back is not None and back.to_line() == line and back.generation not in seen
    # Entries without a counter (a Dovecot file as it was) still get a stable generation of their own.
    with open(pf.path, "a") as f:
        f.write("dave:{PLAIN}x::::::\n")
    dave = pf.get("dave")
    assert dave is not None and dave.counter == 0 and dave.generation == PasswdFile(pf.path).get("dave").generation  # type: ignore[union-attr]


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
    assert pf.verify("u4", "anything") is None  # a malformed hash never matches
    assert pf.get("u1") is not None and pf.get("u1").home == "/home/u1"  # type: ignore[union-attr]
    pf.set_password("u1", "x")
    assert pf.get("u1").counter == 1  # type: ignore[union-attr]
    assert pf.get("u2").extra == {"userdb_quota_rule": "*:storage=1G"}  # type: ignore[union-attr]


def test_verify_password_primitives() -> None:
    assert verify_password(hash_password("a"), "a")
    assert not verify_password("no-scheme", "a")
    assert not verify_password("{ARGON2ID}garbage", "a")
    assert not verify_password("{NOSUCH}a", "a")


# Made by Dovecot 2.3.19 (`doveadm pw -s SCHEME -p 'pässwörd 1'`), so the formats are Dovecot's own.
DOVEADM_PASSWORD = "pässwörd 1"
DOVEADM_HASHES = [
    "{SHA512-CRYPT}$6$UF/cftE7w1.QtE4B$BJKZZGaw/N980jJri/QOpQxQRrPf7/hGCEmHsSq7ScJIAz155VfmWmKzSpjJcL4A3HnqS7fK"
    ".VkcbTtxC0Sdk.",
    "{SHA256-CRYPT}$5$/VIhNICkVm3Vw5pP$ZDatiY3sngRVhjoEYT4UOWtyHFJaObP0JD/7LBFVUE8",
    "{BLF-CRYPT}$2y$05$4WpluWLEeMxwVKm9LoVVL.uf4nDbdD1OqDlEFz3S8UUFA0iQJYDo6",
    "{MD5-CRYPT}$1$bawK05.H$1stE5n2MyzRMy2bJm4rjj/",
    "{CRYPT}$2y$05$15fWLQ0dNgs312eMNyeXguFDgtRDt9AdonwsKeK1NV1IUyfOl0hBi",
    "{PBKDF2}$1$e8wg.zuafBomhKj6$5000$d272fb265ad5a41ae18880fa958784d08266e844",
    "{SSHA512}yLAVsv4PKicTc4+3or3+eJjhRYAD6y4KwsKq4goJQwuXEDGCQwo/iGbRth0nGoSPAPOc/X7upKjHPLDMO/cIY9ZgYt4=",
    "{SSHA256}H6juOjKpIdFEHnGf+ysTVT48bNwn3OclU8Evf3jE5wzWGLEt",
    "{SSHA}KB83a9cxad5aXmmd3GQkbOQDgAf+aCiA",
    "{SHA512}MGrCWX/OaIyw5xBZ0RrM2vwe1YHoo2MD/NKt2+vkfLiudEOMnHxXTsVXCSooO5eehIdUJFylnTmr3TTyK23wMw==",
    "{SHA256}UODX5JZHe18JVwv9yvMbAoeS719Y7fwn28vMuM/OHRU=",
    "{SHA1}/Hrn08gEogcgvDjo5YNQSGibZVE=",
    "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$laxkRJNxY2qrQw0KvEMU8w$RShEKg0mrcQSW37DDsokpKPGMiLx68ui613MfeIt2yE",
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$taqUt3jhW4V2hUJKgyrmiw$VqYincf7qbUtyPhXmdeFfsjtintLDyjXW/YmIX3EwNQ",
    "{PLAIN}pässwörd 1",
    "{CLEAR}pässwörd 1",
]


@pytest.mark.parametrize("stored", DOVEADM_HASHES, ids=lambda h: h[1 : h.index("}")])
def test_dovecot_schemes(stored: str) -> None:
    assert verify_password(stored, DOVEADM_PASSWORD)
    assert not verify_password(stored, "pässwörd 2")
    assert not verify_password(stored, "")


def test_schemes_made_by_libpass() -> None:
    from passlib import hash as h  # type: ignore[import-untyped]

    pw = "correct horse"
    made = {
        "{SHA512-CRYPT}" + h.sha512_crypt.using(rounds=5000).hash(pw),
        "{SHA256-CRYPT}" + h.sha256_crypt.using(rounds=5000).hash(pw),
        "{BLF-CRYPT}" + h.bcrypt.using(rounds=5, ident="2y").hash(pw),
        "{CRYPT}" + h.sha512_crypt.using(rounds=5000).hash(pw),
        h.sha512_crypt.using(rounds=5000).hash(pw),  # no scheme: Dovecot's passwd-file default is CRYPT
        "{SSHA512}" + h.ldap_salted_sha512.hash(pw).removeprefix("{SSHA512}"),
        "{SSHA}" + h.ldap_salted_sha1.hash(pw).removeprefix("{SSHA}"),
    }
    for stored in made:
        assert verify_password(stored, pw), stored
        assert not verify_password(stored, pw + "!"), stored
    # Traditional DES crypt only looks at 8 characters: refused, even with the right password.
    assert not verify_password("{CRYPT}" + h.des_crypt.hash("password"), "password")
    # bcrypt takes at most 72 bytes; a longer password is a mismatch, not an error.
    assert not verify_password("{BLF-CRYPT}" + h.bcrypt.using(rounds=4).hash("x" * 72), "x" * 100)


@pytest.mark.skipif(shutil.which("doveadm") is None, reason="doveadm not installed (apt-get install dovecot-core)")
@pytest.mark.parametrize("scheme", ["SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "PBKDF2", "SSHA512", "ARGON2ID"])
def test_hashes_from_the_installed_doveadm(scheme: str) -> None:
    out = subprocess.run(["doveadm", "pw", "-s", scheme, "-p", "from doveadm"], capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0:
        pytest.skip(f"doveadm pw failed: {out.stderr.strip()}")
    stored = out.stdout.strip()
    assert stored.startswith("{" + scheme + "}")
    assert verify_password(stored, "from doveadm")
    assert not verify_password(stored, "from doveadm ")


@pytest.mark.serial  # timed: run alone, not beside another test (Makefile)
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
