"""Configuration: TOML into frozen, validated objects.

Every problem is reported as one `ConfigError` naming the file, the dotted key and what was
expected, before anything runs.
"""

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from runner.configuration.notify import NotifySettings, SigningSettings, read_notify, read_signing
from runner.configuration.replicatelines import ReplicateLine, parse_lines
from runner.configuration.tables import (
    Table,
    as_bool,
    as_count,
    as_duration,
    as_hook,
    as_hook_env,
    as_job_tags,
    as_niceness,
    as_paths,
    as_positive_number,
    as_program,
    as_rclone_args,
    as_restic_args,
    as_str_map,
    as_string,
    as_strings,
    as_tags,
    choice,
    expect,
    local_repository,
)
from runner.errors import ConfigError

JOB_KINDS = ("backup", "forget", "prune", "check", "unlock", "replicate", "restore-test")
# `restore` is built by `restic-runner restore` for one run, never from a config file
RESTIC_KINDS = frozenset(JOB_KINDS) - {"replicate"} | {"restore"}
TRIGGER_PARAMS = frozenset({"tags", "dry_run"})
DRY_RUN_KINDS = frozenset({"backup", "forget", "prune", "replicate"})  # whose tool has --dry-run
# and `restore` (built by the CLI only), `restore-test` (a run's param or `compat restore-test
# --dry-run`): restic restore --dry-run, 0.17 and later
RUN_DRY_RUN_KINDS = DRY_RUN_KINDS | {"restore", "restore-test"}
JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
STATE_DIR_ENV = "RESTIC_RUNNER_STATE_DIR"
# how old a job's last success may get before the shipped alert fires (job key `max_age`)
DEFAULT_MAX_AGE = {"backup": 26 * 3600.0, "replicate": 26 * 3600.0}
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


class ResticSettings(NamedTuple):
    """How to reach one restic repository; `[restic]`, overridable per job."""

    binary: str = "restic"
    repository: str | None = None
    repository_file: Path | None = None
    password: str | None = None  # inline: works, but doctor warns
    password_file: Path | None = None
    env: Mapping[str, str] = _EMPTY  # plain variables for restic
    env_files: Mapping[str, Path] = _EMPTY  # secrets, read from files
    cache_dir: Path | None = None
    cacert: Path | None = None
    auto_unlock: bool = False
    init_if_missing: bool = False  # serve/schedule: `restic init` a repository that does not exist
    retry_lock: float | None = None  # restic >= 0.16: --retry-lock, wait this long for a lock
    progress_fps: float = 2.0  # RESTIC_PROGRESS_FPS: status lines per second


class RcloneSettings(NamedTuple):
    """`[rclone]`, overridable per replicate job."""

    binary: str = "rclone"
    config: Path | None = None
    env: Mapping[str, str] = _EMPTY
    env_files: Mapping[str, Path] = _EMPTY


class JobConfig(NamedTuple):
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
    # the tags a trigger may send (with params = ["tags"]): a free-text tag would be echoed in
    # masked output, so a client could test guesses against secrets (`***`)
    allowed_tags: tuple[str, ...] = ()
    pre_hook: tuple[str, ...] = ()
    post_hook: tuple[str, ...] = ()
    hook_env: tuple[str, ...] = ()
    hook_timeout: float = 300.0
    pre_hook_on_error: str = "fail"
    keep_logs: int = 100
    max_age: float = 26 * 3600.0  # alert threshold: the last success may be this old
    # every run passes --dry-run (a preview): no trigger can turn it off
    dry_run: bool = False
    # The top-level `hostname`: backups record it (`restic backup --host`), so a container
    # whose system hostname changes at every start keeps one snapshot lineage (parents, forget).
    host: str = ""
    # restore-test: what to restore where, and what must be there afterwards
    snapshot: str = "latest"
    include: tuple[str, ...] = ()
    target_dir: Path | None = None
    min_files: int = 1
    canaries: Mapping[str, str] = _EMPTY  # original path -> sha256
    keep: bool = False
    # replicate: the lines of a job file, one rclone call each (empty: one call with `args`)
    replicate_lines: tuple[ReplicateLine, ...] = ()

    @property
    def uses_restic(self) -> bool:
        return self.kind in RESTIC_KINDS


