"""Configuration from restic-backup-helper's environment variables (docs/migration.md), for
users who swap the image and keep their variables: used when no config file is found and
`RESTIC_REPOSITORY` or `RESTIC_REPOSITORY_FILE` is set.

The variables, with the helper's defaults for those left unset (`PEER_DEFAULTS`) and its
deprecated `SYNC_*` names mapped (`LEGACY`), become the document a TOML file would give, then
validated the same way; an error names the variable, not a TOML key. A value that makes one job
impossible disables that job alone (`Config.disabled`, with the reason), one that spoils a
notification target or a schedule leaves that out (`Config.problems`): the other jobs run, as
they do in the helper. Secrets given inline (`RESTIC_PASSWORD`, `WEBHOOK_HEADER_AUTH`, …) are
written to mode-0600 files under `state_dir/env-secrets/` and registered for masking.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner.configuration.config import Config, default_state_dir, parse_config
from runner.configuration.envjobs import read_jobs
from runner.configuration.envnotify import read_notify
from runner.configuration.envpassthrough import tool_environment
from runner.errors import ConfigError

SOURCE = "<environment>"
SECRETS_DIR = "env-secrets"  # under state_dir: the inline secrets, as 0600 files
# restic-backup-helper 2.14's Dockerfile ENV defaults, applied to a variable that is not set at
# all (set but empty keeps the helper's meaning of empty). Its empty defaults mean "unset" and
# are left out. Not applied: RESTIC_REPOSITORY=/mnt/restic (the image sets it: it switches
# environment mode on) and RESTIC_CACHE_DIR=/.cache/restic (restic's own default, under $HOME,
# is writable by the unprivileged user restic-runner runs as).
PEER_DEFAULTS = MappingProxyType({
    "RESTIC_TAG": "automated",
    "RESTIC_CHECK_REPOSITORY_STATUS": "ON",
    "RESTIC_AUTO_UNLOCK": "OFF",
    "BACKUP_CRON": "0 */6 * * *",
    "RCLONE_CONFIG": "/config/rclone.conf",
    "REPLICATE_JOB_FILE": "/config/replicate_jobs.txt",
    "REPLICATE_VERBOSE": "ON",
    "REPLICATE_BISYNC_CHECK_ACCESS": "OFF",
    "ROTATE_LOG_CRON": "0 0 * * 6",
    "CRON_LOG_MAX_SIZE": "1048576",
    "MAX_CRON_LOG_ARCHIVES": "5",
    "HOOK_TIMEOUT": "0",
    "MAILX_ON_ERROR": "OFF",
    "WEBHOOK_TIMEOUT": "10",
    "WEBHOOK_ON_ERROR": "OFF",
    "OS_USER_DOMAIN_NAME": "Default",
    "OS_PROJECT_DOMAIN_ID": "Default",
    "OS_IDENTITY_API_VERSION": "3",
    "TZ": "Europe/Amsterdam",
})
# The deprecated SYNC_* names, mapped as the helper's entry.sh maps them: legacy -> (current,
# the current value it overrides besides empty).
LEGACY = MappingProxyType({
    "SYNC_CRON": ("REPLICATE_CRON", ""),
    "SYNC_JOB_FILE": ("REPLICATE_JOB_FILE", "/config/replicate_jobs.txt"),
    "SYNC_JOB_ARGS": ("REPLICATE_JOB_ARGS", ""),
    "SYNC_VERBOSE": ("REPLICATE_VERBOSE", "ON"),
    "SYNC_BISYNC_CHECK_ACCESS": ("REPLICATE_BISYNC_CHECK_ACCESS", "OFF"),
})
# variables of restic-backup-helper that mean nothing here, and why (warned when set)
OBSOLETE = {
    "ROTATE_LOG_CRON": "service logs go to stdout (the container runtime rotates them)",
    "CRON_LOG_MAX_SIZE": "service logs go to stdout (the container runtime rotates them)",
    "MAX_CRON_LOG_ARCHIVES": "service logs go to stdout (the container runtime rotates them)",
    "LOG_VERBOSE": "every run has its own masked log (GET /runs/<id>/log)",
    "REPLICATE_VERBOSE": "every run has its own masked log (GET /runs/<id>/log)",
    "MAILX_ARGS": "mail is sent over SMTP (SMTP_* or /etc/msmtprc)",
    "NFS_TARGET": "mount the volume in the container or pod spec instead",
}
_JOB_KEY = re.compile(r"jobs\.([^.\[]+)")
_TARGET_KEY = re.compile(r"notify\.(webhooks\.[^.]+|healthchecks\.[^.]+|[^.]+)")


def wants_environment(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("RESTIC_REPOSITORY") or environ.get("RESTIC_REPOSITORY_FILE"))


def with_defaults(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The variables with the helper's defaults and its SYNC_* names applied, and the
    deprecation warnings."""
    env = {**PEER_DEFAULTS, **environ}
    warnings = []
    for legacy, (current, overridable) in LEGACY.items():
        if env.get(legacy) and env.get(current, "") in ("", overridable):
            env[current] = env[legacy]
            warnings.append(f"{legacy} is deprecated; rename to {current} "
                            "(restic-backup-helper removes it in 3.0.0)")
    return env, warnings


