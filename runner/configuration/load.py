"""Finding and loading the configuration: `--config`, `$RESTIC_RUNNER_CONFIG`,
`./restic-runner.toml`, or restic-backup-helper's environment variables."""

from __future__ import annotations

import os
from pathlib import Path

from runner.configuration.config import Config, parse_config
from runner.errors import ConfigError

CONFIG_ENV = "RESTIC_RUNNER_CONFIG"
DEFAULT_CONFIG_NAME = "restic-runner.toml"


def find_config_file(explicit: str | None) -> Path:
    """--config, else $RESTIC_RUNNER_CONFIG, else ./restic-runner.toml."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    local = Path(DEFAULT_CONFIG_NAME)
    if local.exists():
        return local
    raise ConfigError(DEFAULT_CONFIG_NAME, "",
                      f"no configuration: pass --config, set ${CONFIG_ENV}, create "
                      f"./{DEFAULT_CONFIG_NAME}, or set restic-backup-helper's variables "
                      "(RESTIC_REPOSITORY, …)")


def load_config(explicit: str | None = None) -> Config:
    """Find, read and validate the configuration."""
    import tomllib

    if not explicit and not os.environ.get(CONFIG_ENV) and not Path(DEFAULT_CONFIG_NAME).exists():
        from runner.configuration.environment import load_from_environment, wants_environment

        if wants_environment(os.environ):
            return load_from_environment(os.environ)
    path = find_config_file(explicit)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file does not exist") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None
    return parse_config(data, path)

