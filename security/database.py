"""Opening a SQLite database of the state directory, the one way for `history.db` and
`auth.db`: the file created 0600 and never through a symlink (`security.privatefiles`), WAL
mode, a busy timeout, and a versioned schema (`PRAGMA user_version`) applied in one transaction,
so nobody ever sees half of it. Many processes opening a database at the same instant (50
triggers at once) can see SQLITE_BUSY or SQLITE_PROTOCOL while one switches the journal mode or
migrates: those are transient, so the open is retried briefly. In `security/` because the
replay store needs it and this room imports nothing from `runner/`."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from security.privatefiles import prepare_db_file

_TRANSIENT = ("locked", "locking protocol", "duplicate column")


class Schema(NamedTuple):
    version: int  # PRAGMA user_version once `script` (and the migrations) are applied
    script: str  # the whole schema, `CREATE … IF NOT EXISTS`
    # SQL an older store needs before `script` (columns added to existing tables)
    migrations: Callable[[sqlite3.Connection], str] = lambda db: ""


def connect(path: Path, schema: Schema, *, timeout: float = 30.0,
            attempts: int = 40) -> sqlite3.Connection:
    """A connection in autocommit mode (`BEGIN` where a transaction is meant), usable from any
    thread of this process (never across a fork)."""
    prepare_db_file(path)  # 0600 (its -wal and -shm get its mode); no symlink
    for attempt in range(attempts):
        db = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                             check_same_thread=False)
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if db.execute("PRAGMA user_version").fetchone()[0] < schema.version:
                db.executescript(f"BEGIN IMMEDIATE; {schema.migrations(db)} {schema.script}; "
                                 f"PRAGMA user_version={schema.version}; COMMIT;")
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            # "duplicate column": another process migrated first; the next try sees the version
            if not any(sign in str(exc) for sign in _TRANSIENT) or attempt == attempts - 1:
                raise
            time.sleep(0.005 * (attempt + 1))
    raise AssertionError("unreachable")