class _Builder:
    def __init__(self, environ: Mapping[str, str], state_dir: Path) -> None:
        self.given = frozenset(name for name in environ if isinstance(name, str))
        self.env, self.warnings = with_defaults(environ)
        self.state_dir = state_dir
        self.keys: dict[str, str] = {}
        self.problems: dict[str, str] = {}
        self.disabled: dict[str, str] = {}
        self.unrequested: set[str] = set()
        self.secrets: dict[str, bytes] = {}  # env-secrets/ file name -> content

    def get(self, name: str) -> str | None:
        value = self.env.get(name)
        return value if value not in (None, "") else None

    def secret_file(self, name: str, value: str, *, warn: bool = True) -> str:
        """An inline secret, for a `*_file` key: its path under `state_dir/env-secrets/`, where
        `write_secrets` puts it (mode 0600)."""
        # http_proxy and HTTP_PROXY are two variables
        filename = name.lower() if name.isupper() else f"{name}.lowercase"
        # surrogateescape: an environment value that is not UTF-8 is kept byte for byte
        self.secrets[filename] = value.encode("utf-8", "surrogateescape") + b"\n"
        if warn:
            self.warnings.append(f"{name} is given inline; prefer {name}_FILE (a mounted secret)")
        return str(self.state_dir / SECRETS_DIR / filename)

    def write_secrets(self) -> None:
        """`state_dir/env-secrets/` holds this environment's inline secrets and nothing else
        (the file of a variable since removed goes). Nothing is written when the files are
        already right; without inline secrets nothing is created. A symlink or anything else
        than a directory there is refused, naming it (docs/security.md#secret-files)."""
        from runner.fsutil import sync_private_files

        directory = self.state_dir / SECRETS_DIR
        try:
            sync_private_files(directory, self.secrets)
        except OSError as exc:
            where = exc.filename or directory
            raise ConfigError(SOURCE, "RESTIC_RUNNER_STATE_DIR",
                              f"cannot keep inline secrets in {where}: "
                              f"{exc.strerror or exc}") from None

    def note(self, key: str, variable: str) -> None:
        self.keys[key] = variable

    def disable(self, job: str, reason: str, *, requested: bool = True) -> None:
        self.disabled[job] = reason
        if not requested:
            self.unrequested.add(job)


def build(environ: Mapping[str, str], state_dir: Path) -> tuple[dict[str, Any], list[str],
                                                               dict[str, str]]:
    """The config document, the warnings, and which variable each key came from."""
    data, b = _build(environ, state_dir)
    return data, b.warnings, b.keys


