"""Users in a Dovecot-style passwd-file: ``<data_dir>/passwd``.

Line layout (Dovecot ``passwd-file``): ``user:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields``;
``extra_fields`` is space-separated ``key=value``. We keep ``xstate_gen=N`` there, a per-name counter that
``imapd user add|passwd|del`` bump.

The credential generation (:attr:`UserRecord.generation`, carried by every X-STATE token and checked by the
credential cache) is a 63-bit digest of the user's whole entry and that counter. Any change to the entry,
whoever makes it (``imapd user``, ``doveadm``, an editor, a provisioning script), gives a new generation, so
earlier tokens and cached passwords stop working at once. The counter only matters when an entry comes back
byte for byte (a ``{PLAIN}`` password deleted and re-added): its highest value per name is also kept in
``passwd.generations`` beside the file, which deleting a user does not reset, so the re-added entry still
gets a new generation.

New passwords are hashed with argon2id using Dovecot's parameters (``doveadm pw -s ARGON2ID``:
m=65536 KiB, t=3, p=1, 16-byte salt, 32-byte hash), stored as ``{ARGON2ID}$argon2id$v=19$m=...``.
Verification covers the schemes found in Dovecot passwd-files (see :func:`verify_password`), through
argon2-cffi, libpass (the maintained passlib fork) and hashlib.

Writes take an exclusive ``fcntl`` lock on ``passwd.lock`` and replace the file atomically (temp file,
fsync, rename, fsync dir), so concurrent CLI runs and the server never see a torn file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator

import argon2
import msgspec
from passlib import hash as passlib_hash  # type: ignore[import-untyped]

from imapd.store.errors import NoSuchUser, UserExists

__all__ = ["SCHEMES", "PasswdFile", "UserRecord", "hash_password", "verify_password"]

GEN_FIELD = "xstate_gen"
_GEN_MASK = (1 << 63) - 1
# Fields that say nothing about the credential: changing a quota must not end sessions or X-STATE tokens.
_NOT_CREDENTIAL = frozenset({GEN_FIELD, "quota_storage", "quota_messages"})


class UserRecord(msgspec.Struct, frozen=True):
    name: str
    password: str
    """``{SCHEME}data``."""
    uid: str = ""
    gid: str = ""
    gecos: str = ""
    home: str = ""
    shell: str = ""
    extra: dict[str, str] = {}
    counter_floor: int = 0
    """The highest counter ever written for this name (``passwd.generations``); not part of the line."""

    @property
    def counter(self) -> int:
        try:
            written = int(self.extra.get(GEN_FIELD, "0"))
        except ValueError:
            written = 0
        return max(written, self.counter_floor)

    @property
    def generation(self) -> int:
        """A 63-bit digest of the whole entry and the counter: any change to the entry changes it."""
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.extra.items()) if k not in _NOT_CREDENTIAL)
        text = "\0".join([self.name, self.password, self.uid, self.gid, self.gecos, self.home, self.shell,
                          extra, str(self.counter)])
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8,
                                 person=b"imapd-cred-gen").digest()
        return int.from_bytes(digest, "big") & _GEN_MASK

    def to_line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.extra.items())
        return ":".join([self.name, self.password, self.uid, self.gid, self.gecos, self.home, self.shell, extra])

    @classmethod
    def from_line(cls, line: str) -> UserRecord | None:
        fields = line.split(":")
        if len(fields) < 2 or not fields[0] or line.startswith("#"):
            return None
        fields += [""] * (8 - len(fields))
        extra: dict[str, str] = {}
        for item in ":".join(fields[7:]).split():
            k, _, v = item.partition("=")
            extra[k] = v
        return cls(fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], extra)


# Dovecot's ARGON2ID parameters; `imapd user add` writes these (docs/operations.md, "Passwords").
ARGON2_TIME_COST = 3
ARGON2_MEMORY_KIB = 65536
ARGON2_PARALLELISM = 1
_hasher = argon2.PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB,
                                 parallelism=ARGON2_PARALLELISM, hash_len=32, salt_len=16, type=argon2.Type.ID)
_dummy: str | None = None


def hash_password(password: str) -> str:
    return "{ARGON2ID}" + _hasher.hash(password)


def _argon2(data: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(data, password))
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError, ValueError):
        return False


def _plain(data: str, password: str) -> bool:
    return hmac.compare_digest(data.encode("utf-8", "surrogatepass"), password.encode("utf-8", "surrogatepass"))


def _passlib(handler: object) -> Callable[[str, str], bool]:
    def verify(data: str, password: str) -> bool:
        try:
            return bool(handler.verify(password, data))  # type: ignore[attr-defined]
        except (ValueError, TypeError):  # malformed hash, or a password bcrypt cannot take (> 72 bytes)
            return False
    return verify


# {CRYPT} (and a hash with no scheme, Dovecot's passwd-file default) is whatever crypt(3) made; we accept
# the modular formats and refuse traditional DES crypt, which ignores everything past 8 characters.
_CRYPT_PREFIXES: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("$6$", _passlib(passlib_hash.sha512_crypt)),
    ("$5$", _passlib(passlib_hash.sha256_crypt)),
    ("$2y$", _passlib(passlib_hash.bcrypt)),
    ("$2b$", _passlib(passlib_hash.bcrypt)),
    ("$2a$", _passlib(passlib_hash.bcrypt)),
    ("$1$", _passlib(passlib_hash.md5_crypt)),
    ("$argon2id$", _argon2),
    ("$argon2i$", _argon2),
)


def _crypt(data: str, password: str) -> bool:
    for prefix, verify in _CRYPT_PREFIXES:
        if data.startswith(prefix):
            return verify(data, password)
    return False


def _pbkdf2(data: str, password: str) -> bool:
    """Dovecot's ``{PBKDF2}$1$<salt>$<rounds>$<hex PBKDF2-HMAC-SHA1, 20 bytes>``."""
    parts = data.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "1" or not parts[3].isdigit():
        return False
    try:
        expected = bytes.fromhex(parts[4])
    except ValueError:
        return False
    rounds = int(parts[3])
    if not expected or not 0 < rounds <= 10_000_000:
        return False
    got = hashlib.pbkdf2_hmac("sha1", password.encode("utf-8"), parts[2].encode("utf-8"), rounds, len(expected))
    return hmac.compare_digest(got, expected)


