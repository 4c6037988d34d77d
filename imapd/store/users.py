"""Users in a Dovecot-style passwd-file: ``<data_dir>/passwd``.

Line layout (Dovecot ``passwd-file``): ``user:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields``;
``extra_fields`` is space-separated ``key=value``. We keep ``xstate_gen=N``, the user's credential
generation, bumped on every password change (X-STATE strings carry it, so a password change revokes them).

New passwords are hashed with argon2id using Dovecot's parameters (``doveadm pw -s ARGON2ID``:
m=65536 KiB, t=3, p=1, 16-byte salt, 32-byte hash), stored as ``{ARGON2ID}$argon2id$v=19$m=...``.
Verification accepts ``{ARGON2ID}`` and ``{ARGON2I}`` (any parameters, read from the hash) and
``{PLAIN}``. ``{SHA512-CRYPT}``/``{CRYPT}`` are not supported (no ``crypt`` module in 3.13 and a
pure-Python sha512-crypt is not trivial): such users cannot log in until their password is reset.

Writes take an exclusive ``fcntl`` lock on ``passwd.lock`` and replace the file atomically (temp file,
fsync, rename, fsync dir), so concurrent CLI runs and the server never see a torn file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import os
import tempfile
from collections.abc import Iterator

import argon2
import msgspec

from imapd.store.errors import NoSuchUser, UserExists

__all__ = ["PasswdFile", "UserRecord", "hash_password", "verify_password"]

GEN_FIELD = "xstate_gen"


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

    @property
    def generation(self) -> int:
        try:
            return int(self.extra.get(GEN_FIELD, "0"))
        except ValueError:
            return 0

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


_hasher = argon2.PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1, hash_len=32, salt_len=16,
                                 type=argon2.Type.ID)
_dummy: str | None = None


def hash_password(password: str) -> str:
    return "{ARGON2ID}" + _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """Check a password against a ``{SCHEME}data`` string; unknown schemes never match."""
    if not stored.startswith("{"):
        return False
    scheme, _, data = stored[1:].partition("}")
    scheme = scheme.upper()
    if scheme in ("ARGON2ID", "ARGON2I"):
        try:
            return bool(_hasher.verify(data, password))
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError, ValueError):
            return False
    if scheme in ("PLAIN", "CLEAR", "CLEARTEXT"):
        return hmac.compare_digest(data.encode("utf-8"), password.encode("utf-8"))
    return False


def _dummy_hash() -> str:
    global _dummy
    if _dummy is None:
        _dummy = hash_password("dummy password for unknown users")
    return _dummy


class PasswdFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._cache: dict[str, UserRecord] = {}
        self._stamp: tuple[int, int, int] | None = None

    # ------------------------------------------------------------------------------ reading

    def load(self) -> dict[str, UserRecord]:
        """All users (re-read only when the file changed)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._cache, self._stamp = {}, None
            return {}
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            with open(self.path, encoding="utf-8") as f:
                self._cache = self._parse(f.read())
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
    def _locked(self) -> Iterator[dict[str, UserRecord]]:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        users = self._parse(f.read())
                except FileNotFoundError:
                    users = {}
                yield users
                self._write(users)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _write(self, users: dict[str, UserRecord]) -> None:
        directory = os.path.dirname(self.path) or "."
        fd, tmp = tempfile.mkstemp(prefix=".passwd.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for rec in users.values():
                    f.write(rec.to_line() + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
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

    def add(self, name: str, password: str) -> UserRecord:
        pw = hash_password(password)
        with self._locked() as users:
            if name in users:
                raise UserExists(f"user {name!r} already exists")
            rec = UserRecord(name, pw, extra={GEN_FIELD: "1"})
            users[name] = rec
        return rec

    def set_password(self, name: str, password: str) -> int:
        """Change the password; return the new credential generation."""
        pw = hash_password(password)
        with self._locked() as users:
            rec = users.get(name)
            if rec is None:
                raise NoSuchUser(f"no user {name!r}")
            gen = rec.generation + 1
            users[name] = msgspec.structs.replace(rec, password=pw, extra={**rec.extra, GEN_FIELD: str(gen)})
        return gen

    def delete(self, name: str) -> None:
        with self._locked() as users:
            if users.pop(name, None) is None:
                raise NoSuchUser(f"no user {name!r}")
