"""The history (runner.engine.history.History) on a real SQLite store in the test's own
process: a record in and out, the runs still `running`, the recovery of a run whose supervisor
died (runner.engine.recovery: its job lock is free), and the pruning of a job's run logs.
(Pruning old runs by `[history]`: test_history_retention.py.)"""

from __future__ import annotations

import os

from runner.engine.history import History
from runner.engine.record import RunRecord, Status, finish, new_record
from runner.engine.recovery import mark_interrupted
from tests.support.runs import running_elsewhere


def started(history: History, job: str = "nightly") -> RunRecord:
    record = new_record(job=job, kind="backup", hostname="h", repository="/srv/repo",
                        trigger={"source": "cli"}, version="test")
    history.insert(record)
    return record


def test_a_record_goes_in_is_saved_and_comes_back_out(history: History) -> None:
    record = started(history)
    assert history.get(record["run_id"]) == record
    assert [r["run_id"] for r in history.running("nightly")] == [record["run_id"]]
    record["progress"] = {"percent_done": 0.5}
    history.save(record)
    assert history.get(record["run_id"])["progress"] == {"percent_done": 0.5}
    finish(record, Status.SUCCEEDED, 0)
    record["stats"] = {"files_new": 3}
    history.save(record)
    stored = history.get(record["run_id"])
    assert stored == record and stored["status"] == "succeeded"
    assert history.running() == []
    assert history.last_success("nightly")["run_id"] == record["run_id"]
    assert history.get("no-such-run") is None


def test_a_running_run_whose_lock_is_free_is_marked_interrupted(history: History) -> None:
    """Its supervisor died (the kernel freed the lock): whoever opens the store next marks it,
    says so in its log, and writes `last-<job>.json`."""
    dead = started(history)
    marked = mark_interrupted(history)
    assert [r["run_id"] for r in marked] == [dead["run_id"]]
    stored = history.get(dead["run_id"])
    assert stored["status"] == "interrupted" and stored["finished_at"]
    log = history.log_path("nightly", dead["run_id"]).read_text()
    assert "interrupted: the process supervising this run died" in log
    last = (history.state_dir / "last-nightly.json").read_text()
    assert dead["run_id"] in last
    assert mark_interrupted(history) == []  # once


def test_a_running_run_whose_lock_a_live_process_holds_stays_running(history: History) -> None:
    with running_elsewhere(history, "nightly") as alive:
        dead = started(history, "other")
        assert [r["run_id"] for r in mark_interrupted(history)] == [dead["run_id"]]
        assert history.get(alive)["status"] == "running"
    # its holder gone, the next look marks it too
    assert [r["run_id"] for r in mark_interrupted(history, "nightly")] == [alive]


def test_prune_logs_keeps_the_newest_n_of_the_job(history: History) -> None:
    for age in range(5, 0, -1):  # the oldest first
        path = history.log_path("nightly", f"run-{age}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("log\n")
        os.utime(path, (1_700_000_000 - age * 60,) * 2)
    other = history.log_path("other", "run-x")
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_text("log\n")
    assert history.prune_logs("nightly", 2) == 3
    assert sorted(p.name for p in (history.log_dir / "nightly").iterdir()) == \
        ["run-1.log", "run-2.log"]  # the two newest
    assert other.exists()  # another job's logs are not this prune's
    assert history.prune_logs("nightly", 2) == 0
    assert history.prune_logs("never-ran", 2) == 0
