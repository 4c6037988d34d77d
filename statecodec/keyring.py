"""Signing keys with rotation: the first key signs, every key verifies.

Key file format: one key per line, 32 random bytes as base64url without padding, newest (signing)
key first. Blank lines and lines starting with ``#`` are ignored. The file is created with mode
0600, atomically (a reader never sees a partial file; two processes racing to create it end up
with the same keys).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import secrets
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Final

__all__ = ["KEY_BYTES", "KeyFileError", "KeyRing"]

KEY_BYTES: Final = 32
MIN_KEY_BYTES: Final = 16
_KEY_LINE: Final = re.compile(r"[A-Za-z0-9_-]+")


class KeyFileError(ValueError):
    """The key file exists but cannot be parsed."""


def _b64(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _KEY_LINE.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class KeyRing:
    """An immutable, ordered list of HMAC keys. ``keys[0]`` signs; all verify.

    :meth:`rotate` and :meth:`retire` return a new ring (swap the reference; persist with
    :meth:`save`), so a ring in use by concurrent coroutines never changes under them.
    """

    __slots__ = ("_keys", "_retired")

    _keys: tuple[bytes, ...]
    _retired: tuple[bytes, ...]

    # Retired keys are kept (at most this many) only to tell "revoked" from "forged": a token that only a
    # retired key verifies is reported expired, not invalid. They never make a token acceptable.
    MAX_RETIRED = 16

    def __init__(self, keys: Iterable[bytes], retired: Iterable[bytes] = ()) -> None:
        ks = tuple(keys)
        rs = tuple(retired)[: self.MAX_RETIRED]
        if not ks:
            raise ValueError("a KeyRing needs at least one key")
        for k in ks + rs:
            if not isinstance(k, bytes) or len(k) < MIN_KEY_BYTES:
                raise ValueError(f"each key must be at least {MIN_KEY_BYTES} bytes")
        if len(set(ks + rs)) != len(ks + rs):
            raise ValueError("duplicate key in KeyRing")
        self._keys = ks
        self._retired = rs

    @staticmethod
    def new_key() -> bytes:
        return secrets.token_bytes(KEY_BYTES)

    @classmethod
    def generate(cls) -> KeyRing:
        return cls([cls.new_key()])

    @property
    def keys(self) -> tuple[bytes, ...]:
        return self._keys

    @property
    def retired(self) -> tuple[bytes, ...]:
        """Keys no longer accepted, newest first; see :attr:`MAX_RETIRED`."""
        return self._retired

    @property
    def signing_key(self) -> bytes:
        return self._keys[0]

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyRing):
            return NotImplemented
        return self._keys == other._keys and self._retired == other._retired

    def __hash__(self) -> int:
        return hash((self._keys, self._retired))

    def __repr__(self) -> str:  # never show key material
        return f"<KeyRing of {len(self._keys)} key(s)>"

    def rotate(self, new_key: bytes | None = None) -> KeyRing:
        """A ring with a new signing key in front; the old keys still verify."""
        return KeyRing((new_key if new_key is not None else self.new_key(), *self._keys), self._retired)

    def retire(self, n: int = 1) -> KeyRing:
        """A ring without its ``n`` oldest keys. Tokens they signed are no longer accepted (they decode
        as expired, so a server can tell the user to log in again rather than call them forged).

        The signing key cannot be retired: rotate first.
        """
        if n < 0 or n >= len(self._keys):
            raise ValueError(f"can retire 0..{len(self._keys) - 1} keys, not {n}")
        keep = len(self._keys) - n
        return KeyRing(self._keys[:keep], (*reversed(self._keys[keep:]), *self._retired))

    # -- key file -----------------------------------------------------------------------------

    def dumps(self) -> str:
        return "".join(_b64(k) + "\n" for k in self._keys) + "".join(f"retired {_b64(k)}\n" for k in self._retired)

    @classmethod
    def loads(cls, text: str) -> KeyRing:
        keys: list[bytes] = []
        retired: list[bytes] = []
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            target = keys
            if line.startswith("retired "):
                target, line = retired, line.removeprefix("retired ").strip()
            try:
                target.append(_unb64(line))
            except (ValueError, binascii.Error):
                raise KeyFileError(f"line {lineno}: not a base64url key") from None
        try:
            return cls(keys, retired)
        except ValueError as exc:
            raise KeyFileError(str(exc)) from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KeyRing:
        p = Path(path)
        mode = p.stat().st_mode
        if os.name == "posix" and mode & 0o077:
            warnings.warn(f"key file {p} is readable by group or others", stacklevel=2)
        return cls.loads(p.read_text("ascii"))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ring to ``path`` atomically (temp file, fsync, rename), mode 0600."""
        p = Path(path)
        tmp = self._write_temp(p)
        try:
            os.replace(tmp, p)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(p.parent)

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> KeyRing:
        """Load the key file, or create it with one fresh key (0600, atomically, no clobber)."""
        p = Path(path)
        try:
            return cls.load(p)
        except FileNotFoundError:
            pass
        ring = cls.generate()
        tmp = ring._write_temp(p)
        try:
            os.link(tmp, p)  # fails if another process created the file meanwhile
        except FileExistsError:
            return cls.load(p)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _fsync_dir(p.parent)
        return ring

    def _write_temp(self, p: Path) -> str:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(self.dumps())
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
