"""restic-backup-helper's `rotate_log` done safely in a directory others may write
(compat_log_dir, often /var/log): cron.log is opened once, never through a symlink, a FIFO or
another link to the file, and is archived and emptied through that descriptor; the archive is a
new file (never an existing name, never through a symlink); only regular archive files are
counted and removed. Everything is reached from one descriptor of the directory
(docs/compat-commands.md, `rotate_log`)."""

from __future__ import annotations

import errno
import os
import stat
import tarfile
import time
from pathlib import Path

LOG_NAME = "cron.log"
ARCHIVE_PREFIX = "cron_log_"
ARCHIVE_SUFFIX = ".tar.gz"
NAME_TRIES = 100  # cron_log_<time>.tar.gz, then _1 … when a name is taken


class RotationRefused(Exception):
    """cron.log or its archive is not something rotate_log writes to; the message says why."""


def rotate_cron_log(directory: Path, max_size: int, keep: int) -> str:
    """Archive and empty `directory`/cron.log when it has `max_size` bytes or more; the line
    saying what was done. RotationRefused when it is not a plain file of its own."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise RotationRefused(f"cannot open {directory} ({exc.strerror})") from None
    try:
        return _rotate(directory, dir_fd, max_size, keep)
    finally:
        os.close(dir_fd)


def _rotate(directory: Path, dir_fd: int, max_size: int, keep: int) -> str:
    log = directory / LOG_NAME
    log_fd = _open_log(log, dir_fd)
    try:
        info = os.fstat(log_fd)
        if info.st_size < max_size:
            return f"{log} is {info.st_size} bytes, under {max_size}: nothing to do"
        name = _archive(log, log_fd, info, dir_fd)
        os.ftruncate(log_fd, 0)
    finally:
        os.close(log_fd)
    kept = _prune(dir_fd, keep)
    return (f"{log} ({info.st_size} bytes) archived as {name}; {kept} archive(s) kept")


def _open_log(log: Path, dir_fd: int) -> int:
    """cron.log for reading and truncating: not a symlink (O_NOFOLLOW), not a FIFO or device
    (O_NONBLOCK, then a regular-file check), not a hard link to another file."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(LOG_NAME, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise RotationRefused(f"{log} does not exist") from None
        if exc.errno == errno.ELOOP:
            raise RotationRefused(f"{log} is a symlink: refused, nothing rotated") from None
        raise RotationRefused(f"cannot open {log} ({exc.strerror})") from None
    info = os.fstat(fd)
    problem = ("is not a regular file" if not stat.S_ISREG(info.st_mode) else
               f"has {info.st_nlink} hard links (another name of the same file)"
               if info.st_nlink != 1 else "")
    if problem:
        os.close(fd)
        raise RotationRefused(f"{log} {problem}: refused, nothing rotated")
    os.set_blocking(fd, True)
    return fd


def _archive(log: Path, log_fd: int, info: os.stat_result, dir_fd: int) -> str:
    """cron.log's first `info.st_size` bytes as cron.log in a new gzip'd tar archive, with
    cron.log's permission bits; the archive's name."""
    stamp = time.strftime("%Y%m%d_%H%M%S")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for attempt in range(NAME_TRIES):
        name = f"{ARCHIVE_PREFIX}{stamp}{f'_{attempt}' if attempt else ''}{ARCHIVE_SUFFIX}"
        try:
            fd = os.open(name, flags, stat.S_IMODE(info.st_mode) & 0o666, dir_fd=dir_fd)
            break
        except FileExistsError:
            continue  # taken (a planted symlink, or a rotation in the same second)
        except OSError as exc:
            raise RotationRefused(f"cannot write {log.parent / name} ({exc.strerror}); "
                                  f"{log} left as it is") from None
    else:
        raise RotationRefused(f"no free archive name {ARCHIVE_PREFIX}{stamp}*{ARCHIVE_SUFFIX}; "
                              f"{log} left as it is")
    member = tarfile.TarInfo(LOG_NAME)
    member.size, member.mtime, member.mode = info.st_size, int(info.st_mtime), 0o644
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w:gz") as tar, \
                os.fdopen(os.dup(log_fd), "rb") as source:
            source.seek(0)
            tar.addfile(member, source)
    except (OSError, tarfile.TarError) as exc:
        os.unlink(name, dir_fd=dir_fd)
        raise RotationRefused(f"cannot write {log.parent / name} ({exc}); {log} left as it "
                              "is") from None
    return name


def _prune(dir_fd: int, keep: int) -> int:
    """Remove all but the newest `keep` archives (regular files only: a symlink or anything
    else under an archive's name is neither counted nor touched); how many are kept."""
    archives: list[tuple[float, str]] = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if entry.name.startswith(ARCHIVE_PREFIX) and entry.name.endswith(ARCHIVE_SUFFIX) \
                    and entry.is_file(follow_symlinks=False):
                archives.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
    archives.sort(reverse=True)
    for _, name in archives[keep:]:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISREG(info.st_mode):  # still the file we counted, not a link put there since
            os.unlink(name, dir_fd=dir_fd)
    return min(len(archives), keep)
