"""Reading TOML tables: value converters (return the value or raise ValueError("expected ...")) and
`Table`, which knows its dotted name, resolves paths and refuses keys nobody asked for. Shared
by `runner.configuration.config` and `runner.configuration.notify`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner.configuration.units import parse_duration
from runner.errors import ConfigError

TAG = re.compile(r"[A-Za-z0-9._:-]{1,64}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def describe(value: object) -> str:
    """A wrong value, for an error message. Lists and tables only by type and size: a
    password put in a list by mistake must not be printed."""
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"a table of {len(value)} key(s)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def expect(what: str, value: object) -> ValueError:
    return ValueError(f"expected {what}, got {describe(value)}")


def as_string(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise expect("a non-empty string", value)
    return value


def as_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise expect("true or false", value)
    return value


def as_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise expect("a positive integer", value)
    return value


def as_niceness(value: object) -> int:
    """0 to 19: raising a process's niceness needs no privilege, lowering it does."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 19:
        raise expect("an integer from 0 to 19", value)
    return value


def as_positive_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise expect("a positive number", value)
    return float(value)


def as_duration(value: object) -> float:
    try:
        return parse_duration(value)
    except ValueError:
        raise expect('a duration such as "6h", "90m", "45s" or seconds', value) from None


def as_strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise expect("a list of non-empty strings", value)
    return tuple(value)


def as_argv(value: object) -> tuple[str, ...]:
    argv = as_strings(value)
    if not argv:
        raise expect("a non-empty list (program and arguments)", value)
    return argv


def as_tags(value: object) -> tuple[str, ...]:
    tags = as_strings(value)
    for tag in tags:
        if not TAG.fullmatch(tag):
            raise expect("tags matching [A-Za-z0-9._:-]{1,64}", tag)
    return tags


def as_job_tags(value: object) -> tuple[str, ...]:
    """A job's own tags: restic's meaning (a comma separates tags, so none holds one); unlike a
    trigger's tags (`as_tags`) any other printable text, spaces included."""
    tags = as_strings(value)
    for tag in tags:
        if "," in tag or tag != tag.strip() or not tag.isprintable() or len(tag) > 255:
            raise expect("tags without commas, control characters or surrounding spaces", tag)
    return tags


def as_env_names(value: object) -> tuple[str, ...]:
    names = as_strings(value)
    for name in names:
        if not ENV_NAME.fullmatch(name):
            raise expect("environment variable names", name)
    return names


def as_hook_env(value: object) -> tuple[str, ...]:
    """`hook_env`: names of secrets, or `["*"]` alone (the whole environment)."""
    if value == ["*"]:
        return ("*",)
    return as_env_names(value)


def as_str_map(value: object) -> Mapping[str, str]:
    if not isinstance(value, dict) or not all(
        ENV_NAME.fullmatch(k) and isinstance(v, str) for k, v in value.items()
    ):
        raise expect('a table of NAME = "value" strings', value)
    return MappingProxyType(dict(value))


def choice(*options: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if value not in options:
            raise expect(" or ".join(f'"{o}"' for o in options), value)
        return str(value)
    return convert


# --- reading tables ----------------------------------------------------------------------------

class Table:
    """One TOML table being read: knows its dotted name and refuses keys nobody asked for."""

    def __init__(self, file: str, name: str, data: object, base: Path) -> None:
        if not isinstance(data, dict):
            raise ConfigError(file, name, f"expected a table, got {describe(data)}")
        self.file, self.name, self.data, self.base = file, name, data, base
        self.seen: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.key(key), problem)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, convert: Callable[[object], Any], default: Any = None) -> Any:
        self.seen.add(key)
        if key not in self.data:
            return default
        try:
            return convert(self.data[key])
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def path(self, key: str, default: Path | None = None, *, must_exist: bool = False) -> Any:
        raw = self.get(key, as_string)
        if raw is None:
            return default
        try:
            path = self._resolve(raw)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
        if must_exist:
            self._check_readable(key, path)
        return path

    def secret_path(self, key: str, default: Path | None = None,
                    check: Callable[[str], None] | None = None) -> Any:
        """A secret file: it must exist, be readable and hold a value (an empty one would
        quietly mean "no credential"); `check` validates the content and raises ValueError
        saying what is wrong, never quoting the value. Inherited defaults were checked where
        they were set."""
        path = self.path(key, default, must_exist=True)
        if self.has(key):
            self._check_secret(key, path, check)
        return path

    def _check_secret(self, key: str, path: Path, check: Callable[[str], None] | None) -> None:
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as exc:
            raise self.error(key, f"cannot read file {path}: {exc.strerror}") from None
        if not text.strip():
            raise self.error(key, f"secret file {path} is empty (expected the secret in it)")
        if check is not None:
            try:
                check(text)
            except ValueError as exc:
                raise self.error(key, f"secret file {path}: {exc}") from None

    def path_map(self, key: str, *, secret: bool = False) -> Mapping[str, Path]:
        self.seen.add(key)
        raw = self.data.get(key, {})
        if not isinstance(raw, dict):
            raise self.error(key, 'expected a table of NAME = "/path/to/file", '
                                  f"got {describe(raw)}")
        out: dict[str, Path] = {}
        for name, value in raw.items():
            if not ENV_NAME.fullmatch(name) or not isinstance(value, str) or not value:
                raise self.error(f"{key}.{name}", f"expected a file path, got {describe(value)}")
            try:
                out[name] = self._resolve(value)
            except ValueError as exc:
                raise self.error(f"{key}.{name}", str(exc)) from None
            self._check_readable(f"{key}.{name}", out[name])
            if secret:
                self._check_secret(f"{key}.{name}", out[name], None)
        return MappingProxyType(out)

    def _resolve(self, raw: str) -> Path:
        if "\0" in raw:
            raise ValueError("a path cannot contain a NUL character")
        path = Path(os.path.expanduser(raw))
        return path if path.is_absolute() else self.base / path

    def _check_readable(self, key: str, path: Path) -> None:
        try:
            is_file = path.is_file()
        except (OSError, ValueError) as exc:  # e.g. a name longer than the system allows
            raise self.error(key, f"not a usable path ({getattr(exc, 'strerror', None) or exc})"
                             ) from None
        if not is_file:
            raise self.error(key, f"file {path} does not exist")
        if not os.access(path, os.R_OK):
            raise self.error(key, f"file {path} is not readable by this user")

    def finish(self, allowed_hint: str = "") -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            hint = allowed_hint or ", ".join(sorted(self.seen))
            raise self.error(unknown[0], f"unknown key (expected one of: {hint})")