class ServerConfig(NamedTuple):
    """`[server]`: how `serve` listens and what a request may ask for."""

    bind: str = "127.0.0.1:8080"
    workers: int = 2
    threads: int = 8  # per worker: long-polls (?wait=) hold a thread each
    max_body_bytes: int = 65536
    read_timeout: float = 10.0  # for a request's head and body (slow clients hold a thread)
    max_wait: float = 25.0
    max_waits_per_client: int = 2  # per worker process; all clients: half its threads
    # failed authentications a minute per address group (all addresses: ten times this)
    max_auth_failures: int = 10
    graceful_timeout: float = 30.0
    max_requests: int = 0  # recycle workers after this many requests (0: never)
    log_format: str = "text"  # service logs on stdout: "text" or "json" (JSON lines)
    # added to the niceness of the runs serve and schedule start (and their sessions'
    # autogroups): the API keeps a CPU under contention (p99 with twenty runs on 2 cores:
    # 94-123 ms without, 10-18 ms with)
    run_nice: int = 10


class ClientConfig(NamedTuple):
    """`[[clients]]`: who may call the API, with which credential, for which jobs."""

    name: str
    jobs: tuple[str, ...]
    secret_file: Path | None = None  # Standard Webhooks `whsec_` secret(s), one per line
    token_file: Path | None = None  # Bearer token(s), one per line


class HistorySettings(NamedTuple):
    """`[history]`: how much of the run history (runs, their events, deliveries, attempts and
    log files) is kept. A run goes when it is older than `keep_for` or beyond the newest
    `keep_runs` of its job, whichever comes first (runs/history docs)."""

    keep_runs: int = 1000  # per job
    keep_for: float = 90 * 86400.0  # seconds


def _read_history(t: Table) -> HistorySettings:
    d = HistorySettings()
    settings = HistorySettings(keep_runs=t.get("keep_runs", as_count, d.keep_runs),
                               keep_for=t.get("keep_for", as_duration, d.keep_for))
    t.finish()
    return settings


class Config(NamedTuple):
    path: Path
    state_dir: Path
    hostname: str
    restic: ResticSettings
    rclone: RcloneSettings
    jobs: Mapping[str, JobConfig]
    server: ServerConfig = ServerConfig()
    clients: tuple[ClientConfig, ...] = ()
    notify: NotifySettings = NotifySettings()
    signing: SigningSettings = SigningSettings()
    history: HistorySettings = HistorySettings()
    warnings: tuple[str, ...] = ()  # e.g. restic-backup-helper variables that mean nothing here
    # jobs that could not be built (environment mode): name -> one-line reason; not in `jobs`
    disabled: Mapping[str, str] = _EMPTY
    # those of `disabled` nobody scheduled or configured (e.g. forget without RESTIC_FORGET_ARGS
    # or FORGET_CRON): no start-up warning, an informational doctor line
    unrequested: frozenset[str] = frozenset()
    # what environment mode could not apply (a notification target, a schedule): what -> why
    problems: Mapping[str, str] = _EMPTY
    # where restic-backup-helper wrote its outputs (e.g. /var/log): the engine writes there too
    compat_log_dir: Path | None = None

    def job(self, name: str) -> JobConfig:
        try:
            return self.jobs[name]
        except KeyError:
            if name in self.disabled:
                raise ConfigError(str(self.path), f"jobs.{name}",
                                  f"job disabled: {self.disabled[name]}") from None
            known = ", ".join(sorted(self.jobs)) or "none"
            raise ConfigError(str(self.path), f"jobs.{name}",
                              f"no such job (configured: {known})") from None