def _build(environ: Mapping[str, str], state_dir: Path) -> tuple[dict[str, Any], _Builder]:
    b = _Builder(environ, state_dir)
    data: dict[str, Any] = {"state_dir": str(state_dir)}
    if b.get("RESTIC_RUNNER_COMPAT_LOG_DIR"):
        data["compat_log_dir"] = b.get("RESTIC_RUNNER_COMPAT_LOG_DIR")
        b.note("compat_log_dir", "RESTIC_RUNNER_COMPAT_LOG_DIR")
    host = b.get("RESTIC_HOST") or b.get("HOSTNAME")  # restic's --host default, then the OS's
    if host:
        data["hostname"] = host
        b.note("hostname", "RESTIC_HOST" if b.get("RESTIC_HOST") else "HOSTNAME")
    plain, from_files = tool_environment(b.env, lambda n, v: b.secret_file(n, v, warn=False))
    data["restic"] = _restic(b, plain, from_files)
    data["rclone"] = _rclone(b, plain, from_files)
    data["jobs"] = read_jobs(b)
    notify = read_notify(b)
    if notify:
        data["notify"] = notify
    _service(b, data)
    for name, why in OBSOLETE.items():
        if name in b.given:
            b.warnings.append(f"{name} is not used by restic-runner: {why}")
    b.write_secrets()
    return data, b


def _restic(b: _Builder, plain: dict[str, str], from_files: dict[str, str]) -> dict[str, Any]:
    restic: dict[str, Any] = {}
    if b.get("RESTIC_REPOSITORY_FILE"):
        restic["repository_file"] = b.get("RESTIC_REPOSITORY_FILE")
        b.note("restic.repository_file", "RESTIC_REPOSITORY_FILE")
    else:
        restic["repository"] = b.get("RESTIC_REPOSITORY")
    if b.get("RESTIC_PASSWORD_FILE"):
        restic["password_file"] = b.get("RESTIC_PASSWORD_FILE")
        b.note("restic.password_file", "RESTIC_PASSWORD_FILE")
    elif b.get("RESTIC_PASSWORD"):
        restic["password_file"] = b.secret_file("RESTIC_PASSWORD", b.get("RESTIC_PASSWORD") or "")
    cacert = b.get("RESTIC_CACERT")
    if cacert and os.access(cacert, os.R_OK):
        restic["cacert"] = cacert
    elif cacert:
        b.warnings.append(f"RESTIC_CACERT is set but file is not readable: {cacert}; "
                          "--cacert not used")
    if b.get("RESTIC_CACHE_DIR"):
        restic["cache_dir"] = b.get("RESTIC_CACHE_DIR")
        b.note("restic.cache_dir", "RESTIC_CACHE_DIR")
    fps = b.get("RESTIC_PROGRESS_FPS")
    if fps:
        try:
            restic["progress_fps"] = float(fps)
            b.note("restic.progress_fps", "RESTIC_PROGRESS_FPS")
        except ValueError:
            b.warnings.append(f"RESTIC_PROGRESS_FPS={fps!r} is not a number; not used")
    if plain:
        restic["env"] = plain
    if from_files:
        restic["env_files"] = from_files
    restic["auto_unlock"] = (b.get("RESTIC_AUTO_UNLOCK") or "").upper() == "ON"
    # the helper probes (and initialises) only for exactly ON
    restic["init_if_missing"] = b.get("RESTIC_CHECK_REPOSITORY_STATUS") == "ON"
    return restic


def _rclone(b: _Builder, plain: dict[str, str], from_files: dict[str, str]) -> dict[str, Any]:
    """rclone gets the tool variables too (RCLONE_CONFIG among them: a missing file is rclone's
    to report, as in the helper, where the default /config/rclone.conf often is missing)."""
    rclone: dict[str, Any] = {"env": plain, "env_files": from_files}
    config = b.get("RCLONE_CONFIG")
    if config and os.access(config, os.R_OK):
        rclone["config"] = config
        b.note("rclone.config", "RCLONE_CONFIG")
    return {k: v for k, v in rclone.items() if v}


