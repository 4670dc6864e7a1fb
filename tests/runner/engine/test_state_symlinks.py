"""State files are never opened through a symlink, and only when they are regular files: the
helpers themselves and the run log (a link planted in `state_dir` under a real `run`:
tests/e2e/cli/test_state_symlinks.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from runner.engine.runlog import RunLog
from runner.fsutil import NotRegularFile, open_private_file, read_regular_file
from tests.support.paths import PRECIOUS


def test_a_run_log_that_is_a_symlink_is_not_written_through(victim: Path,
                                                             tmp_path: Path) -> None:
    """The run goes on (its log only in memory), as on a full disk, and says why."""
    path = tmp_path / "run.log"
    path.symlink_to(victim)
    with RunLog(path) as log:
        log.write(b"restic output that must not land elsewhere\n")
    assert victim.read_bytes() == PRECIOUS
    assert isinstance(log.write_error, NotRegularFile)
    assert "restic output" in log.tail()


def test_the_helpers_refuse_a_symlink_a_directory_and_a_fifo_without_hanging(
        tmp_path: Path, victim: Path) -> None:
    link, fifo, directory = tmp_path / "link", tmp_path / "fifo", tmp_path / "dir"
    link.symlink_to(victim)
    os.mkfifo(fifo)
    directory.mkdir()
    outcome: dict[str, object] = {}

    def attempt() -> None:
        for path in (link, fifo, directory):
            for call in (lambda p: read_regular_file(p),
                         lambda p: os.close(open_private_file(p, os.O_RDWR | os.O_CREAT))):
                try:
                    call(path)
                    outcome[f"{path.name}"] = "opened"
                except NotRegularFile:
                    outcome.setdefault(path.name, "refused")
                except OSError as exc:  # a directory cannot be opened for writing at all
                    outcome.setdefault(path.name, f"error {exc.errno}")

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "opening a FIFO hung"
    assert outcome == {"link": "refused", "fifo": "refused", "dir": "refused"}
    assert victim.read_bytes() == PRECIOUS


def test_a_state_file_we_own_is_tightened_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.lock"
    path.write_bytes(b"{}")
    path.chmod(0o644)
    os.close(open_private_file(path, os.O_RDWR))
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_regular_file(path) == b"{}"
