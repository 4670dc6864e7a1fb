"""One-off jobs the command line builds for a single run (`restore`, `forget-preview`, an
`unlock` with flags): made from a configured restic job's repository settings and run through
the engine like any job (locked, recorded, masked, notified, `last-<job>.json`)."""

from __future__ import annotations

import json
import os
import sys
from types import MappingProxyType
from typing import Any, NoReturn

from runner.cli.output import echo
from runner.configuration.config import Config, JobConfig
from runner.engine.record import RunRecord, Status
from runner.errors import UserError


def repository_job(config: Config, name: str | None = None) -> JobConfig:
    """The restic job whose repository a one-off job uses: the named one, else the first."""
    from runner.cli.snapshots import restic_job

    if name is None and not any(j.uses_restic for j in config.jobs.values()) and config.disabled:
        reasons = "; ".join(f"{n}: {why}" for n, why in config.disabled.items())
        raise UserError(f"no restic job is configured (disabled: {reasons})")
    return restic_job(config, name)


def one_off(config: Config, base: JobConfig, name: str, kind: str, **fields: Any) -> JobConfig:
    """A job named `name` of `kind` on `base`'s repository; no schedule or params. Its hooks:
    in environment mode (whose jobs give hooks the whole environment), restic-backup-helper's
    `/hooks/pre-<name>.sh` and `post-<name>.sh`, as its /bin/restore, /bin/unlock … ran them."""
    hooks: dict[str, Any] = {}
    if base.hook_env == ("*",):
        hooks = {"hook_env": ("*",), "pre_hook_on_error": "continue",
                 "hook_timeout": base.hook_timeout, **environment_hooks(name)}
    return JobConfig(name=name, kind=kind, restic=base.restic, rclone=base.rclone,
                     host=base.host, timeout=None, keep_logs=base.keep_logs,
                     **hooks, **fields)


def environment_hooks(name: str) -> dict[str, tuple[str, ...]]:
    """`pre_hook` and `post_hook` from the hooks directory, where executable."""
    from runner.configuration.envjobs import HOOKS_DIR

    directory = os.environ.get("RESTIC_RUNNER_HOOKS_DIR") or HOOKS_DIR
    found = {}
    for phase in ("pre", "post"):
        path = os.path.join(directory, f"{phase}-{name}.sh")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            found[f"{phase}_hook"] = (path,)
    return found


def with_job(config: Config, job: JobConfig) -> Config:
    """`config` with `job` added (replacing a configured job of the same name)."""
    return config._replace(jobs=MappingProxyType({**config.jobs, job.name: job}))


def run_once(config: Config, job_name: str, *, params: dict[str, Any] | None = None,
             as_json: bool = False, quiet: bool = False) -> RunRecord:
    """Run `job_name` of `config` in the foreground through the engine; its final record (a
    `skipped` one when the job is running: restic-backup-helper's locked_run skips too)."""
    from runner.cli.run import summarize
    from runner.engine.process import cancel_on_stop_signals
    from runner.engine.runs import Engine

    def open_history() -> Any:
        from runner.engine.recovery import open_history

        return open_history(config.state_dir, config.history)

    def open_notifier() -> Any:
        from notifiers.courier import run_notifier

        return run_notifier(config, adopt=True)

    engine = Engine(config, open_history, open_notifier)
    try:
        record = engine.run(job_name, params=params, cancel=cancel_on_stop_signals())
        record = engine.history().get(record["run_id"]) or record
    finally:
        engine.close()
    if as_json:
        echo(json.dumps(record, indent=2))
    elif not quiet:
        echo(summarize(record), err=record["status"] not in (Status.SUCCEEDED, Status.SKIPPED))
    return record


def exit_code(record: RunRecord) -> int:
    """A skipped run exits 0 (as locked_run's skip); otherwise the tool's code."""
    if record["status"] == Status.SKIPPED:
        return 0
    code = record["exit_code"]
    return code if isinstance(code, int) else 1


def run_log(config: Config, record: RunRecord) -> str:
    """The run's masked log, as the engine wrote it."""
    from runner.engine.history import History

    history = History(config.state_dir)
    try:
        path = history.log_path(record["job"], record["run_id"])
    finally:
        history.close()
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def exit_now(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