def _service(b: _Builder, data: dict[str, Any]) -> None:
    """New variables: the API's address and one client."""
    if b.get("RESTIC_RUNNER_BIND"):
        data["server"] = {"bind": b.get("RESTIC_RUNNER_BIND")}
        b.note("server.bind", "RESTIC_RUNNER_BIND")
    client: dict[str, Any] = {"name": "env", "jobs": ["*"]}
    if b.get("RESTIC_RUNNER_CLIENT_SECRET_FILE"):
        client["secret_file"] = b.get("RESTIC_RUNNER_CLIENT_SECRET_FILE")
        b.note("clients[0].secret_file", "RESTIC_RUNNER_CLIENT_SECRET_FILE")
    if b.get("RESTIC_RUNNER_CLIENT_TOKEN_FILE"):
        client["token_file"] = b.get("RESTIC_RUNNER_CLIENT_TOKEN_FILE")
        b.note("clients[0].token_file", "RESTIC_RUNNER_CLIENT_TOKEN_FILE")
    if len(client) > 2:
        data["clients"] = [client]


def variable_for(key: str, keys: Mapping[str, str]) -> str:
    """The environment variable behind a dotted config key (the key itself when unknown)."""
    for candidate in sorted(keys, key=len, reverse=True):
        if key == candidate or key.startswith(candidate + "."):
            return keys[candidate]
    if key.startswith("restic.repository"):
        return "RESTIC_REPOSITORY"
    if key.startswith("restic.password"):
        return "RESTIC_PASSWORD_FILE"
    return key


def load_from_environment(environ: Mapping[str, str]) -> Config:
    """The validated `Config` from the variables; errors name the variable. Jobs and targets
    that cannot be built are left out with their reason (`disabled`, `problems`)."""
    from security.secretfiles import accept_world_readable

    accept_world_readable(True)  # Docker and Kubernetes secret mounts (docs/security.md)
    state_dir = Path(environ["RESTIC_RUNNER_STATE_DIR"]) if environ.get(
        "RESTIC_RUNNER_STATE_DIR") else default_state_dir()
    data, b = _build(environ, state_dir)
    if environ is os.environ and "TZ" not in environ:
        os.environ["TZ"] = PEER_DEFAULTS["TZ"]  # the helper's cron ran in it; so do schedules
        time.tzset()
    config = _parse_leaving_out(data, b)
    if not config.jobs:  # nothing left to run: as the helper's container, do not start
        requested = [r for n, r in b.disabled.items() if n not in b.unrequested]
        reason = (requested or list(b.disabled.values()) or ["no jobs"])[0]
        variable, _, problem = reason.partition(": ")
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", variable):  # "RESTIC_TAG is empty: …"
            variable, problem = reason.split()[0].rstrip(":"), reason
        raise ConfigError(SOURCE, variable, problem)
    warnings = [*b.warnings,
                *(disabled_warning(name, why) for name, why in b.disabled.items()
                  if name not in b.unrequested),
                *(problem_warning(what, why) for what, why in b.problems.items())]
    config = config._replace(
        warnings=tuple(warnings), disabled=MappingProxyType(dict(b.disabled)),
        unrequested=frozenset(b.unrequested), problems=MappingProxyType(dict(b.problems)))
    return config._replace(warnings=(*config.warnings, *secret_file_warnings(config, b.keys)))


