"""`restic-runner run JOB`, the cron path: read the config and the secret files, take the job's
lock, start the tool; SQLite, the notifiers and their imports load while the tool runs
(runner.engine.runs), and the process exits without the interpreter's teardown."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

from runner.cli.output import echo, guarded
from runner.engine.record import RunRecord, Status

EXIT_BUSY = 75  # EX_TEMPFAIL: `run --fail-if-busy` found the job running


@guarded
def run_job(job: str, config_file: str | None, *, as_json: bool, fail_if_busy: bool) -> NoReturn:
    """Run JOB now, in the foreground; exit with the tool's exit code."""
    from runner.configuration.load import load_config
    from runner.engine.process import cancel_on_stop_signals
    from runner.engine.runs import Engine

    config = load_config(config_file)
    config.job(job)
    cancel = cancel_on_stop_signals()

    def open_history() -> Any:
        from runner.engine.recovery import open_history

        return open_history(config.state_dir, config.history)

    def open_notifier() -> Any:
        from notifiers.courier import run_notifier

        return run_notifier(config, adopt=True)  # no service may be around: deliver it all

    engine = Engine(config, open_history, open_notifier)
    record = engine.run(job, cancel=cancel)
    history = engine.history()
    record = history.get(record["run_id"]) or record  # with the deliveries' outcomes
    if as_json:
        echo(json.dumps(record, indent=2))
    else:
        echo(summarize(record), err=record["status"] not in (Status.SUCCEEDED, Status.SKIPPED))
    code = (EXIT_BUSY if fail_if_busy else 0) if record["status"] == Status.SKIPPED \
        else record["exit_code"]
    engine.close()  # the last close checkpoints the WAL into history.db
    _exit_now(code if isinstance(code, int) else 1)


def _exit_now(code: int) -> NoReturn:
    """Exit without the interpreter's teardown of every loaded module (20-40 ms once the
    notifiers are loaded): the run is recorded, the output flushed, the database closed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def summarize(record: RunRecord) -> str:
    """One line a cron mail or a terminal can show."""
    from runner.cli.views import run_details

    details = run_details(record)
    head = f"{record['job']}: {record['status']} (exit {record['exit_code']})"
    if record["status"] == Status.SKIPPED:
        return f"{head}: {record['error']}"
    parts = [f"{head} in {record['duration_seconds']:.1f}s"]
    if details:
        parts.append(details)
    if record.get("error") and record["status"] != Status.SUCCEEDED:
        parts.append(record["error"])
    parts.append(f"run {record['run_id']}")
    return " · ".join(parts)
