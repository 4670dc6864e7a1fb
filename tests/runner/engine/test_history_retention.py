"""The history is kept as `[history]` says: a run's end prunes its job's runs beyond
`keep_runs` or older than `keep_for`, with their events, deliveries, attempts and log files;
never a running run, one with a delivery still pending, nor the job's newest ended and newest
succeeded run. Real runs of real restic, and rows made old on a real history database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from notifiers.base import Event, Outcome
from notifiers.outbox import Outbox, new_event
from runner.configuration.config import HistorySettings
from runner.configuration.notify import RetryPolicy
from runner.engine.history import History
from runner.engine.record import new_record, rfc3339
from tests.conftest import Workspace

JOBS = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]

[jobs.other]
kind = "backup"
paths = ["{data}"]
"""


def counts(state: Path) -> dict[str, Any]:
    history = History(state)
    try:
        db = history.db
        return {
            "runs": dict(db.execute("SELECT job, COUNT(*) FROM runs GROUP BY job").fetchall()),
            "events": db.execute("SELECT COUNT(*) FROM events").fetchone()[0],
            "deliveries": db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0],
            "attempts": db.execute("SELECT COUNT(*) FROM delivery_attempts").fetchone()[0],
            "run_ids": {r[0] for r in db.execute("SELECT run_id FROM runs WHERE job = 'nightly'")},
            "delivered_runs": {r[0] for r in db.execute(
                "SELECT d.run_id FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = "
                "d.id JOIN events e USING (event_id) WHERE d.job = 'nightly'")},
            "event_runs": {r[0] for r in db.execute(
                "SELECT run_id FROM events WHERE job = 'nightly'")},
        }
    finally:
        history.close()


def test_a_runs_end_keeps_the_newest_keep_runs_of_its_job_with_their_deliveries(
        ws: Workspace, tmp_path: Path) -> None:
    ws.write_config(JOBS.format(data=ws.data),
                    top=f'[history]\nkeep_runs = 2\n\n[notify]\nmetrics_dir = "{tmp_path}/prom"')
    ids = []
    for _ in range(4):
        code, record = ws.run_json("nightly")
        assert code == 0, record
        ids.append(record["run_id"])
    ws.run_json("other")
    found = counts(ws.state)
    assert found["runs"] == {"nightly": 2, "other": 1}
    assert found["run_ids"] == set(ids[-2:])
    # the textfile target delivered each run's events: only the kept runs' remain
    assert found["delivered_runs"] == found["event_runs"] == set(ids[-2:])
    assert found["attempts"] >= found["deliveries"] >= 3
    logs = {p.stem for p in (ws.state / "logs" / "nightly").glob("*.log")}
    assert logs == set(ids[-2:])
    status = json.loads(ws.cli("status", "--json", check=True).stdout)
    assert "nightly" in json.dumps(status)


class AnyTarget:
    name = "textfile"

    def wants(self, event: str, job: str) -> bool:
        return True

    def fingerprint(self) -> str:
        return "fixed"

    def deliver(self, event: Event, ctx: object) -> None:
        raise AssertionError("never delivered here")


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    store = History(tmp_path / "state")
    yield store
    store.close()


def old_run(history: History, job: str, days: float, status: str, *,
            delivered: bool | None = True, dry_run: bool = False) -> str:
    """A run that started `days` ago, with an end event delivered (True), still pending
    (False) or none (None), and a log file."""
    record = new_record(job=job, kind="backup", hostname="h", repository=None,
                        trigger={"source": "cli"}, version="test")
    started = datetime.now(UTC) - timedelta(days=days)
    record.update(status=status, started_at=rfc3339(started),
                  finished_at=None if status == "running" else rfc3339(started),
                  exit_code=None if status == "running" else 0)
    if dry_run:
        record["dry_run"] = True
    history.insert(record)
    history.log_path(job, record["run_id"]).write_text("log\n")
    if delivered is not None:
        outbox = Outbox(history.db)
        outbox.enqueue(new_event("run.succeeded", record), [AnyTarget()])
        if delivered:
            (delivery,) = outbox.claim(run_ids=(record["run_id"],))
            outbox.settle(delivery, Outcome.ok("written"), 0.01, policy=RetryPolicy(),
                          target=None)
    return str(record["run_id"])


def test_pruning_by_age_spares_running_pending_and_the_newest_ended_and_succeeded(
        history: History) -> None:
    newest_success = old_run(history, "nightly", 200, "succeeded")  # the only success: kept
    gone = [old_run(history, "nightly", 150, "failed"),
            old_run(history, "nightly", 120, "failed", delivered=None)]
    pending = old_run(history, "nightly", 110, "failed", delivered=False)
    running = old_run(history, "nightly", 100, "running", delivered=None)
    newest_ended = old_run(history, "nightly", 95, "failed")
    recent = old_run(history, "nightly", 1, "skipped")  # newer than keep_for: kept
    other_job = old_run(history, "other", 300, "failed")  # another job's: not this prune's

    pruned = history.prune_runs("nightly", HistorySettings(keep_runs=1000, keep_for=90 * 86400))

    assert sorted(pruned) == sorted(gone)
    left = {r[0] for r in history.db.execute("SELECT run_id FROM runs")}
    assert left == {newest_success, pending, running, newest_ended, recent, other_job}
    assert history.db.execute("SELECT COUNT(*) FROM events WHERE run_id IN (?, ?)",
                              gone).fetchone()[0] == 0
    assert history.db.execute("SELECT COUNT(*) FROM deliveries WHERE run_id IN (?, ?)",
                              gone).fetchone()[0] == 0
    # the kept delivered runs: newest_success, newest_ended, recent, other_job
    assert history.db.execute("SELECT COUNT(*) FROM delivery_attempts").fetchone()[0] == 4
    logs = {p.stem for p in (history.log_dir / "nightly").glob("*.log")}
    assert logs == left - {other_job}
    # the pending delivery is still there to be retried
    assert history.db.execute("SELECT state FROM deliveries WHERE run_id = ?",
                              (pending,)).fetchone()[0] == "pending"