def _digest(algorithm: str, salted: bool, encoding: str) -> Callable[[str, str], bool]:
    """``{SHA512}``, ``{SSHA512}`` and friends: base64 (or ``.HEX``) of digest(password + salt) + salt."""
    size = hashlib.new(algorithm).digest_size

    def verify(data: str, password: str) -> bool:
        try:
            raw = bytes.fromhex(data) if encoding == "HEX" else base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return False
        if len(raw) < size or (not salted and len(raw) != size):
            return False
        digest, salt = raw[:size], raw[size:]
        return hmac.compare_digest(hashlib.new(algorithm, password.encode("utf-8") + salt).digest(), digest)
    return verify


SCHEMES: dict[str, Callable[[str, str], bool]] = {
    "ARGON2ID": _argon2,
    "ARGON2I": _argon2,
    "SHA512-CRYPT": _passlib(passlib_hash.sha512_crypt),
    "SHA256-CRYPT": _passlib(passlib_hash.sha256_crypt),
    "BLF-CRYPT": _passlib(passlib_hash.bcrypt),
    "MD5-CRYPT": _passlib(passlib_hash.md5_crypt),
    "CRYPT": _crypt,
    "PBKDF2": _pbkdf2,
    "PLAIN": _plain,
    "CLEAR": _plain,
    "CLEARTEXT": _plain,
}
"""The schemes :func:`verify_password` accepts (plus the digest schemes below), by Dovecot name."""
for _name, _algorithm in (("SHA512", "sha512"), ("SHA256", "sha256"), ("SHA", "sha1"), ("SHA1", "sha1")):
    for _salted in (False, True):
        _scheme = ("S" if _salted else "") + _name
        SCHEMES[_scheme] = _digest(_algorithm, _salted, "B64")
        SCHEMES[_scheme + ".B64"] = SCHEMES[_scheme + ".BASE64"] = SCHEMES[_scheme]
        SCHEMES[_scheme + ".HEX"] = _digest(_algorithm, _salted, "HEX")


def verify_password(stored: str, password: str) -> bool:
    """Check a password against a ``{SCHEME}data`` string; unknown schemes never match.

    A stored value with no ``{SCHEME}`` prefix is read as ``{CRYPT}``, Dovecot's default for passwd-files.
    """
    if not stored.startswith("{"):
        return _crypt(stored, password) if stored.startswith("$") else False
    scheme, _, data = stored[1:].partition("}")
    verify = SCHEMES.get(scheme.upper())
    return verify(data, password) if verify is not None else False


def _dummy_hash() -> str:
    global _dummy
    if _dummy is None:
        _dummy = hash_password("dummy password for unknown users")
    return _dummy


