"""State files are never opened through a symlink, and only when they are regular files: a link
planted in `state_dir` must not make a run (often root) truncate, overwrite or read a file
elsewhere. Real `restic-runner run` against a real repository (the helpers themselves:
tests/runner/engine/test_state_symlinks.py)."""

from __future__ import annotations

from pathlib import Path

from tests.support.paths import PRECIOUS
from tests.support.workspace import Workspace

JOBS = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]
"""


def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched(
        ws: Workspace, victim: Path) -> None:
    ws.write_config(JOBS.format(data=ws.data))
    ws.cli("run", "nightly", check=True)
    lock = ws.state / "locks" / "nightly.lock"
    lock.unlink()
    lock.symlink_to(victim)
    done = ws.cli("run", "nightly")
    assert done.returncode == 2
    assert f"state_dir: the lock {lock} is a symlink or not a regular file: refused" \
        in done.stderr
    assert victim.read_bytes() == PRECIOUS
    assert oct(victim.stat().st_mode & 0o777) == oct(0o644)
    assert len(ws.snapshots()) == 1


def test_a_history_database_that_is_a_symlink_is_refused(ws: Workspace, victim: Path) -> None:
    ws.write_config(JOBS.format(data=ws.data))
    ws.state.mkdir(mode=0o700)
    (ws.state / "history.db").symlink_to(victim)
    done = ws.cli("run", "nightly")
    assert done.returncode == 2
    assert (f"state_dir: {ws.state / 'history.db'} is a symlink or not a regular file or "
            "directory: refused") in done.stderr
    assert victim.read_bytes() == PRECIOUS


def test_a_wal_that_is_a_symlink_is_refused(ws: Workspace, victim: Path) -> None:
    ws.write_config(JOBS.format(data=ws.data))
    ws.cli("run", "nightly", check=True)
    wal = ws.state / "history.db-wal"
    wal.unlink(missing_ok=True)
    wal.symlink_to(victim)
    done = ws.cli("run", "nightly")
    assert done.returncode == 2
    assert "history.db-wal is a symlink or not a regular file" in done.stderr
    assert victim.read_bytes() == PRECIOUS


def test_a_log_directory_that_is_a_symlink_is_refused(ws: Workspace, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ws.write_config(JOBS.format(data=ws.data))
    ws.state.mkdir(mode=0o700)
    (ws.state / "logs").symlink_to(elsewhere)
    done = ws.cli("run", "nightly")
    assert done.returncode == 2
    assert f"state_dir: {ws.state / 'logs'} is a symlink or not a regular file" in done.stderr
    assert list(elsewhere.iterdir()) == []


def test_last_json_that_is_a_symlink_is_replaced_not_written_through(ws: Workspace,
                                                                      victim: Path) -> None:
    ws.write_config(JOBS.format(data=ws.data))
    ws.state.mkdir(mode=0o700)
    (ws.state / "last-nightly.json").symlink_to(victim)
    ws.cli("run", "nightly", check=True)
    assert victim.read_bytes() == PRECIOUS
    assert not (ws.state / "last-nightly.json").is_symlink()