def _read_restic(t: Table, base: ResticSettings) -> ResticSettings:
    pairs = (("repository", "repository_file"), ("password", "password_file"))
    for inline, from_file in pairs:
        if t.has(inline) and t.has(from_file):
            raise t.error(from_file, f"set {inline} or {from_file}, not both")
    values: dict[str, Any] = {
        "binary": t.get("binary", as_program(t.base), base.binary),
        "repository": t.get("repository", _repository(t.base), base.repository),
        "repository_file": t.secret_path("repository_file", base.repository_file,
                                         _repository_line),
        "password": t.get("password", as_string, base.password),
        "password_file": t.secret_path("password_file", base.password_file),
        "env": t.get("env", as_str_map, base.env),
        "env_files": (t.path_map("env_files", secret=True) if t.has("env_files")
                      else base.env_files),
        "cache_dir": t.path("cache_dir", base.cache_dir),
        "cacert": t.path("cacert", base.cacert, must_exist=True),
        "auto_unlock": t.get("auto_unlock", as_bool, base.auto_unlock),
        "init_if_missing": t.get("init_if_missing", as_bool, base.init_if_missing),
        "retry_lock": t.get("retry_lock", as_duration, base.retry_lock),
        "progress_fps": t.get("progress_fps", as_positive_number, base.progress_fps),
    }
    # A job that sets one form of a setting replaces the other form inherited from [restic].
    for inline, from_file in pairs:
        if t.has(inline):
            values[from_file] = None
        elif t.has(from_file):
            values[inline] = None
    return ResticSettings(**values)


def _repository(base: Path) -> Callable[[object], str]:
    return lambda value: local_repository(base, as_string(value))


def _repository_line(text: str) -> None:
    if not any(line.strip() and not line.strip().startswith("#") for line in text.splitlines()):
        raise ValueError("holds no repository line (only blank lines and # comments)")


def _whsec_lines(text: str) -> None:
    from security.signing import check_whsec_lines

    check_whsec_lines(text)


def _token_lines(text: str) -> None:
    from security.auth import check_token_lines

    check_token_lines(text)


def _read_rclone(t: Table, base: RcloneSettings) -> RcloneSettings:
    return RcloneSettings(
        binary=t.get("binary", as_program(t.base), base.binary),
        config=t.path("config", base.config, must_exist=True),
        env=t.get("env", as_str_map, base.env),
        env_files=(t.path_map("env_files", secret=True) if t.has("env_files")
                   else base.env_files),
    )


_RESTIC_KEYS = ResticSettings._fields
_RCLONE_KEYS = RcloneSettings._fields
_COMMON_JOB_KEYS = ("kind", "description", "args", "timeout", "stop_grace", "schedule", "params",
                    "allowed_tags", "pre_hook", "post_hook", "hook_env", "hook_timeout",
                    "pre_hook_on_error", "keep_logs", "max_age", "dry_run")
_KIND_KEYS = {"backup": ("paths", "tags", "forget_args"),
              "replicate": ("lines",),
              "restore-test": ("snapshot", "include", "target_dir", "min_files", "canaries",
                               "keep")}
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _canaries(value: object) -> Mapping[str, str]:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and k.startswith("/") and isinstance(v, str)
            and _SHA256.fullmatch(v) for k, v in value.items()):
        raise expect('a table of "/absolute/path" = "<64 hex digits of its SHA-256>"', value)
    return MappingProxyType({k: v.lower() for k, v in value.items()})


