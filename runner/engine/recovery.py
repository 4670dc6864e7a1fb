"""Recovering runs whose supervisor died: a `running` run whose job lock is free has no
living owner. Its end is the one its supervisor left in the lock (a full disk kept it from the
history), else it is `interrupted`. Every process that opens the store through `open_history`
does this first; a process that starts a run does it for its job (`mark_dead_runs_of`); the API
does it for a run it is asked about."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from runner.engine.history import History
from runner.engine.locks import NamedLock
from runner.engine.record import RunRecord, Status, end_late, interrupt
from runner.fsutil import open_private_file

if TYPE_CHECKING:
    from runner.configuration.config import HistorySettings


def open_history(state_dir: Path, retention: HistorySettings | None = None) -> History:
    """Open the store and recover what dead supervisors left behind."""
    history = History(state_dir, retention)
    mark_interrupted(history)
    return history


def mark_interrupted(history: History, job: str | None = None) -> list[RunRecord]:
    """Mark `running` runs (of `job`, or of every job) whose job lock is free (their supervisor
    is dead)."""
    marked = []
    for record in history.running(job):
        lock = NamedLock(history.lock_dir, record["job"])
        if not lock.try_acquire():
            continue  # a living supervisor holds it
        try:
            marked += _mark_dead(history, record["run_id"])
        finally:
            lock.release()
    return marked


def mark_dead_runs_of(history: History, job: str) -> list[RunRecord]:
    """With `job`'s lock held by us: any run of it still `running` has a dead supervisor (a
    process that starts a run finds them, whoever else would have marked them)."""
    return [r for record in history.running(job) for r in _mark_dead(history, record["run_id"])]


def _mark_dead(history: History, run_id: str) -> list[RunRecord]:
    current = history.get(run_id)
    if current is None or current["status"] != Status.RUNNING:
        return []
    note = NamedLock(history.lock_dir, current["job"]).read_holder() or {}
    ended = note.get("ended") if note.get("run_id") == run_id else None
    if isinstance(ended, dict):  # its supervisor saw the end but could not record it
        end_late(current, ended)
        history.save(current)
        history.write_last(current)
        return [current]
    interrupt(current)
    history.save(current)
    _append_log(history, current, "restic-runner: interrupted: the process supervising this "
                                  f"run died before it ended; marked at {current['finished_at']}\n")
    latest = history.last_ended(current["job"])
    if latest and latest["run_id"] == current["run_id"]:
        history.write_last(current)
    return [current]


def _append_log(history: History, record: RunRecord, line: str) -> None:
    try:
        fd = open_private_file(history.log_path(record["job"], record["run_id"]),
                               os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(line)
    except OSError:
        pass
