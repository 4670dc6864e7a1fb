"""Run history: SQLite (WAL) in `state_dir`, a masked log file per run, `last-<job>.json`.
It stores runs; it never decides a run's state (runner.engine.record, runner.engine.recovery)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.engine.record import RunRecord, Status, rfc3339
from runner.engine.statedir import StateDir, StateError
from runner.fsutil import (
    NotRegularFile,
    atomic_write,
)
from security.database import Schema, connect

if TYPE_CHECKING:
    from runner.configuration.config import HistorySettings

SCHEMA_VERSION = 6  # 3: the status indexes; 4: deliveries.lease_holder; 5: idempotency;
# 6: idempotency.answered_at
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    job         TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    record      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, started_at DESC);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at DESC);
CREATE INDEX IF NOT EXISTS runs_running ON runs (status) WHERE status = 'running';
-- /runs?status= and ?job=&status=: a rare status must not scan a long history (bench_load.py)
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, started_at DESC);
CREATE INDEX IF NOT EXISTS runs_by_job_status ON runs (job, status, started_at DESC);
-- the notifiers' outbox (notifiers/outbox.py): one row per event, one per delivery to a target
CREATE TABLE IF NOT EXISTS events (
    event_id    TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL,
    job         TEXT NOT NULL,
    type        TEXT NOT NULL,
    event       TEXT NOT NULL,
    created     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id);
CREATE TABLE IF NOT EXISTS deliveries (
    id          INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL REFERENCES events (event_id),
    run_id      TEXT NOT NULL,
    job         TEXT NOT NULL,
    target      TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created     REAL NOT NULL,
    next_at     REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    lease_holder TEXT,
    last_at     TEXT,
    detail      TEXT,
    error       TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_by_run ON deliveries (run_id, target);
CREATE TABLE IF NOT EXISTS delivery_attempts (
    delivery_id INTEGER NOT NULL,
    at          TEXT NOT NULL,
    delivered   INTEGER NOT NULL,
    detail      TEXT,
    error       TEXT,
    seconds     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_delivery ON delivery_attempts (delivery_id);
CREATE TABLE IF NOT EXISTS targets (
    target      TEXT PRIMARY KEY,
    disabled_fingerprint TEXT,
    disabled_at TEXT,
    disabled_reason TEXT,
    memory      TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS delivery_counters (
    job         TEXT PRIMARY KEY,
    failures    INTEGER NOT NULL DEFAULT 0,
    given_up    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS idempotency (
    client      TEXT NOT NULL,
    key         TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    run_id      TEXT,
    created     REAL NOT NULL,
    answered_at REAL,  -- the run's final record was answered to the client: the key is spent
    PRIMARY KEY (client, key)
);
"""


def _migrations(db: sqlite3.Connection) -> str:
    """What an older store needs beyond `_SCHEMA` (whose tables exist only if missing)."""
    script = ""
    columns = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
    if columns and "lease_holder" not in columns:  # before schema 4
        script += "ALTER TABLE deliveries ADD COLUMN lease_holder TEXT;"
    columns = {row[1] for row in db.execute("PRAGMA table_info(idempotency)")}
    if columns and "answered_at" not in columns:  # before schema 6
        script += "ALTER TABLE idempotency ADD COLUMN answered_at REAL;"
    return script


SCHEMA = Schema(SCHEMA_VERSION, _SCHEMA, _migrations)


def connect_db(path: Path) -> sqlite3.Connection:
    """`history.db`, with its schema."""
    return connect(path, SCHEMA)


PRUNE_BATCH = 500  # runs (and orphan events) pruned at most per run end
# the runs of job ?1 that `last-<job>.json`, the metrics and `max_age` read, never pruned: the
# newest ended; the newest ended but not skipped and the newest succeeded, real and dry apart
_NEWEST_KEPT = " UNION ".join(
    f"SELECT * FROM (SELECT run_id FROM runs WHERE job = ?1 AND {where} "
    "ORDER BY started_at DESC LIMIT 1)"
    for where in ["status != 'running'"] + [
        f"{status} AND coalesce(json_extract(record, '$.dry_run'), 0) = {dry}"
        for status in ("status NOT IN ('running', 'skipped')", "status = 'succeeded'")
        for dry in (0, 1)])


