"""The state directory without its database: `locks/`, `logs/<job>/`, `last-<job>.json`.

Everything a run needs before its tool starts (the job's lock, its log file) comes from here, so
a run opens SQLite only while its tool already runs (docs/architecture.md, the cron path)."""

from __future__ import annotations

import stat
from pathlib import Path

from runner.errors import UserError
from runner.fsutil import NotRegularFile, private_dir, state_subdir


class StateError(UserError):
    """The state directory or its database cannot be used."""


def check_state_dir(state_dir: Path) -> None:
    """Refuse a state directory that every local user may write to (and that we do not own, so
    cannot tighten): anyone could plant links or files in it."""
    info = state_dir.stat()
    if info.st_mode & stat.S_IWOTH:
        raise StateError(f"state_dir: {state_dir} is writable by every local user (mode "
                         f"{stat.S_IMODE(info.st_mode):04o}, owner uid {info.st_uid}): refused; "
                         f"run: chmod 0700 {state_dir}")


class StateDir:
    """A prepared state directory: made private (0700) or tightened, refused when every local
    user may write to it, its `locks/` and `logs/` made and checked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            private_dir(path)
            check_state_dir(path)
            self.lock_dir = state_subdir(path / "locks")
            self.log_dir = state_subdir(path / "logs")
        except NotRegularFile as exc:
            raise StateError(f"state_dir: {exc.filename} is a symlink or not a regular file or "
                             "directory: refused (move it aside)") from None
        except OSError as exc:
            raise StateError(f"state_dir: {path} is not usable: {exc.strerror}") from None

    def log_path(self, job: str, run_id: str) -> Path:
        return state_subdir(self.log_dir / job) / f"{run_id}.log"

    def last_path(self, job: str) -> Path:
        return self.path / f"last-{job}.json"
