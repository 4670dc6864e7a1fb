"""restic-backup-helper's config-check findings, by its keys (`RESTIC_REPOSITORY`,
`RESTIC_REPOSITORY_FILE`, `RESTIC_PASSWORD`, `RESTIC_PASSWORD_FILE`, `RESTIC_TAG`,
`BACKUP_PATHS`, `RCLONE_CONFIG`, `REPLICATE_JOB_FILE`, `RESTIC_CACERT`), for `compat
config-check` (docs/compat-commands.md). In environment mode they are read from its variables,
as it read them; with a config file, from the configuration's repository and backup jobs.
Values are masked: a repository URL by restic-runner's URL masking, a password never shown."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from runner.configuration.config import Config, JobConfig, ResticSettings

Check = dict[str, str]


def _check(key: str, status: str, message: str) -> Check:
    return {"key": key, "status": status, "message": message}


def _repository(repository: str | None, repository_file: str | None) -> Check:
    """The repository, from the file when one is named (the file wins, as in the helper)."""
    from security.secretfiles import read_repository_file
    from security.urlmask import mask_repository

    if repository_file:
        try:
            url = read_repository_file(Path(repository_file), "RESTIC_REPOSITORY_FILE")
        except Exception as exc:  # a SecretFileError or an OS error: its message says which
            return _check("RESTIC_REPOSITORY_FILE", "fail", str(exc))
        return _check("RESTIC_REPOSITORY", "ok", f"repository {mask_repository(url)} (from "
                                                 f"RESTIC_REPOSITORY_FILE {repository_file})")
    if not repository:
        return _check("RESTIC_REPOSITORY", "fail", "no repository: set RESTIC_REPOSITORY or "
                                                   "RESTIC_REPOSITORY_FILE")
    return _check("RESTIC_REPOSITORY", "ok", f"repository {mask_repository(repository)}")


def _password(password_file: str | None, password: bool, command: bool) -> Check:
    if password_file:
        if os.access(password_file, os.R_OK):
            return _check("RESTIC_PASSWORD_FILE", "ok", f"{password_file} can be read")
        return _check("RESTIC_PASSWORD_FILE", "fail", f"{password_file} cannot be read")
    if password:
        return _check("RESTIC_PASSWORD", "ok", "the password is set (not shown)")
    if command:
        return _check("RESTIC_PASSWORD", "ok", "RESTIC_PASSWORD_COMMAND gives the password")
    return _check("RESTIC_PASSWORD", "fail", "no password: set RESTIC_PASSWORD or "
                                             "RESTIC_PASSWORD_FILE")


def _readable(key: str, path: str | None, what: str) -> list[Check]:
    if not path:
        return []
    if os.access(path, os.R_OK):
        return [_check(key, "ok", f"{what} {path} can be read")]
    return [_check(key, "fail", f"{what} {path} cannot be read")]


def environment_checks(environ: Mapping[str, str]) -> list[Check]:
    """The checks from restic-backup-helper's variables (its image defaults applied)."""
    from runner.configuration.environment import with_defaults

    env, _ = with_defaults(environ)

    def get(name: str) -> str:
        return env.get(name) or ""

    checks = [_repository(get("RESTIC_REPOSITORY"), get("RESTIC_REPOSITORY_FILE")),
              _password(get("RESTIC_PASSWORD_FILE"), bool(get("RESTIC_PASSWORD")),
                        bool(get("RESTIC_PASSWORD_COMMAND")))]
    tag = get("RESTIC_TAG")
    checks.append(_check("RESTIC_TAG", "ok", f"tag {tag}") if tag.strip(", ") else
                  _check("RESTIC_TAG", "fail", "RESTIC_TAG is empty: every backup needs a tag"))
    if get("BACKUP_ROOT_DIR") or get("RESTIC_JOB_ARGS"):
        checks.append(_check("BACKUP_PATHS", "ok", "backup paths: " + (
            get("BACKUP_ROOT_DIR") or "in RESTIC_JOB_ARGS")))
    else:
        checks.append(_check("BACKUP_PATHS", "fail", "no backup paths: BACKUP_ROOT_DIR and "
                                                     "RESTIC_JOB_ARGS are both empty"))
    if checks[0]["key"] == "RESTIC_REPOSITORY" and _uses_rclone(checks[0]["message"]):
        checks += _readable("RCLONE_CONFIG", get("RCLONE_CONFIG") or "/config/rclone.conf",
                            "the rclone config of the rclone: repository")
    if get("REPLICATE_CRON"):
        job_file = get("REPLICATE_JOB_FILE")
        if os.path.isfile(job_file) and os.path.getsize(job_file) > 0:
            checks.append(_check("REPLICATE_JOB_FILE", "ok", f"job file {job_file}"))
        else:
            checks.append(_check("REPLICATE_JOB_FILE", "warn", "REPLICATE_CRON is set but "
                                 f"{job_file} is missing or empty"))
    if get("RESTIC_CACERT") and not os.access(get("RESTIC_CACERT"), os.R_OK):
        checks += _readable("RESTIC_CACERT", get("RESTIC_CACERT"), "the CA certificate")
    return checks


def _uses_rclone(message: str) -> bool:
    return message.startswith("repository rclone:")


def config_file_checks(config: Config, restic_job: JobConfig | None) -> list[Check]:
    """The same keys from a config file: the repository and password of the first restic job
    (`[restic]` when there is none), the backup jobs' tags and paths."""
    r: ResticSettings = restic_job.restic if restic_job else config.restic
    checks = [_repository(r.repository, str(r.repository_file) if r.repository_file else None),
              _password(str(r.password_file) if r.password_file else None, bool(r.password),
                        "RESTIC_PASSWORD_COMMAND" in r.env)]
    backups = [j for j in config.jobs.values() if j.kind == "backup"]
    tags = sorted({t for j in backups for t in j.tags})
    checks.append(_check("RESTIC_TAG", "ok", f"tags {', '.join(tags)}") if tags else
                  _check("RESTIC_TAG", "warn", "no backup job sets tags"))
    if backups:
        checks.append(_check("BACKUP_PATHS", "ok", "backup paths: " + (
            " ".join(p for j in backups for p in j.paths) or "in the backup jobs' args")))
    if r.cacert and not os.access(r.cacert, os.R_OK):
        checks += _readable("RESTIC_CACERT", str(r.cacert), "the CA certificate")
    return checks