def _min_files(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise expect("a whole number, 0 or more", value)
    return value


def _schedule(value: object) -> str:
    from runner.configuration.schedule import parse_schedule

    text = as_string(value)
    parse_schedule(text)  # ValueError names what was expected
    return text


def _has_policy(args: tuple[str, ...]) -> bool:
    return any(a.startswith("--keep-") for a in args)


def _read_job(file: str, name: str, data: object, base: Path, restic: ResticSettings,
              rclone: RcloneSettings, state_dir: Path, hostname: str,
              keep_bad_lines: bool = False) -> JobConfig:
    if not JOB_NAME.fullmatch(name):
        raise ConfigError(file, f"jobs.{name}",
                          "job names are 1-64 characters of [A-Za-z0-9._-], starting alphanumeric")
    t = Table(file, f"jobs.{name}", data, base)
    if not t.has("kind"):
        raise t.error("kind", f"missing (expected one of: {', '.join(JOB_KINDS)})")
    kind = t.get("kind", choice(*JOB_KINDS))
    job_restic, job_rclone = restic, rclone
    if kind in RESTIC_KINDS:
        job_restic = _read_restic(t, restic)
    else:
        job_rclone = _read_rclone(t, rclone)
    kind_keys = _KIND_KEYS.get(kind, ())

    job = JobConfig(
        name=name, kind=kind, restic=job_restic, rclone=job_rclone,
        description=t.get("description", as_string, ""),
        args=t.get("args", as_restic_args(base) if kind in RESTIC_KINDS
                   else as_rclone_args(base), ()),
        paths=t.get("paths", as_paths(base), ()) if kind == "backup" else (),
        tags=t.get("tags", as_job_tags, ()) if kind == "backup" else (),
        forget_args=t.get("forget_args", as_restic_args(base), ()) if kind == "backup" else (),
        timeout=t.get("timeout", as_duration),
        stop_grace=t.get("stop_grace", as_duration, 30.0),
        schedule=t.get("schedule", _schedule),
        params=t.get("params", as_strings, ()),
        allowed_tags=t.get("allowed_tags", as_tags, ()),
        pre_hook=t.get("pre_hook", as_hook(base), ()),
        post_hook=t.get("post_hook", as_hook(base), ()),
        hook_env=t.get("hook_env", as_hook_env, ()),
        hook_timeout=t.get("hook_timeout", as_duration, 300.0),
        pre_hook_on_error=t.get("pre_hook_on_error", choice("fail", "continue"), "fail"),
        keep_logs=t.get("keep_logs", as_count, 100),
        max_age=t.get("max_age", as_duration, DEFAULT_MAX_AGE.get(kind, 8 * 86400.0)),
        dry_run=t.get("dry_run", as_bool, False),
        host=hostname,
        replicate_lines=(_replicate_lines(t, base, keep_bad_lines) if kind == "replicate"
                         else ()),
        **(_restore_test_keys(t, name, state_dir) if kind == "restore-test" else {}),
    )
    tool_keys = _RESTIC_KEYS if kind in RESTIC_KINDS else _RCLONE_KEYS
    allowed = _COMMON_JOB_KEYS + kind_keys + tool_keys
    t.finish(", ".join(allowed))
    _check_job(t, job)
    return job


def _replicate_lines(t: Table, base: Path, keep_bad: bool) -> tuple[ReplicateLine, ...]:
    """`lines`: job-file lines `"SOURCE;DESTINATION;MODE;ARGS"`, each one rclone call with the
    job's `args` before its own. A config file refuses a malformed line; environment mode
    (`keep_bad`) keeps it, to be counted failed as restic-backup-helper counts it."""
    raw = t.get("lines", _job_file_lines, ())
    if not raw:
        return ()
    common = t.get("args", as_rclone_args(base), ())
    lines = parse_lines(raw, common)
    for line in lines:
        if line.problem and not keep_bad:
            raise t.error("lines", line.problem)
    if not lines:
        raise t.error("lines", "no job lines (only blank lines and # comments)")
    return tuple(line._replace(source=_rclone_operand(base, line.source),
                               destination=_rclone_operand(base, line.destination))
                 for line in lines)


def _job_file_lines(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise expect('a list of "SOURCE;DESTINATION;MODE;ARGS" strings', value)
    return tuple(value)


def _rclone_operand(base: Path, operand: str) -> str:
    return as_rclone_args(base)(["copy", operand])[1] if operand else operand


def _restore_test_keys(t: Table, name: str, state_dir: Path) -> dict[str, Any]:
    return {
        "snapshot": t.get("snapshot", as_string, "latest"),
        "include": t.get("include", as_strings, ()),
        "target_dir": t.path("target_dir", state_dir / "restore-test" / name),
        "min_files": t.get("min_files", _min_files, 1),
        "canaries": t.get("canaries", _canaries, _empty()),
        "keep": t.get("keep", as_bool, False),
    }


def _check_pinned_dry_run(t: Table, job: JobConfig) -> None:
    """`dry_run = true`: only where the tool has a dry run; and such a job never succeeds for
    real, so it promises no freshness (`max_age`)."""
    if job.kind not in DRY_RUN_KINDS:
        raise t.error("dry_run", f"a {job.kind} job has no dry run (expected: only backup, "
                                 "forget, prune and replicate jobs set it)")
    if t.has("max_age"):
        raise t.error("max_age", "a job with dry_run = true never succeeds for real, so it has "
                                 "no max_age (its last success is never counted)")


def _check_job(t: Table, job: JobConfig) -> None:
    """Rules that span keys of one job."""
    for param in job.params:
        if param not in TRIGGER_PARAMS:
            raise t.error("params", f"unknown param {param!r} (expected: tags, dry_run)")
    if "tags" in job.params and not job.allowed_tags:
        raise t.error("allowed_tags", 'required with params = ["tags"]: the tags a trigger may '
                      'send, e.g. ["weekly", "airflow"] (a free-text tag is echoed in masked '
                      "output, which would let a client test guesses against secrets)")
    if job.allowed_tags and "tags" not in job.params:
        raise t.error("allowed_tags", 'has no effect without params = ["tags"]')
    if job.dry_run:
        _check_pinned_dry_run(t, job)
    if job.kind == "backup" and not job.paths and not any(
        a.startswith(("--files-from", "--stdin")) or not a.startswith("-") for a in job.args
    ):
        raise t.error("paths", "a backup job needs paths (or --files-from / --stdin or paths "
                               "in args)")
    if job.kind == "forget" and not _has_policy(job.args):
        raise t.error("args", "a forget job needs a retention policy (--keep-* options); "
                              "an empty policy is refused")
    if job.forget_args and not _has_policy(job.forget_args):
        raise t.error("forget_args", "expected a retention policy with --keep-* options")
    if job.kind == "replicate" and not job.args and not job.replicate_lines:
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
    if job.hook_env == ("*",):
        return  # the whole environment (restic-backup-helper's hooks): docs/configuration.md
    for name in job.hook_env:
        if name not in allowed_env:
            raise t.error("hook_env", f"{name} is not a secret this job knows "
                                      "(expected a key of env_files, RESTIC_REPOSITORY or "
                                      "RESTIC_PASSWORD)")


def parse_bind(value: object) -> str:
    text = as_string(value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise expect('"HOST:PORT", e.g. "127.0.0.1:8080"', value)
    return text


def _read_server(t: Table) -> ServerConfig:
    d = ServerConfig()
    server = ServerConfig(
        bind=t.get("bind", parse_bind, d.bind),
        workers=t.get("workers", as_count, d.workers),
        threads=t.get("threads", as_count, d.threads),
        max_body_bytes=t.get("max_body_bytes", as_count, d.max_body_bytes),
        read_timeout=t.get("read_timeout", as_duration, d.read_timeout),
        max_wait=t.get("max_wait", as_duration, d.max_wait),
        max_waits_per_client=t.get("max_waits_per_client", as_count,
                                   d.max_waits_per_client),
        max_auth_failures=t.get("max_auth_failures", as_count, d.max_auth_failures),
        graceful_timeout=t.get("graceful_timeout", as_duration, d.graceful_timeout),
        max_requests=t.get("max_requests", as_count, d.max_requests),
        log_format=t.get("log_format", choice("text", "json"), d.log_format),
        run_nice=t.get("run_nice", as_niceness, d.run_nice),
    )
    t.finish()
    return server


def _read_clients(file: str, data: object, base: Path, jobs: Mapping[str, JobConfig]
                  ) -> tuple[ClientConfig, ...]:
    if not isinstance(data, list):
        raise ConfigError(file, "clients", "expected an array of tables ([[clients]])")
    clients: list[ClientConfig] = []
    for i, body in enumerate(data):
        t = Table(file, f"clients[{i}]", body, base)
        name = t.get("name", as_string)
        if name is None:
            raise t.error("name", "missing (every client needs a name)")
        if any(c.name == name for c in clients):
            raise t.error("name", f"a client named {name!r} is already defined")
        allowed = t.get("jobs", as_strings, ())
        for job in allowed:
            if job != "*" and job not in jobs:
                raise t.error("jobs", f"no job named {job!r} (configured: "
                                      f"{', '.join(sorted(jobs)) or 'none'}; \"*\" means all)")
        client = ClientConfig(name=name, jobs=allowed,
                              secret_file=t.secret_path("secret_file", check=_whsec_lines),
                              token_file=t.secret_path("token_file", check=_token_lines))
        if not (client.secret_file or client.token_file):
            raise t.error("secret_file", "a client needs secret_file (Standard Webhooks) or "
                                         "token_file (Bearer)")
        t.finish()
        clients.append(client)
    return tuple(clients)


def default_state_dir() -> Path:
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    # Chosen without creating anything (`config check` creates nothing): the directory is made
    # (mode 0700) by the command that first uses it.
    system = Path("/var/lib/restic-runner")
    if os.access(system, os.W_OK) or (not system.exists() and os.access(system.parent, os.W_OK)):
        return system
    return Path.home() / ".local" / "state" / "restic-runner"


def parse_config(data: Mapping[str, Any], path: Path, *, environment: bool = False) -> Config:
    """Validate an already-parsed TOML document; `path` locates errors and relative paths.
    `environment`: the document environment mode built (malformed replicate lines are kept)."""
    file = str(path)
    base = path.parent.resolve()
    top = Table(file, "", dict(data), base)
    state_dir = top.path("state_dir") or default_state_dir()
    compat_log_dir = top.path("compat_log_dir")
    hostname = top.get("hostname", as_string) or os.uname().nodename
    restic_table = Table(file, "restic", data.get("restic", {}), base)
    restic = _read_restic(restic_table, ResticSettings())
    restic_table.finish()
    rclone_table = Table(file, "rclone", data.get("rclone", {}), base)
    rclone = _read_rclone(rclone_table, RcloneSettings())
    rclone_table.finish()
    top.seen.update(("restic", "rclone"))
    jobs_table = Table(file, "jobs", data.get("jobs", {}), base)
    top.seen.add("jobs")
    jobs = {name: _read_job(file, name, body, base, restic, rclone, state_dir, hostname,
                            keep_bad_lines=environment)
            for name, body in jobs_table.data.items()}
    if any(job.hook_env == ("*",) for job in jobs.values()):
        # those hooks see every variable: a hook printing one must be masked everywhere
        from security.masking import register_environment

        register_environment(os.environ)
    server = _read_server(Table(file, "server", data.get("server", {}), base))
    clients = _read_clients(file, data.get("clients", []), base, jobs)
    notify = read_notify(file, data.get("notify", {}), base, tuple(jobs))
    signing = read_signing(file, data.get("signing", {}), base)
    history = _read_history(Table(file, "history", data.get("history", {}), base))
    top.seen.update(("server", "clients", "notify", "signing", "history"))
    top.finish()
    return Config(
        path=path, state_dir=state_dir, hostname=hostname, restic=restic, rclone=rclone,
        jobs=MappingProxyType(jobs),
        server=server,
        clients=clients,
        notify=notify,
        signing=signing,
        history=history,
        compat_log_dir=compat_log_dir,
    )
