"""Configurations parsed in-process: a minimal valid document with whatever a test adds, and the
`ConfigError` a bad one raises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.configuration.config import Config, parse_config
from runner.errors import ConfigError


def parse_minimal(tmp_path: Path, data: dict[str, Any]) -> Config:
    """`data` over a minimal document (state_dir "var", repository "/r", a password file),
    parsed as if read from `tmp_path/restic-runner.toml`."""
    secret = tmp_path / "pw"
    secret.write_text("x")
    secret.chmod(0o600)
    base: dict[str, Any] = {"state_dir": "var",
                            "restic": {"repository": "/r", "password_file": str(secret)}}
    base.update(data)
    return parse_config(base, tmp_path / "restic-runner.toml")


def config_error(tmp_path: Path, data: dict[str, Any]) -> ConfigError:
    """The error `parse_minimal` raises for `data` (the test fails if there is none)."""
    with pytest.raises(ConfigError) as info:
        parse_minimal(tmp_path, data)
    return info.value
