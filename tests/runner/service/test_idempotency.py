"""The idempotency store in-process: a key returns its run until the same client has been
answered the run's final record; then the same key and body start anew (docs/api.md)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from runner.engine.history import _SCHEMA, SCHEMA_VERSION
from runner.service.idempotency import IdempotencyStore


def _store(tmp_path: Path) -> IdempotencyStore:
    return IdempotencyStore(tmp_path / "history.db")


def test_a_key_returns_its_run_until_its_result_was_answered(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.claim("airflow", "k", b"{}").owner
    store.settle("airflow", "k", "run-a")
    assert store.claim("airflow", "k", b"{}").run_id == "run-a"
    store.mark_answered("cron", "run-a")  # another client read it: not this client's key
    assert store.claim("airflow", "k", b"{}").run_id == "run-a"
    assert store.claim("airflow", "k", b'{"params": {}}').conflict
    store.mark_answered("airflow", "run-a")
    assert store.claim("airflow", "k", b'{"params": {}}').conflict  # spent, but another body
    fresh = store.claim("airflow", "k", b"{}")
    assert fresh.owner and fresh.run_id is None
    store.settle("airflow", "k", "run-b")
    assert store.claim("airflow", "k", b"{}").run_id == "run-b"
    store.mark_answered("airflow", "run-a")  # a late read of the old run spends nothing new
    assert store.claim("airflow", "k", b"{}").run_id == "run-b"


def test_a_store_from_schema_5_gains_answered_at(tmp_path: Path) -> None:
    schema_5 = _SCHEMA.replace("    answered_at REAL,", "").replace(
        "  -- the run's final record was answered to the client: the key is spent\n", "\n")
    assert "answered_at" not in schema_5
    old = sqlite3.connect(tmp_path / "history.db")
    old.executescript(schema_5 + "PRAGMA user_version=5;")
    old.execute("INSERT INTO idempotency VALUES ('airflow', 'k', ?, 'run-a', 1e12)",
                (hashlib.sha256(b"{}").hexdigest(),))
    old.commit()
    old.close()
    store = _store(tmp_path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    assert store.claim("airflow", "k", b"{}").run_id == "run-a"  # kept across the migration
    store.mark_answered("airflow", "run-a")
    assert store.claim("airflow", "k", b"{}").owner
