"""Finding and loading the configuration: `--config`, `$RESTIC_RUNNER_CONFIG`,
`./restic-runner.toml`, `/etc/restic-runner/restic-runner.toml`, or restic-backup-helper's
environment variables (docs/configuration.md): a config file is used when one exists,
environment mode otherwise.

A configuration file names the hooks and programs a run starts, so only its reader or root may
control it: a file owned by another user, or writable by others or by a group other than root's,
is refused wherever it was found (docs/configuration.md, "Where the configuration comes from";
docs/security.md)."""

from __future__ import annotations

import os
import stat
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


def trust_problem(info: os.stat_result, uid: int | None = None) -> str:
    """Why a file with this status may not configure a process of `uid` ("" when it may): its
    owner must be root or `uid`; no write permission for others, nor for a group but root's."""
    uid = os.geteuid() if uid is None else uid
    if info.st_uid not in (0, uid):
        return (f"owned by uid {info.st_uid}, neither root nor this process's user (uid {uid}): "
                "refused, its hooks would run as this user")
    mode = stat.S_IMODE(info.st_mode)
    if mode & stat.S_IWOTH:
        return f"writable by every user (mode {mode:04o}): refused; chmod o-w it"
    if mode & stat.S_IWGRP and info.st_gid != 0:
        return (f"writable by group {info.st_gid} (mode {mode:04o}): refused; chmod g-w it or "
                "give it to group root")
    return ""


def read_trusted(path: Path) -> bytes:
    """The file's bytes, once `trust_problem` has nothing against the file that was opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file does not exist") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        problem = trust_problem(info)
        if problem:
            raise ConfigError(str(path), "", problem)
        os.set_blocking(file.fileno(), True)  # the open did not wait for a FIFO's writer
        try:
            return file.read()
        except OSError as exc:
            raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None


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
    raw = read_trusted(path)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None
    return parse_config(data, path)

