"""Idempotency keys for triggers: the same key and body return the same run; the same key with
another body is refused (422). Kept 24 h, shared by all workers (SQLite in state_dir).

A key is spent once its run has ended and the final record has been answered to the same client
(`mark_answered`): the same key then starts a new run. A retry of a lost request (whose answer
nobody read) still gets its run, while a deliberate re-run under the same key (a cleared Airflow
DAG run, a retried CronJob pod after a failed `--wait`) runs the job again (docs/api.md)."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

KEEP_SECONDS = 24 * 3600
CLAIM_WAIT = 10.0  # how long a duplicate waits for the first request to get its run id


@dataclass(frozen=True, slots=True)
class Claim:
    owner: bool  # True: this request must start the run and then `settle` the key
    run_id: str | None = None  # the run of an earlier request with this key
    conflict: bool = False  # the key was used with another body


class IdempotencyStore:
    def __init__(self, path: Path) -> None:
        from runner.engine.history import connect_db

        self.db = connect_db(path)  # its table is part of history.db's schema

    def claim(self, client: str, key: str, body: bytes) -> Claim:
        digest = hashlib.sha256(body).hexdigest()
        now = time.time()
        self.db.execute("DELETE FROM idempotency WHERE created < ?", (now - KEEP_SECONDS,))
        try:
            with self.db:  # spent (same body only: another body is still a conflict) -> anew
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("DELETE FROM idempotency WHERE client = ? AND key = ? AND "
                                "body_sha256 = ? AND answered_at IS NOT NULL",
                                (client, key, digest))
                self.db.execute("INSERT INTO idempotency (client, key, body_sha256, run_id, "
                                "created) VALUES (?, ?, ?, NULL, ?)", (client, key, digest, now))
            return Claim(owner=True)
        except sqlite3.IntegrityError:
            pass
        give_up = time.monotonic() + CLAIM_WAIT
        while True:
            row = self.db.execute("SELECT body_sha256, run_id FROM idempotency "
                                  "WHERE client = ? AND key = ?", (client, key)).fetchone()
            if row is None:  # released by a failed first attempt: try again
                return self.claim(client, key, body)
            if row[0] != digest:
                return Claim(owner=False, conflict=True)
            if row[1] is not None or time.monotonic() > give_up:
                return Claim(owner=False, run_id=row[1])
            time.sleep(0.05)

    def settle(self, client: str, key: str, run_id: str) -> None:
        self.db.execute("UPDATE idempotency SET run_id = ? WHERE client = ? AND key = ?",
                        (run_id, client, key))

    def mark_answered(self, client: str, run_id: str) -> None:
        """`client` received `run_id`'s final record: its keys for that run are spent."""
        self.db.execute("UPDATE idempotency SET answered_at = ? WHERE client = ? AND run_id = ? "
                        "AND answered_at IS NULL", (time.time(), client, run_id))

    def release(self, client: str, key: str) -> None:
        """The first request did not start a run (409, error): the key is free again."""
        self.db.execute("DELETE FROM idempotency WHERE client = ? AND key = ? AND run_id IS NULL",
                        (client, key))
