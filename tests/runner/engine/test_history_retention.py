"""The history is kept as `[history]` says, on a real history database with rows made old: a
prune takes a job's runs beyond `keep_runs` or older than `keep_for`, with their events,
deliveries, attempts and log files; never a running run, one with a delivery still pending, nor
the job's newest ended and newest succeeded run. (A run's end pruning, through real runs of the
real CLI: tests/e2e/cli/test_history_retention.py.)"""

from __future__ import annotations

from pathlib import Path

from runner.configuration.config import HistorySettings
from runner.engine.history import History
from tests.support.runs import old_run


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


