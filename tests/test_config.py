"""Settings: defaults, overrides, errors that name the key, and a reference that stays complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapd.config import ConfigError, load_settings, settings_reference

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_defaults_need_no_file() -> None:
    s = load_settings()
    assert s.server.listen == ["127.0.0.1:1143"]
    assert s.server.data_dir == "./imapd-data"


def test_file_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "imapd.toml"
    cfg.write_text('[limits]\nidle_timeout = 600\n[server]\nlisten = ["0.0.0.0:143"]\n')
    s = load_settings(cfg, ["limits.idle_timeout=90", 'tls.cert=/etc/ssl/x.pem'])
    assert s.limits.idle_timeout == 90
    assert s.server.listen == ["0.0.0.0:143"]
    assert s.tls.cert == "/etc/ssl/x.pem"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("limits.idle_timeout=soon", "limits.idle_timeout"),
        ("limits.nope=1", "nope"),
        ("nosection.key=1", "nosection"),
        ("novalue", "KEY=VALUE"),
    ],
)
def test_errors_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, [override])


def test_bad_toml_file_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[server\n")
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        load_settings(cfg)


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = [key for key, _, _ in settings_reference() if f"`{key}`" not in text]
    assert not missing, f"docs/configuration.md lacks {missing}"
