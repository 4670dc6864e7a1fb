"""The environment a tool process gets: a minimal base plus what the job's config names.

Never the runner's own environment: a RESTIC_PASSWORD exported to the runner does not leak into
restic, hooks or rclone unless the configuration says so. The one exception is a job whose
`hook_env` is `["*"]` (environment mode sets it): its hooks get the whole environment, as
restic-backup-helper's hooks did (docs/runs.md#hooks). Secrets travel in the environment or in
files, never in argv (`/proc/<pid>/cmdline` is readable by every local user).
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from runner.configuration.config import JobConfig
from security.masking import mask_repository, register_secret
from security.secretfiles import read_repository_file, read_secret_file, register_repository

BASE_VARS = ("PATH", "HOME", "TMPDIR", "TZ", "LANG", "LC_ALL", "USER", "LOGNAME")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
ALL_VARIABLES = ("*",)  # `hook_env = ["*"]`: the whole environment


class ToolEnvironment(NamedTuple):
    env: dict[str, str]
    secrets: dict[str, str]  # what `hook_env` may hand to hooks
    repository: str | None  # masked, for display


def base_environment() -> dict[str, str]:
    env = {name: os.environ[name] for name in BASE_VARS if name in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def resolve_environment(job: JobConfig) -> ToolEnvironment:
    """Read the job's secrets (registering them for masking) and build the tool's env."""
    return _restic_environment(job) if job.uses_restic else _rclone_environment(job)


def hook_environment(job: JobConfig, tool: ToolEnvironment,
                     runner_vars: Mapping[str, str]) -> dict[str, str]:
    """What a hook of `job` gets: the base environment and the secrets `hook_env` names, or with
    `hook_env = ["*"]` the process's whole environment with the tool's on top (so
    RESTIC_REPOSITORY is the resolved one, and RESTIC_REPOSITORY_FILE, which restic refuses next
    to it, is left out); then our RESTIC_RUNNER_* variables."""
    if job.hook_env == ALL_VARIABLES:
        env = dict(os.environ)
        env.update(tool.env)
        if "RESTIC_REPOSITORY" in tool.env:
            env.pop("RESTIC_REPOSITORY_FILE", None)
    else:
        env = base_environment()
        env.update({k: tool.secrets[k] for k in job.hook_env if k in tool.secrets})
    env.update(runner_vars)
    return env


def _with_job_variables(plain: Mapping[str, str], from_files: Mapping[str, Path],
                        where: str) -> tuple[dict[str, str], dict[str, str]]:
    """The base environment plus a job's `env` and `env_files` (read, registered)."""
    env = base_environment()
    env.update(plain)
    secrets = {name: read_secret_file(path, f"{where}: env_files.{name}")
               for name, path in from_files.items()}
    env.update(secrets)
    return env, secrets


def _restic_environment(job: JobConfig) -> ToolEnvironment:
    r, where = job.restic, f"jobs.{job.name}"
    env, secrets = _with_job_variables(r.env, r.env_files, where)
    if r.repository_file:
        repository = read_repository_file(r.repository_file, f"{where}: repository_file")
    else:
        assert r.repository is not None
        repository = r.repository
        register_repository(repository)
    env["RESTIC_REPOSITORY"] = secrets["RESTIC_REPOSITORY"] = repository
    if r.password_file:
        secrets["RESTIC_PASSWORD"] = read_secret_file(r.password_file, f"{where}: password_file")
        env["RESTIC_PASSWORD_FILE"] = str(r.password_file)  # restic reads the file itself
    elif r.password:
        register_secret(r.password)
        env["RESTIC_PASSWORD"] = secrets["RESTIC_PASSWORD"] = r.password
    if r.cache_dir:
        env["RESTIC_CACHE_DIR"] = str(r.cache_dir)
    env["RESTIC_PROGRESS_FPS"] = f"{r.progress_fps:g}"
    return ToolEnvironment(env, secrets, mask_repository(repository))


def _rclone_environment(job: JobConfig) -> ToolEnvironment:
    c = job.rclone
    for line in job.replicate_lines:  # `https://user:pass@host/…` endpoints: masked everywhere
        register_repository(line.source)
        register_repository(line.destination)
    env, secrets = _with_job_variables(c.env, c.env_files, f"jobs.{job.name}")
    if c.config:
        env["RCLONE_CONFIG"] = str(c.config)
    return ToolEnvironment(env, secrets, None)

