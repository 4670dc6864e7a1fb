"""Database files no one else may read or redirect: created 0600 whatever the umask, refused
when a symlink or not a regular file. In `security/` because the replay store (`auth.db`) needs
it and this room imports nothing from `runner/`; `runner.fsutil` builds the other state-file
helpers on it."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

FILE_MODE = 0o600


class NotRegularFile(OSError):
    """A state file that is a symlink, a directory, a FIFO or a device: refused."""


def prepare_db_file(path: Path) -> None:
    """Before SQLite opens `path`: create it 0600 if missing (SQLite gives its -wal and -shm the
    database file's mode), and refuse the database, -wal or -shm when a symlink or not a regular
    file. Existing files we own are tightened to 0600.

    An existing file is only looked at (lstat), never opened: closing a descriptor of a database
    file drops every POSIX lock this process holds on it, including those of a SQLite connection
    already open here, and another process would then delete the WAL under it."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         FILE_MODE))
        os.chmod(path, FILE_MODE)  # the umask may have taken bits away
    except OSError as exc:
        # it exists (checked below), or its directory is missing (SQLite says so)
        if not os.path.lexists(path) and exc.errno != errno.ENOENT:
            raise
    for side in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        _check_regular(side)


def _check_regular(path: Path) -> None:
    """A state file that exists must be a regular file (not a symlink); ours is made 0600."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFile(errno.EINVAL, "a symlink or not a regular file, refused", str(path))
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != FILE_MODE:
        with contextlib.suppress(OSError):  # a read-only mount: reported where writes fail
            os.chmod(path, FILE_MODE)
