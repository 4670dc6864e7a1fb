"""Finding and loading the configuration: `--config`, `$RESTIC_RUNNER_CONFIG`,
`./restic-runner.toml`, `/etc/restic-runner/restic-runner.toml`, or restic-backup-helper's
environment variables (docs/configuration.md): a config file is used when one exists,
environment mode otherwise."""

from __future__ import annotations

import os
from pathlib import Path

from runner.configuration.config import Config, parse_config
from runner.errors import ConfigError

CONFIG_ENV = "RESTIC_RUNNER_CONFIG"
DEFAULT_CONFIG_NAME = "restic-runner.toml"
SYSTEM_CONFIG = Path("/etc/restic-runner") / DEFAULT_CONFIG_NAME


def _found_file() -> Path | None:
    """./restic-runner.toml, else the system-wide file, when it exists."""
    for candidate in (Path(DEFAULT_CONFIG_NAME), SYSTEM_CONFIG):
        if candidate.exists():
            return candidate
    return None


def find_config_file(explicit: str | None) -> Path:
    """--config, else $RESTIC_RUNNER_CONFIG (which must exist), else ./restic-runner.toml,
    else /etc/restic-runner/restic-runner.toml."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    found = _found_file()
    if found is not None:
        return found
    raise ConfigError(DEFAULT_CONFIG_NAME, "",
                      f"no configuration: pass --config, set ${CONFIG_ENV}, create "
                      f"./{DEFAULT_CONFIG_NAME} or {SYSTEM_CONFIG}, or set "
                      "restic-backup-helper's variables (RESTIC_REPOSITORY, …)")


def load_config(explicit: str | None = None) -> Config:
    """Find, read and validate the configuration."""
    import tomllib

    from security.secretfiles import accept_world_readable

    if not explicit and not os.environ.get(CONFIG_ENV) and _found_file() is None:
        from runner.configuration.environment import load_from_environment, wants_environment

        if wants_environment(os.environ):
            return load_from_environment(os.environ)
    accept_world_readable(False)  # a config file keeps the strict rule (docs/security.md)
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

