"""The engine (runner.engine.runs.Engine) in the test's own process: real jobs of real restic
(0.14 and 0.18) against real repositories, with a notifier that only listens. A backup that
succeeds, a job whose lock a live process holds (skipped, or `JobBusy`), a tool that fails, a
run cancelled through its `CancelFlag`, and the pruning of a job's old run logs.

The same behaviour through the `restic-runner` command, as a process: tests/e2e/cli/."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.configuration.load import load_config
from runner.engine.history import History
from runner.engine.locks import NamedLock
from runner.engine.process import CancelFlag
from runner.engine.record import RunRecord
from runner.engine.runs import EXIT_CANCELLED, Engine, JobBusy
from runner.errors import UserError
from tests.support.processes import processes_with_cmdline
from tests.support.runs import running_elsewhere
from tests.support.workspace import Workspace

JOBS = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]

[jobs.gone]
kind = "backup"
paths = ["{missing}"]

[jobs.slow]
kind = "backup"
paths = ["{big}"]
args = ["--limit-upload", "100"]
stop_grace = "2s"

[jobs.unlock]
kind = "unlock"
keep_logs = 2
"""


class Listener:
    """A notifier (runner.engine.runs.Notifier) that only notes what it hears."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, ...]] = []

    def started(self, record: RunRecord) -> None:
        self.heard.append(("started", record["run_id"], record["status"]))

    def ended(self, record: RunRecord) -> None:
        self.heard.append(("ended", record["run_id"], record["status"]))

    def close(self) -> None:
        self.heard.append(("close",))


@pytest.fixture
def listener() -> Listener:
    return Listener()


@pytest.fixture
def engine(ws: Workspace, listener: Listener) -> Iterator[Engine]:
    """The engine on the workspace's config, as the CLI builds it (the history and the
    notifier are opened once the run's tool has started)."""
    ws.write_config(JOBS.format(data=ws.data, missing=ws.root / "missing", big=ws.root / "big"))
    config = load_config(str(ws.config_path))
    engine = Engine(config, lambda: History(config.state_dir), lambda: listener)
    yield engine
    engine.close()


def lock_is_free(ws: Workspace, job: str) -> bool:
    lock = NamedLock(ws.state / "locks", job)
    if lock.try_acquire():
        lock.release()
        return True
    return False


def test_a_backup_that_succeeds_is_recorded_and_reported(ws: Workspace, engine: Engine,
                                                         listener: Listener) -> None:
    record = engine.run("nightly")
    run_id = record["run_id"]
    assert (record["status"], record["exit_code"], record["error"]) == ("succeeded", 0, None)
    assert [(s["name"], s["exit_code"]) for s in record["steps"]] == [("backup", 0)]
    assert record["stats"]["files_new"] == 20 and record["trigger"]["source"] == "cli"
    [snapshot] = ws.snapshots()
    assert snapshot["id"].startswith(record["stats"]["snapshot_id"])
    stored = engine.history().get(run_id)
    assert stored is not None
    assert (stored["status"], stored["stats"]) == ("succeeded", record["stats"])
    last = json.loads((ws.state / "last-nightly.json").read_text())
    assert last["run_id"] == run_id and last["last_success"]["run_id"] == run_id
    log = (ws.state / "logs" / "nightly" / f"{run_id}.log").read_text()
    assert "finished: succeeded (exit 0)" in log
    assert listener.heard == [("started", run_id, "running"), ("ended", run_id, "succeeded"),
                              ("close",)]
    assert lock_is_free(ws, "nightly")


def test_a_job_whose_lock_a_live_process_holds_is_skipped(ws: Workspace, engine: Engine,
                                                         listener: Listener) -> None:
    history = engine.history()
    with running_elsewhere(history, "nightly") as holder:
        skipped = engine.run("nightly")
        assert (skipped["status"], skipped["exit_code"]) == ("skipped", 0)
        assert skipped["running_run_id"] == holder
        message = f"skipped: previous run of nightly still active (run {holder})"
        assert skipped["error"] == message
        assert skipped["steps"] == [] and ws.snapshots() == []  # restic never started
        assert history.get(skipped["run_id"])["status"] == "skipped"
        last = json.loads((ws.state / "last-nightly.json").read_text())
        assert last["run_id"] == skipped["run_id"]
        log = (ws.state / "logs" / "nightly" / f"{skipped['run_id']}.log").read_text()
        assert message in log
        assert listener.heard == [("ended", skipped["run_id"], "skipped"), ("close",)]
        # an API caller gets JobBusy (a 409) instead, and nothing is recorded
        with pytest.raises(JobBusy) as busy:
            engine.run("nightly", record_skipped=False)
        assert busy.value.running_run_id == holder
        assert [r["status"] for r in history.runs(job="nightly")] == ["skipped", "running"]
        assert not lock_is_free(ws, "nightly")  # the holder's lock was never taken from it
    # its holder gone, the lock is free: the next run starts, and marks the dead run
    record = engine.run("nightly")
    assert record["status"] == "succeeded"
    assert history.get(holder)["status"] == "interrupted"


