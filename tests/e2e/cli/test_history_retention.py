"""The history is kept as `[history]` says: a run's end prunes its job's runs beyond
`keep_runs` or older than `keep_for`, with their events, deliveries, attempts and log files.
Real runs of real restic through the real CLI (what a prune spares, on a real history
database with rows made old: tests/runner/engine/test_history_retention.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.engine.history import History
from tests.support.runs import old_run
from tests.support.workspace import Workspace

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