class PasswdFile:
    """The passwd-file and its ``passwd.generations`` companion (highest counter per name, never lowered)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.counters_path = self.path + ".generations"
        self._cache: dict[str, UserRecord] = {}
        self._stamp: tuple[tuple[int, int, int, int], ...] | None = None

    # ------------------------------------------------------------------------------ reading

    @staticmethod
    def _stat(path: str) -> tuple[int, int, int, int]:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return (0, 0, 0, 0)
        return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def load(self) -> dict[str, UserRecord]:
        """All users, re-read whenever either file changed (two stat() calls when nothing did).

        Another tool may rewrite the file in place within one mtime tick; ctime and size catch most of
        those, and an in-place edit that keeps all three is the one case read late (until the next change).
        """
        stamp = (self._stat(self.path), self._stat(self.counters_path))
        if stamp != self._stamp:
            try:
                with open(self.path, encoding="utf-8") as f:
                    users = self._parse(f.read())
            except FileNotFoundError:
                users = {}
            floors = self._read_counters()
            self._cache = {
                name: msgspec.structs.replace(rec, counter_floor=floors[name]) if name in floors else rec
                for name, rec in users.items()
            }
            self._stamp = stamp
        return self._cache

    @staticmethod
    def _parse(text: str) -> dict[str, UserRecord]:
        out: dict[str, UserRecord] = {}
        for line in text.splitlines():
            rec = UserRecord.from_line(line)
            if rec is not None:
                out[rec.name] = rec
        return out

    def _read_counters(self) -> dict[str, int]:
        try:
            with open(self.counters_path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return {}
        out: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name and value.isdigit():
                out[name] = max(out.get(name, 0), int(value))
        return out

    def get(self, name: str) -> UserRecord | None:
        return self.load().get(name)

    def list(self) -> list[str]:
        return sorted(self.load())

    def verify(self, name: str, password: str) -> UserRecord | None:
        """The user's record if the password matches, else None.

        An unknown user costs the same as a wrong password: we verify against a dummy argon2id hash.
        """
        rec = self.get(name)
        if rec is None:
            verify_password(_dummy_hash(), password)
            return None
        return rec if verify_password(rec.password, password) else None

    # ------------------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[tuple[dict[str, UserRecord], dict[str, int]]]:
        """The users and the counters under the lock; both are written back when the block succeeds."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        users = self._parse(f.read())
                except FileNotFoundError:
                    users = {}
                counters = self._read_counters()
                before = dict(counters)
                yield users, counters
                if counters != before:  # counters first: a crash in between only wastes a counter value
                    self._replace(self.counters_path, [f"{n} {v}" for n, v in sorted(counters.items())])
                self._replace(self.path, [rec.to_line() for rec in users.values()])
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _replace(self, path: str, lines: Iterable[str]) -> None:
        directory = os.path.dirname(path) or "."
        fd, tmp = tempfile.mkstemp(prefix=".passwd.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for line in lines:
                    f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self._stamp = None

    @staticmethod
    def _next_counter(name: str, rec: UserRecord | None, counters: dict[str, int]) -> int:
        counter = max(rec.counter if rec is not None else 0, counters.get(name, 0)) + 1
        counters[name] = counter
        return counter

    def add(self, name: str, password: str) -> UserRecord:
        pw = hash_password(password)
        with self._locked() as (users, counters):
            if name in users:
                raise UserExists(f"user {name!r} already exists")
            counter = self._next_counter(name, None, counters)
            rec = UserRecord(name, pw, extra={GEN_FIELD: str(counter)}, counter_floor=counter)
            users[name] = rec
        return rec

    def set_password(self, name: str, password: str) -> int:
        """Change the password; return the new credential generation."""
        pw = hash_password(password)
        with self._locked() as (users, counters):
            rec = users.get(name)
            if rec is None:
                raise NoSuchUser(f"no user {name!r}")
            counter = self._next_counter(name, rec, counters)
            rec = msgspec.structs.replace(rec, password=pw, extra={**rec.extra, GEN_FIELD: str(counter)},
                                          counter_floor=counter)
            users[name] = rec
        return rec.generation

    def set_fields(self, name: str, fields: dict[str, str | None]) -> UserRecord:
        """Set (or, with None, remove) extra fields that are not part of the credential (quota limits):
        the generation stays, so sessions and tokens of the user live on."""
        if not set(fields) <= _NOT_CREDENTIAL - {GEN_FIELD}:
            raise ValueError(f"not a settable field: {sorted(set(fields) - _NOT_CREDENTIAL)}")
        with self._locked() as (users, counters):
            rec = users.get(name)
            if rec is None:
                raise NoSuchUser(f"no user {name!r}")
            extra = {k: v for k, v in rec.extra.items() if fields.get(k, v) is not None}
            extra.update({k: v for k, v in fields.items() if v is not None})
            rec = msgspec.structs.replace(rec, extra=extra, counter_floor=counters.get(name, 0))
            users[name] = rec
        return rec

    def delete(self, name: str) -> None:
        """Remove the entry; its counter moves on, so an identical entry added later is a new credential."""
        with self._locked() as (users, counters):
            rec = users.pop(name, None)
            if rec is None:
                raise NoSuchUser(f"no user {name!r}")
            self._next_counter(name, rec, counters)