def test_events_of_no_run_go_once_old_unless_a_delivery_is_pending(tmp_path: Path) -> None:
    """`notify-test` events (and those of runs pruned earlier) have no run to go with: they go
    on their own once older than `keep_for`, unless one of their deliveries is still pending."""
    history = History(tmp_path / "state", HistorySettings(keep_runs=1000, keep_for=30 * 86400))
    try:
        gone, pending, young = (old_run(history, "nightly", days, "succeeded", delivered=done)
                                for days, done in ((40, True), (40, False), (1, True)))
        history.db.execute("DELETE FROM runs")  # their runs are gone
        history.db.execute("UPDATE events SET created = created - 40 * 86400 WHERE run_id IN "
                           "(?, ?)", (gone, pending))
        history.prune_orphan_events()
        left = {r[0] for r in history.db.execute("SELECT run_id FROM events")}
        assert left == {pending, young}
        assert history.db.execute("SELECT COUNT(*) FROM deliveries WHERE run_id = ?",
                                  (gone,)).fetchone()[0] == 0
    finally:
        history.close()


def test_a_newer_dry_run_does_not_cost_the_last_real_success(history: History) -> None:
    """A dry run never counts as the job's last success, so it cannot push the real one out."""
    real = old_run(history, "nightly", 200, "succeeded")
    old_dry = old_run(history, "nightly", 150, "succeeded", dry_run=True)
    newest_dry = old_run(history, "nightly", 100, "succeeded", dry_run=True)
    pruned = history.prune_runs("nightly", HistorySettings(keep_runs=1, keep_for=30 * 86400))
    assert pruned == [old_dry]
    assert history.last_success("nightly")["run_id"] == real
    left = {r[0] for r in history.db.execute("SELECT run_id FROM runs")}
    assert left == {real, newest_dry}


def test_pruning_is_bounded_per_call(history: History) -> None:
    for _ in range(7):
        old_run(history, "nightly", 200, "failed", delivered=None)
    settings = HistorySettings(keep_runs=1, keep_for=90 * 86400)
    assert len(history.prune_runs("nightly", settings, limit=4)) == 4
    assert len(history.prune_runs("nightly", settings, limit=4)) == 2  # the newest stays
    assert history.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


def test_a_real_runs_end_prunes_what_is_older_than_keep_for(ws: Workspace) -> None:
    ws.write_config(JOBS.format(data=ws.data), top='[history]\nkeep_for = "30d"')
    history = History(ws.state)
    old = old_run(history, "nightly", 45, "succeeded")
    history.close()
    code, record = ws.run_json("nightly")
    assert code == 0, record
    assert counts(ws.state)["run_ids"] == {record["run_id"]}
    assert not (ws.state / "logs" / "nightly" / f"{old}.log").exists()


def test_without_a_history_section_nothing_recent_is_pruned(ws: Workspace) -> None:
    """The defaults (1000 runs, 90 days) keep a young history whole."""
    ws.write_config(JOBS.format(data=ws.data))
    for _ in range(3):
        assert ws.run_json("nightly")[0] == 0
    assert counts(ws.state)["runs"] == {"nightly": 3}


@pytest.mark.parametrize(("line", "message"), [
    ("keep_runs = 0", "history.keep_runs: "),
    ('keep_runs = "many"', "history.keep_runs: "),
    ('keep_for = "soon"', "history.keep_for: "),
    ("keep_for = 0", "history.keep_for: "),
    ("keep_days = 90", "history.keep_days: unknown key (expected one of: keep_for, keep_runs)"),
])
def test_a_bad_history_setting_names_its_key(ws: Workspace, line: str, message: str) -> None:
    ws.write_config(JOBS.format(data=ws.data), top=f"[history]\n{line}")
    done = ws.cli("config", "check")
    assert done.returncode == 2
    assert message in done.stderr, done.stderr


def test_the_store_size_is_in_metrics_and_doctor(ws: Workspace) -> None:
    from notifiers.metrics import exposition, registry_for
    from runner.configuration.load import load_config

    ws.write_config(JOBS.format(data=ws.data))
    assert ws.run_json("nightly")[0] == 0
    config = load_config(str(ws.config_path))
    history = History(ws.state)
    try:
        text = exposition(config, history).decode()
        size = history.store_bytes()
        from prometheus_client import generate_latest

        per_job = generate_latest(registry_for(config, history, ("nightly",))).decode()
    finally:
        history.close()
    assert size > 4096
    line = next(x for x in text.splitlines()
                if x.startswith("restic_runner_history_bytes{"))
    assert line.startswith('restic_runner_history_bytes{hostname="test-host"} ')
    assert float(line.split()[-1]) > 4096
    assert "restic_runner_history_bytes" not in per_job  # not pushed with each job's families
    report = ws.cli("doctor").stdout
    assert "[INFO] state: history: database " in report and " MiB, run logs " in report
