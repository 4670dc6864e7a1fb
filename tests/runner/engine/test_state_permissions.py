"""The stores restic-runner opens are private whatever the umask (`auth.db`, its WAL), and
opening one again in the same process keeps the first connection's locks. (Everything under
`state_dir` private, through the real `run`, `doctor` and `config check`:
tests/e2e/cli/test_state_permissions.py.)"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from tests.support.processes import umask


def test_auth_db_and_its_wal_are_private_whatever_the_umask(tmp_path: Path) -> None:
    from security.auth import SeenIds

    with umask(0):
        store = SeenIds(tmp_path / "auth.db")
        store._conn().execute("CREATE TABLE IF NOT EXISTS probe (x)")
        store._conn().execute("INSERT INTO probe VALUES (1)")
        found = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        store.close()
    assert found.keys() >= {"auth.db", "auth.db-wal", "auth.db-shm"}, found
    assert set(found.values()) == {0o600}, found


def test_opening_the_store_again_in_one_process_keeps_the_first_connections_locks(
        tmp_path: Path) -> None:
    """Checking the files before SQLite opens them must not open and close the database: that
    drops every POSIX lock this process holds on it, and the next process to close its own
    connection then deletes the WAL under ours ("disk I/O error", runs lost: found by the
    disk-full fault test)."""
    import sys

    from runner.engine.history import History
    from runner.engine.record import new_record

    def record() -> dict[str, object]:
        return new_record(job="nightly", kind="backup", hostname="h", repository=None,
                          trigger={"source": "cli"}, version="test")

    reader = ("import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
              "print(db.execute('SELECT COUNT(*) FROM runs').fetchone()[0]); db.close()")
    first = History(tmp_path)
    first.insert(record())
    second = History(tmp_path)  # this process opens the store again (the courier does)
    subprocess.run([sys.executable, "-c", reader, str(tmp_path / "history.db")], check=True)
    assert (tmp_path / "history.db-wal").exists()
    first.insert(record())
    counted = subprocess.run([sys.executable, "-c", reader, str(tmp_path / "history.db")],
                             check=True, capture_output=True, text=True).stdout
    assert counted.strip() == "2"
    first.close()
    second.close()
