"""The start-up repository probe (`[restic] init_if_missing`, restic-backup-helper's
`RESTIC_CHECK_REPOSITORY_STATUS`): `restic cat config` on each repository; `restic init` only
when the repository does not exist. A lock failure, a wrong password, a network error or any
other failure is logged with its reason (masked) and never leads to an `init` — the blind init
after any probe failure is a bug restic-backup-helper once shipped (its 1.11.20).
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass

from runner.configuration.config import Config
from runner.engine.binaries import probe_repository
from runner.engine.childenv import resolve_environment
from runner.errors import UserError
from security.masking import redact_text

log = logging.getLogger("restic_runner.repository")


@dataclass(frozen=True, slots=True)
class RepositoryState:
    repository: str  # masked
    jobs: tuple[str, ...]
    status: str  # ok | initialised | missing | wrong-password | locked | error | init-failed
    message: str


def prepare_repositories(config: Config, timeout: float = 120) -> list[RepositoryState]:
    """Probe every repository of a job with `init_if_missing`, initialising missing ones."""
    groups: dict[tuple[str, str | None, str | None], list[str]] = {}
    envs = {}
    for job in config.jobs.values():
        if not (job.uses_restic and job.restic.init_if_missing):
            continue
        try:
            tool = resolve_environment(job)
        except UserError as exc:
            log.error("repository probe of job %s: %s", job.name, redact_text(str(exc)))
            continue
        key = (job.restic.binary, tool.repository, tool.env.get("RESTIC_PASSWORD_FILE"))
        groups.setdefault(key, []).append(job.name)
        envs[key] = tool.env
    states = []
    for key, jobs in groups.items():
        binary, repository = key[0], key[1] or "?"
        probe = probe_repository(binary, envs[key], timeout=timeout)
        status, message = probe.status, probe.message
        if probe.status == "missing":
            status, message = _init(binary, envs[key], timeout)
        state = RepositoryState(repository, tuple(jobs), status, redact_text(message))
        level = logging.INFO if status in ("ok", "initialised") else logging.ERROR
        log.log(level, "repository %s (jobs %s): %s: %s", repository, ", ".join(jobs),
                status, state.message)
        states.append(state)
    return states


def _init(binary: str, env: dict[str, str], timeout: float) -> tuple[str, str]:
    try:
        done = subprocess.run([binary, "init"], env=env, capture_output=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "init-failed", f"restic init could not run: {exc}"
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return "init-failed", f"restic init exited {done.returncode}: {lines[-1] if lines else ''}"
    return "initialised", "no repository at this location: created one with restic init"