def _state_problem(state_dir: Path, exc: sqlite3.DatabaseError) -> str:
    """What is wrong, in words: only a damaged file is worth moving aside."""
    import errno
    import os
    import tempfile

    database = state_dir / "history.db"
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return (f"state_dir: the history database {database} cannot be used ({text}): it is "
                "damaged; move it aside to start a new history (docs/troubleshooting.md)")
    full = "full" in text
    try:
        with tempfile.TemporaryFile(dir=state_dir) as probe:
            probe.write(b"x" * 65536)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        full = full or err.errno == errno.ENOSPC
        if not full:
            return f"state_dir: {state_dir} is not writable ({err.strerror})"
    if full:
        return f"state_dir: no space left on {state_dir} ({text})"
    return f"state_dir: the history database {database} cannot be used ({text})"


class History:
    def __init__(self, state_dir: Path, retention: HistorySettings | None = None) -> None:
        """`retention`: when given, each run's end also prunes its job's old runs
        (`prune_retained`)."""
        self.state_dir = state_dir
        self.retention = retention
        self.dirs = StateDir(state_dir)
        self.lock_dir, self.log_dir = self.dirs.lock_dir, self.dirs.log_dir
        try:
            self.db = connect_db(state_dir / "history.db")
        except sqlite3.DatabaseError as exc:
            raise StateError(_state_problem(state_dir, exc)) from None
        except NotRegularFile as exc:
            raise StateError(f"state_dir: {exc.filename} is a symlink or not a regular file or "
                             "directory: refused (move it aside)") from None
        except OSError as exc:
            raise StateError(f"state_dir: {state_dir} is not usable: {exc.strerror}") from None

    def check_writable(self) -> None:
        """SQLite opens a database it cannot write read-only without a word (and the
        connection stays read-only after the file system recovers): find out now, not in the
        middle of a run. A write that matches nothing still needs a writable database."""
        try:
            self.db.execute("UPDATE runs SET status = status WHERE 0")
        except sqlite3.DatabaseError as exc:
            raise StateError(_state_problem(self.state_dir, exc)) from None

    def close(self) -> None:
        self.db.close()

    # --- writing -------------------------------------------------------------------------------

    def insert(self, record: RunRecord) -> None:
        self.db.execute(
            "INSERT INTO runs (run_id, job, status, started_at, record) VALUES (?, ?, ?, ?, ?)",
            (record["run_id"], record["job"], record["status"], record["started_at"],
             json.dumps(record)),
        )

    def save(self, record: RunRecord) -> None:
        self.db.execute(
            "UPDATE runs SET status = ?, record = ? WHERE run_id = ?",
            (record["status"], json.dumps(record), record["run_id"]),
        )

    def write_last(self, record: RunRecord) -> Path:
        """`last-<job>.json`, written atomically after every run, skipped and failed included."""
        path = self.dirs.last_path(record["job"])
        record = self.with_notifications(dict(record))
        success = self.last_success(record["job"])  # never a dry run, whatever this record is
        record["last_success"] = None if success is None else {
            "run_id": success["run_id"], "finished_at": success["finished_at"]}
        atomic_write(path, json.dumps(record, indent=2).encode() + b"\n")
        return path

    def log_path(self, job: str, run_id: str) -> Path:
        return self.dirs.log_path(job, run_id)

    def prune_logs(self, job: str, keep: int) -> int:
        """Delete the oldest log files of a job beyond `keep`; returns how many went. Called
        while a run's tool runs (its own log is the newest)."""
        directory = self.log_dir / job
        try:
            logs = sorted(directory.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            return 0
        for old in logs[keep:]:
            old.unlink(missing_ok=True)
        return max(0, len(logs) - keep)

    def prune_retained(self, job: str) -> None:
        """At a run's end, with a `retention`: its job's runs beyond it go (`prune_runs`).
        Never fails a run; the next run's end tries again."""
        if self.retention is not None:
            with contextlib.suppress(sqlite3.Error, OSError):
                self.prune_runs(job, self.retention)

    def prune_runs(self, job: str, retention: HistorySettings, *, now: float | None = None,
                   limit: int = PRUNE_BATCH) -> list[str]:
        """Delete `job`'s runs older than `retention.keep_for` or beyond its newest
        `retention.keep_runs`, with their events, deliveries, attempts and log files; returns
        their ids. Never a running run, one with a delivery still pending, nor the job's newest
        ended and newest succeeded run (`last-<job>.json`, the metrics and `max_age` read them).
        At most `limit` per call, so a run's end stays cheap on a long history."""
        cutoff = rfc3339(datetime.fromtimestamp((now or time.time()) - retention.keep_for, UTC))
        rows = self.db.execute(
            "SELECT run_id FROM runs r WHERE job = ?1 AND status != 'running' "
            "AND (started_at < ?2 OR run_id NOT IN (SELECT run_id FROM runs WHERE job = ?1 "
            "ORDER BY started_at DESC LIMIT ?3)) "
            f"AND run_id NOT IN ({_NEWEST_KEPT}) "
            "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.run_id = r.run_id "
            "AND d.state = 'pending') ORDER BY started_at LIMIT ?4",
            (job, cutoff, retention.keep_runs, limit)).fetchall()
        run_ids = [run_id for (run_id,) in rows]
        if run_ids:
            self._delete_runs(run_ids)
            for run_id in run_ids:
                (self.log_dir / job / f"{run_id}.log").unlink(missing_ok=True)
        return run_ids

    def _delete_runs(self, run_ids: list[str]) -> None:
        marks = ",".join("?" * len(run_ids))
        self._in_transaction([
            ("DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries "
             f"WHERE run_id IN ({marks}))", run_ids),
            (f"DELETE FROM deliveries WHERE run_id IN ({marks})", run_ids),
            (f"DELETE FROM events WHERE run_id IN ({marks})", run_ids),
            (f"DELETE FROM runs WHERE run_id IN ({marks}) AND status != 'running'", run_ids)])

    def _in_transaction(self, statements: list[tuple[str, list[str]]]) -> None:
        """Run the statements in one write transaction: all of them, or none."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                self.db.execute(sql, args)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def prune_orphan_events(self, *, now: float | None = None, limit: int = PRUNE_BATCH) -> None:
        """Events older than `keep_for` whose run is gone (or never was one: `notify-test`),
        with nothing left to deliver. Called while a run's tool runs (they are no run's)."""
        if self.retention is None:
            return
        cutoff_seconds = (now or time.time()) - self.retention.keep_for
        rows = self.db.execute(
            "SELECT event_id FROM events e WHERE created < ? AND NOT EXISTS (SELECT 1 FROM "
            "runs r WHERE r.run_id = e.run_id) AND NOT EXISTS (SELECT 1 FROM deliveries d "
            "WHERE d.event_id = e.event_id AND d.state = 'pending') LIMIT ?",
            (cutoff_seconds, limit)).fetchall()
        event_ids = [event_id for (event_id,) in rows]
        if not event_ids:
            return
        marks = ",".join("?" * len(event_ids))
        self._in_transaction([
            ("DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries "
             f"WHERE event_id IN ({marks}))", event_ids),
            (f"DELETE FROM deliveries WHERE event_id IN ({marks})", event_ids),
            (f"DELETE FROM events WHERE event_id IN ({marks})", event_ids)])

    def store_bytes(self) -> int:
        """The size of the history database (pages × page size, as SQLite sees it): the same in
        every process at a given moment, unlike the files, which move with checkpoints."""
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        return int(pages * self.db.execute("PRAGMA page_size").fetchone()[0])

    # --- reading -------------------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord | None:
        row = self.db.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return self.with_notifications(json.loads(row[0])) if row else None

    def with_notifications(self, record: RunRecord) -> RunRecord:
        """The record with `notifications` as the outbox knows them now."""
        return self._with_notifications([record])[0]

    def _with_notifications(self, records: list[RunRecord]) -> list[RunRecord]:
        found = self._notifications_of([r["run_id"] for r in records])
        for record in records:
            record["notifications"] = found.get(record["run_id"], [])
        return records

    def _notifications_of(self, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """`notifications` of many runs in two queries (a page of 200 runs took 400)."""
        if not run_ids:
            return {}
        marks = ",".join("?" * len(run_ids))
        rows = self.db.execute(
            "SELECT d.id, d.run_id, d.target, e.type, d.state, d.attempts, d.last_at, d.detail, "
            "d.error, d.next_at FROM deliveries d JOIN events e USING (event_id) WHERE d.run_id "
            f"IN ({marks}) ORDER BY d.id", run_ids).fetchall()
        log: dict[int, list[dict[str, Any]]] = {}
        if rows:
            for delivery_id, at, delivered, detail, error, seconds in self.db.execute(
                    "SELECT delivery_id, at, delivered, detail, error, seconds FROM "
                    "delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE "
                    f"run_id IN ({marks})) ORDER BY rowid", run_ids):
                entry = {"at": at, "delivered": bool(delivered), "response": detail,
                         "seconds": seconds}
                if error:
                    entry["error"] = error
                log.setdefault(delivery_id, []).append(entry)
        out: dict[str, list[dict[str, Any]]] = {}
        for (delivery_id, run_id, target, event, state, attempts, last_at, detail, error,
             next_at) in rows:
            item: dict[str, Any] = {"target": target, "event": event, "status": state,
                                    "attempts": attempts}
            if last_at:
                item["last_attempt_at"] = last_at
            if detail:
                item["response"] = detail
            if error:
                item["error"] = error
            if state == "pending":
                item["next_attempt_at"] = rfc3339(datetime.fromtimestamp(next_at, UTC))
            if delivery_id in log:
                item["attempt_log"] = log[delivery_id]
            out.setdefault(run_id, []).append(item)
        return out

    def running(self, job: str | None = None) -> list[RunRecord]:
        sql = "SELECT record FROM runs WHERE status = 'running'"
        args: tuple[str, ...] = ()
        if job is not None:
            sql, args = sql + " AND job = ?", (job,)
        return [json.loads(r[0]) for r in self.db.execute(sql + " ORDER BY started_at", args)]

    def last_ended(self, job: str, *, status: str | None = None, exclude: tuple[str, ...] = (),
                   dry_run: bool | None = None) -> RunRecord | None:
        """The newest run of `job` that has ended (optionally: with `status`; only dry runs, or
        none, with `dry_run`; records from before the field are no dry runs)."""
        sql = "SELECT record FROM runs WHERE job = ? AND status != 'running'"
        args: list[Any] = [job]
        if status:
            sql += " AND status = ?"
            args.append(status)
        for skip in exclude:
            sql += " AND status != ?"
            args.append(skip)
        if dry_run is not None:
            sql += " AND coalesce(json_extract(record, '$.dry_run'), 0) = ?"
            args.append(int(dry_run))
        row = self.db.execute(sql + " ORDER BY started_at DESC LIMIT 1", args).fetchone()
        return json.loads(row[0]) if row else None

    def last_success(self, job: str) -> RunRecord | None:
        """The newest run of `job` that succeeded for real: a dry run never counts."""
        return self.last_ended(job, status=Status.SUCCEEDED, dry_run=False)

    def runs(self, *, job: str | None = None, status: str | None = None, limit: int = 50,
             before: str | None = None, jobs: list[str] | None = None
             ) -> Iterator[RunRecord]:
        """Newest first; `before` pages by start time; `jobs` limits to those job names."""
        clauses, args = [], []
        for column, value in (("job", job), ("status", status)):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if before:
            clauses.append("started_at < ?")
            args.append(before)
        if jobs is not None:
            clauses.append(f"job IN ({','.join('?' * len(jobs))})" if jobs else "0")
            args.extend(jobs)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT record FROM runs {where} ORDER BY started_at DESC LIMIT ?"
        rows = self.db.execute(sql, (*args, limit)).fetchall()
        yield from self._with_notifications([json.loads(text) for (text,) in rows])
