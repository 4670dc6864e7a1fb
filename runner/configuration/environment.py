"""Configuration from restic-backup-helper's environment variables (docs/migration.md), for
users who swap the image and keep their variables: used when no config file is given and
`RESTIC_REPOSITORY` or `RESTIC_REPOSITORY_FILE` is set.

The variables become the same document a TOML file would give (then validated the same way);
an error names the variable, not a TOML key. Secrets given inline (`RESTIC_PASSWORD`,
`WEBHOOK_HEADER_AUTH`, `SMTP_PASSWORD`) work: they are written to mode-0600 files under
`state_dir/env-secrets/` and registered for masking; `doctor` warns about them. Jobs are named
`backup`, `check`, `forget`, `prune`, `replicate` (`replicate-2`, … for more job-file lines).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.configuration.config import Config, default_state_dir, parse_config
from runner.errors import ConfigError

SOURCE = "<environment>"
DEFAULT_BACKUP_CRON = "0 */6 * * *"
HOOKS_DIR = "/hooks"
UNBOUNDED_HOOK = "24h"  # what HOOK_TIMEOUT=0 ("no limit" in restic-backup-helper) becomes
# Backend credentials and settings restic (and rclone) read from their environment: handed to
# the tools as restic-backup-helper did (toolenv gives them nothing else). Values of names with
# a secret-like word go through 0600 files (`env_files`), so they are registered and masked.
BACKEND_PREFIXES = ("AWS_", "B2_", "AZURE_", "GOOGLE_", "OS_", "ST_", "RCLONE_")
SECRET_WORDS = frozenset({"SECRET", "KEY", "TOKEN", "PASSWORD", "PASS", "SAS"})
# variables of restic-backup-helper that mean nothing here, and why
OBSOLETE = {
    "ROTATE_LOG_CRON": "service logs go to stdout (the container runtime rotates them)",
    "CRON_LOG_MAX_SIZE": "service logs go to stdout (the container runtime rotates them)",
    "MAX_CRON_LOG_ARCHIVES": "service logs go to stdout (the container runtime rotates them)",
    "LOG_VERBOSE": "every run has its own masked log (GET /runs/<id>/log)",
    "REPLICATE_VERBOSE": "every run has its own masked log (GET /runs/<id>/log)",
    "MAILX_ARGS": "mail is sent over SMTP: set SMTP_HOST, SMTP_PORT, SMTP_USER, …",
    "REPLICATE_BISYNC_CHECK_ACCESS": "add --check-access to REPLICATE_JOB_ARGS",
    "SYNC_CRON": "removed in restic-backup-helper 2.0: use REPLICATE_CRON",
    "SYNC_JOB_FILE": "removed in restic-backup-helper 2.0: use REPLICATE_JOB_FILE",
    "SYNC_JOB_ARGS": "removed in restic-backup-helper 2.0: use REPLICATE_JOB_ARGS",
    "SYNC_VERBOSE": "removed in restic-backup-helper 2.0",
    "SYNC_BISYNC_CHECK_ACCESS": "removed in restic-backup-helper 2.0",
    "NFS_TARGET": "mount the volume in the container or pod spec instead",
}

def wants_environment(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("RESTIC_REPOSITORY") or environ.get("RESTIC_REPOSITORY_FILE"))


def _on(value: str | None) -> bool:
    return (value or "").strip().upper() in ("ON", "TRUE", "YES", "1")


def _split(value: str | None) -> list[str]:
    """`*_ARGS` are split on whitespace, without quoting (as restic-backup-helper does)."""
    return (value or "").split()


class _Builder:
    def __init__(self, environ: Mapping[str, str], state_dir: Path) -> None:
        self.env, self.state_dir = environ, state_dir
        self.warnings: list[str] = []
        self.keys: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        value = self.env.get(name)
        return value if value not in (None, "") else None

    def secret_file(self, name: str, value: str, *, warn: bool = True) -> str:
        """An inline secret, written where a `*_file` key can point (mode 0600)."""
        from runner.fsutil import atomic_write, private_dir

        directory = private_dir(self.state_dir / "env-secrets")
        path = directory / name.lower()
        # surrogateescape: an environment value that is not UTF-8 is kept byte for byte
        atomic_write(path, value.encode("utf-8", "surrogateescape") + b"\n", mode=0o600)
        if warn:
            self.warnings.append(f"{name} is given inline; prefer {name}_FILE (a mounted secret)")
        return str(path)

    def note(self, key: str, variable: str) -> None:
        self.keys[key] = variable


def build(environ: Mapping[str, str], state_dir: Path) -> tuple[dict[str, Any], list[str],
                                                               dict[str, str]]:
    """The config document, the warnings, and which variable each key came from."""
    b = _Builder(environ, state_dir)
    data: dict[str, Any] = {"state_dir": str(state_dir)}
    if b.get("RESTIC_RUNNER_COMPAT_LOG_DIR"):
        data["compat_log_dir"] = b.get("RESTIC_RUNNER_COMPAT_LOG_DIR")
        b.note("compat_log_dir", "RESTIC_RUNNER_COMPAT_LOG_DIR")
    if b.get("HOSTNAME"):
        data["hostname"] = b.get("HOSTNAME")
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
        b.warnings.append(f"RESTIC_CACERT: {cacert} is not readable; not used")
    if b.get("RESTIC_CACHE_DIR"):
        restic["cache_dir"] = b.get("RESTIC_CACHE_DIR")
        b.note("restic.cache_dir", "RESTIC_CACHE_DIR")
    plain, from_files = _backend_environment(b)
    if plain:
        restic["env"] = plain
    if from_files:
        restic["env_files"] = from_files
    restic["auto_unlock"] = _on(b.get("RESTIC_AUTO_UNLOCK"))
    restic["init_if_missing"] = _on(b.get("RESTIC_CHECK_REPOSITORY_STATUS"))
    data["restic"] = restic
    rclone: dict[str, Any] = {"env": plain, "env_files": from_files}
    if b.get("RCLONE_CONFIG"):
        rclone["config"] = b.get("RCLONE_CONFIG")
        b.note("rclone.config", "RCLONE_CONFIG")
    data["rclone"] = {k: v for k, v in rclone.items() if v}
    data["jobs"] = _jobs(b)
    _hooks(b, data["jobs"])
    notify = _notify(b)
    if notify:
        data["notify"] = notify
    _service(b, data)
    for name, why in OBSOLETE.items():
        if name in environ:
            b.warnings.append(f"{name} is not used by restic-runner: {why}")
    return data, b.warnings, b.keys


def _is_executable(path: Path) -> bool:
    try:
        return path.is_file() and os.access(path, os.X_OK)
    except (OSError, ValueError):  # a directory name too long, or with a NUL in it
        return False


def _backend_environment(b: _Builder) -> tuple[dict[str, str], dict[str, str]]:
    """The backend variables set: plain ones, and secret ones as name -> 0600 file."""
    plain: dict[str, str] = {}
    from_files: dict[str, str] = {}
    for name in sorted(b.env):
        value = b.get(name)
        if not name.startswith(BACKEND_PREFIXES) or value is None:
            continue
        if SECRET_WORDS & set(name.split("_")):
            from_files[name] = b.secret_file(name, value, warn=False)
        else:
            plain[name] = value
    return plain, from_files


def _jobs(b: _Builder) -> dict[str, Any]:
    jobs: dict[str, Any] = {}
    backup: dict[str, Any] = {"kind": "backup", "args": _split(b.get("RESTIC_JOB_ARGS"))}
    if "RESTIC_TAG" in b.env:
        if not b.env["RESTIC_TAG"].strip():
            raise ConfigError(SOURCE, "RESTIC_TAG", "empty: set a tag or unset the variable")
        backup["tags"] = [b.env["RESTIC_TAG"].strip()]
        b.note("jobs.backup.tags", "RESTIC_TAG")
    if b.get("BACKUP_ROOT_DIR"):
        backup["paths"] = [b.get("BACKUP_ROOT_DIR")]
    b.note("jobs.backup.paths", "BACKUP_ROOT_DIR")
    b.note("jobs.backup.args", "RESTIC_JOB_ARGS")
    cron = b.env.get("BACKUP_CRON", DEFAULT_BACKUP_CRON).strip()
    if cron:
        backup["schedule"] = cron
        b.note("jobs.backup.schedule", "BACKUP_CRON")
    forget_args = _split(b.get("RESTIC_FORGET_ARGS"))
    if forget_args and not b.get("FORGET_CRON"):  # inline forget after a successful backup
        backup["forget_args"] = forget_args
        b.note("jobs.backup.forget_args", "RESTIC_FORGET_ARGS")
    jobs["backup"] = backup
    for name, cron_var, args_var in (("check", "CHECK_CRON", "RESTIC_CHECK_ARGS"),
                                     ("forget", "FORGET_CRON", "RESTIC_FORGET_ARGS"),
                                     ("prune", "PRUNE_CRON", "RESTIC_PRUNE_ARGS")):
        if b.get(cron_var):
            jobs[name] = {"kind": name, "schedule": b.get(cron_var),
                          "args": _split(b.get(args_var))}
            b.note(f"jobs.{name}.schedule", cron_var)
            b.note(f"jobs.{name}.args", args_var)
    if b.get("REPLICATE_CRON"):
        jobs.update(_replicate_jobs(b))
    return jobs


def _replicate_jobs(b: _Builder) -> dict[str, Any]:
    """`REPLICATE_JOB_FILE` lines `SRC;DST[;MODE[;ARGS]]` (mode bisync, sync or copy)."""
    path = Path(b.get("REPLICATE_JOB_FILE") or "/config/replicate_jobs.txt")
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(SOURCE, "REPLICATE_JOB_FILE",
                          f"cannot read {path}: {exc.strerror}") from None
    jobs: dict[str, Any] = {}
    common = [a for a in _split(b.get("REPLICATE_JOB_ARGS")) if a != "--resync"]
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(";", 3)]
        mode = (parts[2].lower() if len(parts) > 2 and parts[2] else "bisync")
        if len(parts) < 2 or not parts[0] or not parts[1] or mode not in ("bisync", "sync",
                                                                            "copy"):
            raise ConfigError(SOURCE, "REPLICATE_JOB_FILE",
                              f"{path} line {number}: expected SRC;DST[;bisync|sync|copy[;ARGS]]")
        extra = [a for a in _split(parts[3] if len(parts) > 3 else "") if a != "--resync"]
        name = "replicate" if not jobs else f"replicate-{len(jobs) + 1}"
        jobs[name] = {"kind": "replicate", "schedule": b.get("REPLICATE_CRON"),
                      "args": [mode, parts[0], parts[1], *common, *extra]}
        if mode == "bisync":
            b.warnings.append(f"{path} line {number}: bisync runs as `rclone bisync`; "
                              "restic-backup-helper's automatic --resync recovery is not done")
    if not jobs:
        raise ConfigError(SOURCE, "REPLICATE_JOB_FILE", f"{path} has no job lines")
    return jobs


def _hooks(b: _Builder, jobs: dict[str, Any]) -> None:
    """`/hooks/pre-<job>.sh` and `/hooks/post-<job>.sh` when present; their failures do not
    stop a job (restic-backup-helper ignored them); `HOOK_TIMEOUT` seconds each."""
    directory = Path(b.get("RESTIC_RUNNER_HOOKS_DIR") or HOOKS_DIR)
    timeout = b.get("HOOK_TIMEOUT")
    for name, job in jobs.items():
        base = name.split("-")[0]
        for phase in ("pre", "post"):
            hook = directory / f"{phase}-{base}.sh"
            if _is_executable(hook):
                job[f"{phase}_hook"] = [str(hook)]
                job["pre_hook_on_error"] = "continue"
        if timeout and timeout.strip() == "0":
            job["hook_timeout"] = UNBOUNDED_HOOK
        elif timeout:
            job["hook_timeout"] = timeout
            b.note(f"jobs.{name}.hook_timeout", "HOOK_TIMEOUT")
    if timeout and timeout.strip() == "0":
        b.warnings.append(f"HOOK_TIMEOUT=0 (no limit) becomes {UNBOUNDED_HOOK}: restic-runner "
                          "bounds every hook")


def _notify(b: _Builder) -> dict[str, Any]:
    notify: dict[str, Any] = {}
    if b.get("METRICS_DIR"):
        notify["metrics_dir"] = b.get("METRICS_DIR")
        b.note("notify.metrics_dir", "METRICS_DIR")
    errors_only = ["warning", "failure"]
    if b.get("WEBHOOK_URL"):
        hook: dict[str, Any] = {"url": b.get("WEBHOOK_URL")}
        b.note("notify.webhooks.default.url", "WEBHOOK_URL")
        timeout = b.get("WEBHOOK_TIMEOUT")
        if timeout and timeout.isascii() and timeout.isdecimal() and int(timeout) > 0:
            hook["timeout"] = int(timeout)
        elif timeout:
            b.warnings.append(f"WEBHOOK_TIMEOUT: {timeout!r} is not a positive integer; "
                              "using 10")
        if b.get("WEBHOOK_HEADER_AUTH"):
            hook["auth_header_file"] = b.secret_file("WEBHOOK_HEADER_AUTH",
                                                     b.get("WEBHOOK_HEADER_AUTH") or "")
            b.note("notify.webhooks.default.auth_header_file", "WEBHOOK_HEADER_AUTH")
        if _on(b.get("WEBHOOK_ON_ERROR")):
            hook["on"] = errors_only
        notify["webhooks"] = {"default": hook}
    if b.get("MAILX_RCPT"):
        notify["mail"] = _mail(b, errors_only)
    if b.get("RESTIC_RUNNER_PUSHGATEWAY_URL"):
        gateway: dict[str, Any] = {"url": b.get("RESTIC_RUNNER_PUSHGATEWAY_URL")}
        b.note("notify.pushgateway.url", "RESTIC_RUNNER_PUSHGATEWAY_URL")
        if b.get("RESTIC_RUNNER_PUSHGATEWAY_USER"):
            gateway["username"] = b.get("RESTIC_RUNNER_PUSHGATEWAY_USER")
            gateway["password_file"] = b.get("RESTIC_RUNNER_PUSHGATEWAY_PASSWORD_FILE")
            b.note("notify.pushgateway.password_file", "RESTIC_RUNNER_PUSHGATEWAY_PASSWORD_FILE")
        notify["pushgateway"] = gateway
    if b.get("RESTIC_RUNNER_HEALTHCHECKS_URL_FILE"):
        notify["healthchecks"] = {"backup": {
            "url_file": b.get("RESTIC_RUNNER_HEALTHCHECKS_URL_FILE"), "jobs": ["backup"]}}
        b.note("notify.healthchecks.backup.url_file", "RESTIC_RUNNER_HEALTHCHECKS_URL_FILE")
    return notify


def _mail(b: _Builder, errors_only: list[str]) -> dict[str, Any]:
    if not b.get("SMTP_HOST"):
        raise ConfigError(SOURCE, "SMTP_HOST", "MAILX_RCPT is set: mail is sent over SMTP, "
                                               "set SMTP_HOST (and SMTP_PORT, SMTP_USER, …)")
    mail: dict[str, Any] = {
        "host": b.get("SMTP_HOST"),
        "to": [a for a in (b.get("MAILX_RCPT") or "").replace(",", " ").split() if a],
        "from": b.get("SMTP_FROM") or f"restic-runner@{b.get('HOSTNAME') or 'localhost'}",
        "starttls": _on(b.get("SMTP_STARTTLS")),
        "tls": _on(b.get("SMTP_TLS")),
    }
    if b.get("SMTP_PORT"):
        port = b.get("SMTP_PORT") or ""
        if not (port.isascii() and port.isdecimal()):
            raise ConfigError(SOURCE, "SMTP_PORT", f"expected a TCP port, got {port!r}")
        mail["port"] = int(port)
    if b.get("SMTP_USER"):
        mail["username"] = b.get("SMTP_USER")
        if b.get("SMTP_PASSWORD_FILE"):
            mail["password_file"] = b.get("SMTP_PASSWORD_FILE")
        elif b.get("SMTP_PASSWORD"):
            mail["password_file"] = b.secret_file("SMTP_PASSWORD", b.get("SMTP_PASSWORD") or "")
    if _on(b.get("MAILX_ON_ERROR")):
        mail["on"] = errors_only
    for key, var in (("host", "SMTP_HOST"), ("to", "MAILX_RCPT"), ("from", "SMTP_FROM"),
                     ("password_file", "SMTP_PASSWORD_FILE"), ("username", "SMTP_USER")):
        b.note(f"notify.mail.{key}", var)
    return mail


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
    """The validated `Config` from the variables; errors name the variable."""
    state_dir = Path(environ["RESTIC_RUNNER_STATE_DIR"]) if environ.get(
        "RESTIC_RUNNER_STATE_DIR") else default_state_dir()
    data, warnings, keys = build(environ, state_dir)
    try:
        config = parse_config(data, Path.cwd() / SOURCE)
    except ConfigError as exc:
        raise ConfigError(SOURCE, variable_for(exc.key, keys), exc.problem) from None
    return config._replace(warnings=tuple(warnings))
