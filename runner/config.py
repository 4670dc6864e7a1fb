"""Configuration: TOML into frozen, validated objects.

Every problem is reported as one `ConfigError` naming the file, the dotted key and what was
expected, before anything runs. Sections that later features own (`notify`,
`signing`) are kept as plain tables until their validators land.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner.durations import parse_duration
from runner.errors import ConfigError

JOB_KINDS = ("backup", "forget", "prune", "check", "unlock", "replicate")
RESTIC_KINDS = frozenset(JOB_KINDS) - {"replicate"}
TRIGGER_PARAMS = frozenset({"tags", "dry_run"})
JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TAG = re.compile(r"[A-Za-z0-9._:-]{1,64}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CONFIG_ENV = "RESTIC_RUNNER_CONFIG"
STATE_DIR_ENV = "RESTIC_RUNNER_STATE_DIR"
DEFAULT_CONFIG_NAME = "restic-runner.toml"
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class ResticSettings:
    """How to reach one restic repository; `[restic]`, overridable per job."""

    binary: str = "restic"
    repository: str | None = None
    repository_file: Path | None = None
    password: str | None = None  # inline: works, but doctor warns
    password_file: Path | None = None
    env: Mapping[str, str] = field(default_factory=_empty)  # plain variables for restic
    env_files: Mapping[str, Path] = field(default_factory=_empty)  # secrets, read from files
    cache_dir: Path | None = None
    cacert: Path | None = None
    auto_unlock: bool = False
    progress_fps: float = 2.0  # RESTIC_PROGRESS_FPS: status lines per second


@dataclass(frozen=True, slots=True)
class RcloneSettings:
    """`[rclone]`, overridable per replicate job."""

    binary: str = "rclone"
    config: Path | None = None
    env: Mapping[str, str] = field(default_factory=_empty)
    env_files: Mapping[str, Path] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class JobConfig:
    name: str
    kind: str
    restic: ResticSettings
    rclone: RcloneSettings
    description: str = ""
    args: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    forget_args: tuple[str, ...] = ()
    timeout: float | None = None
    stop_grace: float = 30.0
    schedule: str | None = None
    params: tuple[str, ...] = ()
    pre_hook: tuple[str, ...] = ()
    post_hook: tuple[str, ...] = ()
    hook_env: tuple[str, ...] = ()
    hook_timeout: float = 300.0
    pre_hook_on_error: str = "fail"
    keep_logs: int = 100

    @property
    def uses_restic(self) -> bool:
        return self.kind in RESTIC_KINDS


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """`[server]`: how `serve` listens and what a request may ask for."""

    bind: str = "127.0.0.1:8080"
    workers: int = 2
    threads: int = 8  # per worker: long-polls (?wait=) hold a thread each
    max_body_bytes: int = 65536
    max_wait: float = 25.0
    graceful_timeout: float = 30.0
    max_requests: int = 0  # recycle workers after this many requests (0: never)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """`[[clients]]`: who may call the API, with which credential, for which jobs."""

    name: str
    jobs: tuple[str, ...]
    secret_file: Path | None = None  # Standard Webhooks `whsec_` secret(s), one per line
    token_file: Path | None = None  # Bearer token(s), one per line


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    state_dir: Path
    hostname: str
    restic: ResticSettings
    rclone: RcloneSettings
    jobs: Mapping[str, JobConfig]
    server: ServerConfig = field(default_factory=ServerConfig)
    clients: tuple[ClientConfig, ...] = ()
    notify: Mapping[str, Any] = field(default_factory=_empty)
    signing: Mapping[str, Any] = field(default_factory=_empty)

    def job(self, name: str) -> JobConfig:
        try:
            return self.jobs[name]
        except KeyError:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise ConfigError(str(self.path), f"jobs.{name}",
                              f"no such job (configured: {known})") from None


# --- value converters: return the value or raise ValueError("expected …") -------------------

def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expect(what: str, value: object) -> ValueError:
    return ValueError(f"expected {what}, got {_describe(value)}")


def _string(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _expect("a non-empty string", value)
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _expect("true or false", value)
    return value


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _expect("a positive integer", value)
    return value


def _positive_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise _expect("a positive number", value)
    return float(value)


def _duration(value: object) -> float:
    try:
        return parse_duration(value)
    except ValueError:
        raise _expect('a duration such as "6h", "90m", "45s" or seconds', value) from None


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _expect("a list of non-empty strings", value)
    return tuple(value)


def _argv(value: object) -> tuple[str, ...]:
    argv = _strings(value)
    if not argv:
        raise _expect("a non-empty list (program and arguments)", value)
    return argv


def _tags(value: object) -> tuple[str, ...]:
    tags = _strings(value)
    for tag in tags:
        if not TAG.fullmatch(tag):
            raise _expect("tags matching [A-Za-z0-9._:-]{1,64}", tag)
    return tags


def _env_names(value: object) -> tuple[str, ...]:
    names = _strings(value)
    for name in names:
        if not ENV_NAME.fullmatch(name):
            raise _expect("environment variable names", name)
    return names


def _str_map(value: object) -> Mapping[str, str]:
    if not isinstance(value, dict) or not all(
        ENV_NAME.fullmatch(k) and isinstance(v, str) for k, v in value.items()
    ):
        raise _expect('a table of NAME = "value" strings', value)
    return MappingProxyType(dict(value))


def _raw_table(value: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _expect("a table", value)
    return value


def _choice(*options: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if value not in options:
            raise _expect(" or ".join(f'"{o}"' for o in options), value)
        return str(value)
    return convert


# --- reading tables ----------------------------------------------------------------------------

class _Table:
    """One TOML table being read: knows its dotted name and refuses keys nobody asked for."""

    def __init__(self, file: str, name: str, data: object, base: Path) -> None:
        if not isinstance(data, dict):
            raise ConfigError(file, name, f"expected a table, got {_describe(data)}")
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
        raw = self.get(key, _string)
        if raw is None:
            return default
        path = self._resolve(raw)
        if must_exist:
            self._check_readable(key, path)
        return path

    def path_map(self, key: str) -> Mapping[str, Path]:
        self.seen.add(key)
        raw = self.data.get(key, {})
        if not isinstance(raw, dict):
            raise self.error(key, 'expected a table of NAME = "/path/to/file", '
                                  f"got {_describe(raw)}")
        out: dict[str, Path] = {}
        for name, value in raw.items():
            if not ENV_NAME.fullmatch(name) or not isinstance(value, str) or not value:
                raise self.error(f"{key}.{name}", f"expected a file path, got {_describe(value)}")
            out[name] = self._resolve(value)
            self._check_readable(f"{key}.{name}", out[name])
        return MappingProxyType(out)

    def _resolve(self, raw: str) -> Path:
        path = Path(os.path.expanduser(raw))
        return path if path.is_absolute() else self.base / path

    def _check_readable(self, key: str, path: Path) -> None:
        if not path.is_file():
            raise self.error(key, f"file {path} does not exist")
        if not os.access(path, os.R_OK):
            raise self.error(key, f"file {path} is not readable by this user")

    def finish(self, allowed_hint: str = "") -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            hint = allowed_hint or ", ".join(sorted(self.seen))
            raise self.error(unknown[0], f"unknown key (expected one of: {hint})")


def _read_restic(t: _Table, base: ResticSettings) -> ResticSettings:
    pairs = (("repository", "repository_file"), ("password", "password_file"))
    for inline, from_file in pairs:
        if t.has(inline) and t.has(from_file):
            raise t.error(from_file, f"set {inline} or {from_file}, not both")
    values: dict[str, Any] = {
        "binary": t.get("binary", _string, base.binary),
        "repository": t.get("repository", _string, base.repository),
        "repository_file": t.path("repository_file", base.repository_file, must_exist=True),
        "password": t.get("password", _string, base.password),
        "password_file": t.path("password_file", base.password_file, must_exist=True),
        "env": t.get("env", _str_map, base.env),
        "env_files": t.path_map("env_files") if t.has("env_files") else base.env_files,
        "cache_dir": t.path("cache_dir", base.cache_dir),
        "cacert": t.path("cacert", base.cacert, must_exist=True),
        "auto_unlock": t.get("auto_unlock", _bool, base.auto_unlock),
        "progress_fps": t.get("progress_fps", _positive_number, base.progress_fps),
    }
    # A job that sets one form of a setting replaces the other form inherited from [restic].
    for inline, from_file in pairs:
        if t.has(inline):
            values[from_file] = None
        elif t.has(from_file):
            values[inline] = None
    return ResticSettings(**values)


def _read_rclone(t: _Table, base: RcloneSettings) -> RcloneSettings:
    return RcloneSettings(
        binary=t.get("binary", _string, base.binary),
        config=t.path("config", base.config, must_exist=True),
        env=t.get("env", _str_map, base.env),
        env_files=t.path_map("env_files") if t.has("env_files") else base.env_files,
    )


_RESTIC_KEYS = tuple(f.name for f in fields(ResticSettings))
_RCLONE_KEYS = tuple(f.name for f in fields(RcloneSettings))
_COMMON_JOB_KEYS = ("kind", "description", "args", "timeout", "stop_grace", "schedule", "params",
                    "pre_hook", "post_hook", "hook_env", "hook_timeout", "pre_hook_on_error",
                    "keep_logs")
_KIND_KEYS = {"backup": ("paths", "tags", "forget_args")}


def _has_policy(args: tuple[str, ...]) -> bool:
    return any(a.startswith("--keep-") for a in args)


def _read_job(file: str, name: str, data: object, base: Path,
              restic: ResticSettings, rclone: RcloneSettings) -> JobConfig:
    if not JOB_NAME.fullmatch(name):
        raise ConfigError(file, f"jobs.{name}",
                          "job names are 1-64 characters of [A-Za-z0-9._-], starting alphanumeric")
    t = _Table(file, f"jobs.{name}", data, base)
    if not t.has("kind"):
        raise t.error("kind", f"missing (expected one of: {', '.join(JOB_KINDS)})")
    kind = t.get("kind", _choice(*JOB_KINDS))
    job_restic, job_rclone = restic, rclone
    if kind in RESTIC_KINDS:
        job_restic = _read_restic(t, restic)
    else:
        job_rclone = _read_rclone(t, rclone)
    kind_keys = _KIND_KEYS.get(kind, ())

    job = JobConfig(
        name=name, kind=kind, restic=job_restic, rclone=job_rclone,
        description=t.get("description", _string, ""),
        args=t.get("args", _strings, ()),
        paths=t.get("paths", _strings, ()) if kind == "backup" else (),
        tags=t.get("tags", _tags, ()) if kind == "backup" else (),
        forget_args=t.get("forget_args", _strings, ()) if kind == "backup" else (),
        timeout=t.get("timeout", _duration),
        stop_grace=t.get("stop_grace", _duration, 30.0),
        schedule=t.get("schedule", _string),
        params=t.get("params", _strings, ()),
        pre_hook=t.get("pre_hook", _argv, ()),
        post_hook=t.get("post_hook", _argv, ()),
        hook_env=t.get("hook_env", _env_names, ()),
        hook_timeout=t.get("hook_timeout", _duration, 300.0),
        pre_hook_on_error=t.get("pre_hook_on_error", _choice("fail", "continue"), "fail"),
        keep_logs=t.get("keep_logs", _count, 100),
    )
    tool_keys = _RESTIC_KEYS if kind in RESTIC_KINDS else _RCLONE_KEYS
    allowed = _COMMON_JOB_KEYS + kind_keys + tool_keys
    t.finish(", ".join(allowed))
    _check_job(t, job)
    return job


def _check_job(t: _Table, job: JobConfig) -> None:
    """Rules that span keys of one job."""
    for param in job.params:
        if param not in TRIGGER_PARAMS:
            raise t.error("params", f"unknown param {param!r} (expected: tags, dry_run)")
    if job.kind == "backup" and not job.paths and not any(
        a.startswith(("--files-from", "--stdin")) for a in job.args
    ):
        raise t.error("paths", "a backup job needs paths (or --files-from / --stdin in args)")
    if job.kind == "forget" and not _has_policy(job.args):
        raise t.error("args", "a forget job needs a retention policy (--keep-* options); "
                              "an empty policy is refused")
    if job.forget_args and not _has_policy(job.forget_args):
        raise t.error("forget_args", "expected a retention policy with --keep-* options")
    if job.kind == "replicate" and not job.args:
        raise t.error("args", 'a replicate job needs rclone arguments, e.g. ["sync", "SRC", "DST"]')
    if job.uses_restic:
        r = job.restic
        if not (r.repository or r.repository_file):
            raise t.error("repository", "no repository: set repository or repository_file here "
                                        "or in [restic]")
        if not (r.password or r.password_file or "RESTIC_PASSWORD_COMMAND" in r.env):
            raise t.error("password_file", "no password: set password_file here or in [restic]")
    allowed_env = set(job.restic.env_files) | set(job.rclone.env_files) | {
        "RESTIC_REPOSITORY", "RESTIC_PASSWORD"}
    for name in job.hook_env:
        if name not in allowed_env:
            raise t.error("hook_env", f"{name} is not a secret this job knows "
                                      "(expected a key of env_files, RESTIC_REPOSITORY or "
                                      "RESTIC_PASSWORD)")


def parse_bind(value: object) -> str:
    text = _string(value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _expect('"HOST:PORT", e.g. "127.0.0.1:8080"', value)
    return text


def _read_server(t: _Table) -> ServerConfig:
    d = ServerConfig()
    server = ServerConfig(
        bind=t.get("bind", parse_bind, d.bind),
        workers=t.get("workers", _count, d.workers),
        threads=t.get("threads", _count, d.threads),
        max_body_bytes=t.get("max_body_bytes", _count, d.max_body_bytes),
        max_wait=t.get("max_wait", _duration, d.max_wait),
        graceful_timeout=t.get("graceful_timeout", _duration, d.graceful_timeout),
        max_requests=t.get("max_requests", _count, d.max_requests),
    )
    t.finish()
    return server


def _read_clients(file: str, data: object, base: Path, jobs: Mapping[str, JobConfig]
                  ) -> tuple[ClientConfig, ...]:
    if not isinstance(data, list):
        raise ConfigError(file, "clients", "expected an array of tables ([[clients]])")
    clients: list[ClientConfig] = []
    for i, body in enumerate(data):
        t = _Table(file, f"clients[{i}]", body, base)
        name = t.get("name", _string)
        if name is None:
            raise t.error("name", "missing (every client needs a name)")
        if any(c.name == name for c in clients):
            raise t.error("name", f"a client named {name!r} is already defined")
        allowed = t.get("jobs", _strings, ())
        for job in allowed:
            if job != "*" and job not in jobs:
                raise t.error("jobs", f"no job named {job!r} (configured: "
                                      f"{', '.join(sorted(jobs)) or 'none'}; \"*\" means all)")
        client = ClientConfig(name=name, jobs=allowed,
                              secret_file=t.path("secret_file", must_exist=True),
                              token_file=t.path("token_file", must_exist=True))
        if not (client.secret_file or client.token_file):
            raise t.error("secret_file", "a client needs secret_file (Standard Webhooks) or "
                                         "token_file (Bearer)")
        t.finish()
        clients.append(client)
    return tuple(clients)


def _default_state_dir() -> Path:
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    system = Path("/var/lib/restic-runner")
    try:
        system.mkdir(parents=True, exist_ok=True)
        if os.access(system, os.W_OK):
            return system
    except OSError:
        pass
    return Path.home() / ".local" / "state" / "restic-runner"


def parse_config(data: Mapping[str, Any], path: Path) -> Config:
    """Validate an already-parsed TOML document; `path` locates errors and relative paths."""
    file = str(path)
    base = path.parent.resolve()
    top = _Table(file, "", dict(data), base)
    state_dir = top.path("state_dir") or _default_state_dir()
    hostname = top.get("hostname", _string) or os.uname().nodename
    restic_table = _Table(file, "restic", data.get("restic", {}), base)
    restic = _read_restic(restic_table, ResticSettings())
    restic_table.finish()
    rclone_table = _Table(file, "rclone", data.get("rclone", {}), base)
    rclone = _read_rclone(rclone_table, RcloneSettings())
    rclone_table.finish()
    top.seen.update(("restic", "rclone"))
    jobs_table = _Table(file, "jobs", data.get("jobs", {}), base)
    top.seen.add("jobs")
    jobs = {name: _read_job(file, name, body, base, restic, rclone)
            for name, body in jobs_table.data.items()}
    server = _read_server(_Table(file, "server", data.get("server", {}), base))
    clients = _read_clients(file, data.get("clients", []), base, jobs)
    for section in ("notify", "signing"):
        top.get(section, _raw_table)
    top.seen.update(("server", "clients"))
    top.finish()
    return Config(
        path=path, state_dir=state_dir, hostname=hostname, restic=restic, rclone=rclone,
        jobs=MappingProxyType(jobs),
        server=server,
        clients=clients,
        notify=MappingProxyType(dict(data.get("notify", {}))),
        signing=MappingProxyType(dict(data.get("signing", {}))),
    )


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
                      f"no configuration: pass --config, set ${CONFIG_ENV}, "
                      f"or create ./{DEFAULT_CONFIG_NAME}")


def load_config(explicit: str | None = None) -> Config:
    """Find, read and validate the configuration."""
    import tomllib

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