def test_a_tool_that_fails_fails_the_run_with_its_exit_code(ws: Workspace, engine: Engine,
                                                            listener: Listener) -> None:
    record = engine.run("gone")  # its only path does not exist: restic exits 1
    assert (record["status"], record["exit_code"]) == ("failed", 1)
    assert [(s["name"], s["exit_code"]) for s in record["steps"]] == [("backup", 1)]
    assert record["error"], record
    assert engine.history().get(record["run_id"])["status"] == "failed"
    assert json.loads((ws.state / "last-gone.json").read_text())["last_success"] is None
    assert listener.heard[1:] == [("ended", record["run_id"], "failed"), ("close",)]
    assert ws.snapshots() == []


def test_a_cancel_flag_stops_the_tool_and_the_run_is_cancelled(ws: Workspace,
                                                              engine: Engine) -> None:
    """Set as soon as restic has started (what SIGTERM to `run`, `POST /runs/<id>/cancel` and
    serve's shutdown do): restic gets SIGINT and the run ends `cancelled`."""
    big = ws.root / "big"
    big.mkdir()
    (big / "random.bin").write_bytes(os.urandom(2 * 1024 * 1024))  # ~20 s at 100 KiB/s
    cancel = CancelFlag()
    record = engine.run("slow", cancel=cancel, on_start=lambda _: cancel.set("told by the test"))
    assert (record["status"], record["exit_code"]) == ("cancelled", EXIT_CANCELLED)
    assert record["error"] == "cancelled (told by the test)"
    assert [s["name"] for s in record["steps"]] == ["backup"]
    assert record["duration_seconds"] < 15
    assert engine.history().get(record["run_id"])["status"] == "cancelled"
    assert not processes_with_cmdline(str(big))
    assert lock_is_free(ws, "slow")


def test_a_jobs_old_run_logs_are_pruned_to_keep_logs(ws: Workspace, engine: Engine) -> None:
    ids = [engine.run("unlock")["run_id"] for _ in range(4)]
    logs = sorted(p.stem for p in Path(ws.state / "logs" / "unlock").glob("*.log"))
    assert logs == sorted(ids[-2:])
    assert len(list(engine.history().runs(job="unlock"))) == 4  # the runs themselves stay


def test_a_failure_while_the_tool_starts_stops_it_gracefully(ws: Workspace,
                                                             engine: Engine) -> None:
    """The run is recorded once restic runs (runner.engine.runs `_begin`): a failure there
    (here: whoever waits for the start raises) stops restic with SIGINT, so it removes its
    repository lock, never with SIGKILL (found by the review of issue 14: a lock was left)."""
    big = ws.root / "big"
    big.mkdir()
    (big / "random.bin").write_bytes(os.urandom(2 * 1024 * 1024))  # ~20 s at 100 KiB/s

    def lost_caller(_: RunRecord) -> None:
        # once restic holds its repository lock: a SIGINT in its first instants can come
        # before it has written the lock it then leaves (restic 0.14, seen in CI)
        time.sleep(2)
        raise RuntimeError("the caller went away")

    record = engine.run("slow", on_start=lost_caller)
    assert record["status"] == "failed"
    assert "RuntimeError: the caller went away" in record["error"]
    assert record["duration_seconds"] < 15
    log = (ws.state / "logs" / "slow" / f"{record['run_id']}.log").read_text()
    assert "signal interrupt received, cleaning up" in log  # restic: SIGINT, not SIGKILL
    locks = subprocess.run([ws.restic, "list", "locks", "--no-lock"], env=ws.restic_env(),
                           capture_output=True, text=True, check=True).stdout.split()
    assert locks == []
    assert lock_is_free(ws, "slow")


def test_runs_that_cannot_start_are_pruned_and_told_once(ws: Workspace, engine: Engine,
                                                         listener: Listener) -> None:
    """A broken secret file fails each attempt before anything runs: each is recorded, but
    their logs are pruned like any run's and the notifiers hear the failure once, not at every
    attempt of a trigger loop (found by the review of issue 14)."""
    ws.password_file.chmod(0o644)
    for _ in range(4):
        with pytest.raises(UserError, match="readable by every local user"):
            engine.run("unlock")  # keep_logs = 2
    logs = list(Path(ws.state / "logs" / "unlock").glob("*.log"))
    assert len(logs) == 2
    records = list(engine.history().runs(job="unlock"))
    assert [r["status"] for r in records] == ["failed"] * 4
    assert [h[0] for h in listener.heard] == ["ended", "close"]
    ws.password_file.chmod(0o600)
    assert engine.run("unlock")["status"] == "succeeded"