def secret_files(config: Config) -> dict[Path, str]:
    """The secret files environment mode hands to restic, rclone and the notifiers, with the
    setting that names them."""
    from runner.configuration.notify import secret_files as notify_secret_files

    found: dict[Path, str] = {}
    r = config.restic
    for key, path in (("restic.password_file", r.password_file),
                      ("restic.repository_file", r.repository_file)):
        if path:
            found[path] = key
    for settings, table in ((r, "restic"), (config.rclone, "rclone")):
        for name, path in settings.env_files.items():
            found.setdefault(path, f"{table}.env_files.{name}")
    for index, client in enumerate(config.clients):
        for key, path in (("secret_file", client.secret_file), ("token_file", client.token_file)):
            if path:
                found.setdefault(path, f"clients[{index}].{key}")
    for key, path in notify_secret_files(config.notify, config.signing):
        found.setdefault(path, key)
    return found


def secret_file_warnings(config: Config, keys: Mapping[str, str]) -> list[str]:
    """A world-readable secret file is accepted in environment mode (Docker mounts secrets
    0444, Kubernetes 0644), with a warning naming the variable; one others can write or own is
    refused when read."""
    from security.secretfiles import file_access, lenient_problem

    warnings = []
    for path, key in secret_files(config).items():
        access = file_access(path)
        if access.exists and access.world_readable and not lenient_problem(access):
            warnings.append(f"{variable_for(key, keys)}: secret file {access.describe()} is "
                            "readable by every "
                            "local user; accepted in environment mode (a Docker or Kubernetes "
                            "secret mount), better mounted 0400 or 0440")
    return warnings


def disabled_warning(job: str, reason: str) -> str:
    return f"job {job} is disabled: {reason}"


def problem_warning(what: str, reason: str) -> str:
    return f"{what}: {reason}"


def _parse_leaving_out(data: dict[str, Any], b: _Builder) -> Config:
    """Validate; a job (or notification target) the validation refuses is left out with the
    reason, and the rest validated again."""
    path = Path.cwd() / SOURCE
    while True:
        try:
            return parse_config(data, path, environment=True)
        except ConfigError as exc:
            variable = variable_for(exc.key, b.keys)
            reason = f"{variable}: {exc.problem}"
            job = _JOB_KEY.match(exc.key)
            target = _TARGET_KEY.match(exc.key)
            tool = exc.key.partition(".")[0]
            if tool in ("restic", "rclone") and exc.key in _tool_keys(data, tool):
                _disable_tool_jobs(data, b, tool, exc.key.partition(".")[2], reason)
            elif job and job.group(1) in data.get("jobs", {}):
                del data["jobs"][job.group(1)]
                b.disable(job.group(1), reason)
            elif target and _drop_target(data.get("notify", {}), target.group(1)):
                b.problems[f"notify.{target.group(1)}"] = reason + "; left out, the jobs run"
            else:
                raise ConfigError(SOURCE, variable, exc.problem) from None


def _tool_keys(data: dict[str, Any], tool: str) -> set[str]:
    """The dotted keys of `[restic]` or `[rclone]` (env_files' entries included)."""
    table = data.get(tool, {})
    keys = {f"{tool}.{key}" for key in table}
    keys |= {f"{tool}.env_files.{name}" for name in table.get("env_files", {})}
    return keys


def _disable_tool_jobs(data: dict[str, Any], b: _Builder, tool: str, key: str,
                       reason: str) -> None:
    """A restic (rclone) setting no job can use: every job of that tool is disabled with the
    reason; the jobs of the other tool run."""
    table = data[tool]
    head, _, name = key.partition(".")
    if name:
        del table[head][name]
    else:
        del table[head]
    for job, body in list(data.get("jobs", {}).items()):
        if (body.get("kind") == "replicate") == (tool == "rclone"):
            del data["jobs"][job]
            b.disable(job, reason)


def _drop_target(notify: dict[str, Any], key: str) -> bool:
    table, _, name = key.partition(".")
    if name and name in notify.get(table, {}):
        del notify[table][name]
        if not notify[table]:
            del notify[table]
        return True
    if not name and table in notify:
        del notify[table]
        return True
    return False
