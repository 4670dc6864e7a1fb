"""`restic-runner run JOB` (runner/cli/run.py) in the test's own process, its exit replaced by
an exception the test catches: what it prints and its exit status when the job's lock is held
by a live process (the run is `skipped`: exit 0, or 75 with `--fail-if-busy`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NoReturn

import pytest

import runner.engine.process
from runner.cli import run
from runner.engine.history import History
from runner.engine.process import CancelFlag
from tests.support.runs import running_elsewhere
from tests.support.workspace import Workspace


@pytest.fixture
def run_job(monkeypatch: pytest.MonkeyPatch) -> Callable[..., NoReturn]:
    """`run.run_job`, exiting with SystemExit instead of `os._exit`, and leaving this
    process's SIGINT and SIGTERM handlers alone."""
    def exit_now(code: int) -> NoReturn:
        raise SystemExit(code)

    monkeypatch.setattr(run, "_exit_now", exit_now)
    monkeypatch.setattr(runner.engine.process, "cancel_on_stop_signals", CancelFlag)
    return run.run_job


def exit_status(run_job: Callable[..., NoReturn], *args: object, **kwargs: object) -> int:
    with pytest.raises(SystemExit) as exited:
        run_job(*args, **kwargs)
    return int(exited.value.code or 0)


def test_a_busy_job_is_skipped_with_exit_0_or_75_with_fail_if_busy(
        ws: Workspace, run_job: Callable[..., NoReturn],
        capsys: pytest.CaptureFixture[str]) -> None:
    config = str(ws.write_config(f'[jobs.nightly]\nkind = "backup"\npaths = ["{ws.data}"]\n'))
    history = History(ws.state)
    try:
        with running_elsewhere(history, "nightly") as holder:
            message = f"skipped: previous run of nightly still active (run {holder})"
            assert exit_status(run_job, "nightly", config, as_json=False,
                               fail_if_busy=False) == 0
            assert capsys.readouterr().out.strip() == f"nightly: skipped (exit 0): {message}"
            assert exit_status(run_job, "nightly", config, as_json=True,
                               fail_if_busy=True) == run.EXIT_BUSY == 75
            record = json.loads(capsys.readouterr().out)
            assert (record["status"], record["running_run_id"]) == ("skipped", holder)
        statuses = sorted(r["status"] for r in history.runs(job="nightly"))
        assert statuses == ["running", "skipped", "skipped"]  # the holder's run, and two skips
        assert ws.snapshots() == []
    finally:
        history.close()
