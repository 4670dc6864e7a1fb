"""Job kinds: one small builder per kind turns a job into the steps (argv + output parser) to run.

Only validated values reach argv: the job's own configuration and, from a trigger request, the
params the job allows (`tags`, `dry_run`), already checked by the caller. A job's own
`dry_run = true` wins over any param.
"""

from collections.abc import Callable, Mapping
from typing import Any

from runner.configuration.config import RUN_DRY_RUN_KINDS, JobConfig
from runner.engine.jobs.output import (
    BackupOutput,
    CheckOutput,
    ForgetOutput,
    OutputParser,
    ResticOutput,
    RestoreTestOutput,
)
from runner.engine.jobs.steps import StepSpec

__all__ = ["BUILDERS", "StepSpec", "is_dry_run", "plan", "unlock_step"]


def _restic(job: JobConfig, command: str, *args: str) -> tuple[str, ...]:
    argv = [job.restic.binary, command, "--json"]
    if job.restic.cacert:
        argv += ["--cacert", str(job.restic.cacert)]
    if job.restic.retry_lock and command != "unlock":
        from runner.engine.binaries import supports_retry_lock

        if supports_retry_lock(job.restic.binary):
            argv.append(f"--retry-lock={job.restic.retry_lock:g}s")
    return (*argv, *args)


def _tags(job: JobConfig, params: Mapping[str, Any]) -> list[str]:
    tags = list(job.tags) + [t for t in params.get("tags", ()) if t not in job.tags]
    return [f"--tag={t}" for t in tags]


def is_dry_run(job: JobConfig, params: Mapping[str, Any] | None = None) -> bool:
    """Whether a run of `job` with `params` passes --dry-run: pinned by the job's own
    `dry_run = true` (which no param can turn off), or asked for by an allowed param."""
    if job.kind not in RUN_DRY_RUN_KINDS:
        return False
    return job.dry_run or bool((params or {}).get("dry_run"))


def _dry_run(job: JobConfig, params: Mapping[str, Any]) -> list[str]:
    return ["--dry-run"] if is_dry_run(job, params) else []


def _host(job: JobConfig) -> list[str]:
    """`--host` from the config's hostname, unless the job's own args set one."""
    given = any(a in ("--host", "-H") or a.startswith("--host=") for a in job.args)
    return [f"--host={job.host}"] if job.host and not given else []


def _backup(job: JobConfig, params: Mapping[str, Any]) -> list[StepSpec]:
    paths = ("--", *job.paths) if job.paths else ()
    argv = _restic(job, "backup", *_host(job), *_tags(job, params), *_dry_run(job, params),
                   *job.args, *paths)
    steps = [StepSpec("backup", argv, BackupOutput, warning_codes=frozenset({3}))]
    if job.forget_args:
        steps.append(StepSpec("forget", _restic(job, "forget", *_dry_run(job, params),
                                                *job.forget_args),
                              ForgetOutput, needs_success=True, decides_outcome=False))
    return steps


def _forget(job: JobConfig, params: Mapping[str, Any]) -> list[StepSpec]:
    return [StepSpec("forget", _restic(job, "forget", *_dry_run(job, params), *job.args),
                     ForgetOutput)]


def _prune(job: JobConfig, params: Mapping[str, Any]) -> list[StepSpec]:
    return [StepSpec("prune", _restic(job, "prune", *_dry_run(job, params), *job.args),
                     ResticOutput)]


def _check(job: JobConfig, params: Mapping[str, Any]) -> list[StepSpec]:
    return [StepSpec("check", _restic(job, "check", *job.args), CheckOutput)]


def _unlock(job: JobConfig, params: Mapping[str, Any]) -> list[StepSpec]:
    return [StepSpec("unlock", _restic(job, "unlock", *job.args), ResticOutput)]


def _replicate(job: JobConfig, params: Mapping[str, Any]) -> list[StepSpec]:
    """One rclone call with the job's `args`; or, for a job made of job-file lines, each line's
    own call (the engine runs those one by one, with bisync recovery:
    runner.engine.jobs.replicatelines)."""
    from runner.engine.jobs.rclonecalls import main_step, rclone_step  # replicate jobs only

    dry_run = is_dry_run(job, params)
    if job.replicate_lines:
        return [main_step(job, line, dry_run) for line in job.replicate_lines if not line.problem]
    return [rclone_step(job, "replicate", job.args, dry_run)]


def _restore_test(job: JobConfig, params: Mapping[str, Any]) -> list[StepSpec]:
    """Restore into a scratch directory, check what arrived, clean up (see
    runner.engine.jobs.restoretest)."""
    import sys

    directory = str(job.target_dir)
    helper = (sys.executable, "-m", "runner.engine.jobs.restoretest")
    includes = [f"--include={path}" for path in job.include]
    if is_dry_run(job, params):  # restic says what it would restore: nothing to verify or clean
        return [StepSpec("restore", _restic(job, "restore", job.snapshot, "--target", directory,
                                            *includes, *job.args, "--dry-run"), ResticOutput)]
    verify = [*helper, "verify", directory, f"--min-files={job.min_files}",
              *(f"--canary={path}={digest}" for path, digest in job.canaries.items())]
    return [
        StepSpec("prepare", (*helper, "prepare", directory), OutputParser),
        StepSpec("restore", _restic(job, "restore", job.snapshot, "--target", directory,
                                    *includes, *job.args), ResticOutput),
        StepSpec("verify", tuple(verify), RestoreTestOutput, needs_success=True),
        StepSpec("cleanup", (*helper, "cleanup", directory, *(["--keep"] if job.keep else [])),
                 OutputParser, decides_outcome=False, always=True),
    ]


def _restore_steps() -> Callable[..., list[StepSpec]]:
    """The restore kind's builder, imported when a restore runs (not on a backup's path)."""
    from runner.engine.jobs.restore import restore_steps

    return restore_steps


BUILDERS: dict[str, Callable[[JobConfig, Mapping[str, Any]], list[StepSpec]]] = {
    "backup": _backup,
    "forget": _forget,
    "prune": _prune,
    "check": _check,
    "unlock": _unlock,
    "replicate": _replicate,
    "restore-test": _restore_test,
    "restore": lambda job, params: _restore_steps()(job, is_dry_run(job, params),
                                                 _restic(job, "restore")),
}


def plan(job: JobConfig, params: Mapping[str, Any] | None = None) -> list[StepSpec]:
    """The steps of one run of `job`."""
    return BUILDERS[job.kind](job, params or {})


def unlock_step(job: JobConfig) -> StepSpec:
    """`restic unlock` (stale locks only, never --remove-all), for auto_unlock."""
    return StepSpec("unlock", _restic(job, "unlock"), ResticOutput, decides_outcome=False)
