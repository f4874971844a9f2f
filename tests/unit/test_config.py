"""Settings: defaults, TOML file and VITRINE_* variables, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitrine.config import ConfigError, load_settings


def test_defaults_need_no_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.home == Path("var")
    assert s.resolved_database_url.startswith("sqlite:///")
    assert s.resolved_blob_url.startswith("file:///")
    assert s.embedding_precision == "auto"


def test_environment_overrides_toml(tmp_path: Path) -> None:
    toml = tmp_path / "v.toml"
    toml.write_text('[vitrine]\nport = 9000\nhome = "/tmp/x"\nembedding_precision = "int8"\n')
    s = load_settings(env={"VITRINE_CONFIG": str(toml), "VITRINE_PORT": "9100"})
    assert s.port == 9100
    assert s.home == Path("/tmp/x")
    assert s.embedding_precision == "int8"


def test_bad_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="port"):
        load_settings(env={"VITRINE_PORT": "eighty"})
    with pytest.raises(ConfigError, match="embedding_precision"):
        load_settings(env={"VITRINE_EMBEDDING_PRECISION": "fp8"})
    toml = tmp_path / "v.toml"
    toml.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="unknown settings.*colour"):
        load_settings(env={}, config_file=toml)
