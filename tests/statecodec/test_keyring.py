from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from statecodec import KeyFileError, KeyRing


def test_load_or_create_makes_0600_file_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "xstate.keys"
    ring = KeyRing.load_or_create(path)
    assert len(ring) == 1 and len(ring.signing_key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and len(lines[0]) == 43 and "=" not in lines[0]
    assert KeyRing.load_or_create(path) == ring
    assert [p.name for p in tmp_path.iterdir()] == ["xstate.keys"]  # no temp file left


def test_create_does_not_clobber(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    existing = KeyRing.generate().rotate()
    existing.save(path)
    assert KeyRing.load_or_create(path) == existing


def test_rotate_retire_save(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    ring = KeyRing.load_or_create(path)
    rotated = ring.rotate()
    assert rotated.keys[1:] == ring.keys and rotated.signing_key != ring.signing_key
    rotated.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = KeyRing.load(path)
    assert loaded == rotated
    assert KeyRing.loads(path.read_text()).signing_key == rotated.signing_key
    assert rotated.retire(1) == KeyRing([rotated.signing_key], [ring.signing_key])
    assert rotated.retire(1).keys == (rotated.signing_key,)
    assert KeyRing.loads(rotated.retire(1).dumps()) == rotated.retire(1)  # retired keys persist
    assert rotated.retire(0) == rotated
    with pytest.raises(ValueError):
        rotated.retire(2)  # the signing key stays


def test_comments_and_bad_files() -> None:
    ring = KeyRing.generate()
    assert KeyRing.loads("# current first\n\n" + ring.dumps()) == ring
    for text in ["", "# nothing\n", "not*base64\n", "QUJD\n"]:  # last: too short
        with pytest.raises(KeyFileError):
            KeyRing.loads(text)
    key = ring.signing_key
    with pytest.raises(ValueError):
        KeyRing([key, key])
    with pytest.raises(ValueError):
        KeyRing([])
    assert "KeyRing" in repr(ring) and key.hex() not in repr(ring)


def test_warns_on_loose_permissions(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    KeyRing.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.warns(UserWarning):
        KeyRing.load(path)