# --- relative paths in values that are not `path` keys ------------------------------------------
# A config file's relative paths mean the file's directory, never the working directory of
# whoever started the command (under systemd: `/`). Values that are paths only by position or
# by the option before them are resolved here, so `config check --json` shows what will run.

# restic options whose value is a local file or directory (either `--opt=V` or `--opt V`)
RESTIC_PATH_OPTIONS = frozenset({
    "--exclude-file", "--iexclude-file", "--files-from", "--files-from-raw",
    "--files-from-verbatim", "--include-file", "--iinclude-file", "--password-file",
    "--repository-file", "--cacert", "--tls-client-cert", "--cache-dir"})
# rclone options whose value is a local file, or a path that may be local (then resolved)
RCLONE_PATH_OPTIONS = frozenset({
    "--exclude-from", "--include-from", "--filter-from", "--files-from", "--files-from-raw",
    "--log-file", "--config", "--ca-cert", "--client-cert", "--client-key", "--cache-dir",
    "--temp-dir", "--workdir", "--backup-dir", "--compare-dest", "--copy-dest"})


def in_dir(base: Path, raw: str) -> str:
    """`raw` (`~` expanded) against `base` when relative; absolute paths are kept as written."""
    expanded = os.path.expanduser(raw)
    if os.path.isabs(expanded):
        return expanded
    while expanded.startswith("./"):
        expanded = expanded[2:].lstrip("/")
    return str(base) if expanded in ("", ".") else os.path.join(base, expanded)


def as_program(base: Path) -> Callable[[object], str]:
    """A program: a bare name is looked up on `PATH` when it runs; a name with a `/` is a path."""
    def convert(value: object) -> str:
        name = as_string(value)
        return in_dir(base, name) if "/" in name or name.startswith("~") else name
    return convert


def as_hook(base: Path) -> Callable[[object], tuple[str, ...]]:
    """A hook's argv; its program resolved like `as_program` (its arguments are as written)."""
    def convert(value: object) -> tuple[str, ...]:
        argv = as_argv(value)
        return (as_program(base)(argv[0]), *argv[1:])
    return convert


def as_paths(base: Path) -> Callable[[object], tuple[str, ...]]:
    def convert(value: object) -> tuple[str, ...]:
        return tuple(in_dir(base, p) for p in as_strings(value))
    return convert


def local_repository(base: Path, repository: str) -> str:
    """A restic repository: a local one (no backend prefix, or `local:`) resolved."""
    if repository.startswith("local:"):
        return "local:" + in_dir(base, repository[len("local:"):])
    return repository if ":" in repository else in_dir(base, repository)


def _rclone_path(base: Path, arg: str) -> str:
    """rclone reads `name:path` as a remote and `:backend:path` as one made on the fly; a `/`
    before the first colon (or no colon) makes it a local path."""
    colon, slash = arg.find(":"), arg.find("/")
    local = colon == -1 or -1 < slash < colon
    return in_dir(base, arg) if arg and local else arg


def _with_option_paths(args: tuple[str, ...], options: frozenset[str],
                       resolve: Callable[[str], str]) -> list[str]:
    out: list[str] = []
    value_next = False
    for arg in args:
        if value_next:
            out.append(resolve(arg))
            value_next = False
            continue
        option, eq, value = arg.partition("=")
        if option in options and eq:
            arg = f"{option}={resolve(value)}" if value else arg
        elif option in options:
            value_next = True
        out.append(arg)
    return out


def as_restic_args(base: Path) -> Callable[[object], tuple[str, ...]]:
    """restic arguments; the values of `RESTIC_PATH_OPTIONS` resolved."""
    def convert(value: object) -> tuple[str, ...]:
        return tuple(_with_option_paths(as_strings(value), RESTIC_PATH_OPTIONS,
                                        lambda v: in_dir(base, v)))
    return convert


def as_rclone_args(base: Path) -> Callable[[object], tuple[str, ...]]:
    """rclone arguments: the command, then its operands up to the first option (local ones
    resolved), then options (the values of `RCLONE_PATH_OPTIONS` resolved when local)."""
    def convert(value: object) -> tuple[str, ...]:
        args = as_strings(value)
        command_first = bool(args) and not args[0].startswith("-")
        head = list(args[:1]) if command_first else []
        rest = args[1:] if command_first else args
        operands = 0
        while command_first and operands < len(rest) and not rest[operands].startswith("-"):
            operands += 1
        head += [_rclone_path(base, a) for a in rest[:operands]]
        return (*head, *_with_option_paths(rest[operands:], RCLONE_PATH_OPTIONS,
                                           lambda v: _rclone_path(base, v)))
    return convert
