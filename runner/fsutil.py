"""Small filesystem helpers: atomic writes, private directories, state files opened safely.

Everything restic-runner creates under `state_dir` is private: directories 0700 and files 0600,
whatever the umask. State files are opened without following a symlink (`O_NOFOLLOW`) and only
when they are regular files: whoever could plant a link there must not make a run (often root)
truncate, overwrite or serve a file elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from security.privatefiles import FILE_MODE, NotRegularFile

DIR_MODE = 0o700


def atomic_write(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write `data` so readers see the old file or the new one, never a torn one.

    The rename replaces a symlink at `path` itself; it never writes through it."""
    # Not tempfile.mkstemp: importing tempfile costs more start-up time than this whole write.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def private_dir(path: Path) -> Path:
    """Create `path` and any missing parent with mode 0700 (whatever the umask) and return it.

    A directory we own that is open to group or others is tightened to 0700. Only the last
    component is checked for a symlink: `state_dir` itself may be one (an administrator's
    choice), a directory inside it may not (see `state_subdir`)."""
    missing = []
    current = path
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            continue  # another process made it at the same instant
        os.chmod(directory, DIR_MODE)  # the umask may have taken bits away
    tighten_dir(path)
    return path


def state_subdir(path: Path) -> Path:
    """A directory inside `state_dir`: made private, and refused when it is a symlink or not a
    directory (a link planted there would send locks and logs elsewhere)."""
    private_dir(path)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise NotRegularFile(errno.ENOTDIR, "a symlink or not a directory, refused", str(path))
    return path


def tighten_dir(path: Path) -> None:
    """chmod 0700 a directory we own that group or others may enter; others are left as they
    are (a Kubernetes volume owned by root with the pod's fsGroup)."""
    try:
        info = os.stat(path)
    except OSError:
        return
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and info.st_mode & 0o077:
        with contextlib.suppress(OSError):  # a read-only mount: reported where writes fail
            os.chmod(path, DIR_MODE)


def open_private_file(path: Path | str, flags: int, mode: int = FILE_MODE) -> int:
    """`os.open` for a state file: never through a symlink, only a regular file, and mode 0600
    (a file we own that is more open is tightened). Returns the descriptor (O_CLOEXEC).

    Raises NotRegularFile for a symlink or anything else than a regular file, OSError as
    `os.open` does otherwise."""
    try:
        # O_NONBLOCK: a FIFO planted under the name must not hang the open
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the name is a symlink
            raise NotRegularFile(errno.ELOOP, "a symlink, refused", str(path)) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file, refused", str(path))
        if info.st_uid == os.geteuid() and info.st_mode & 0o777 != mode:
            with contextlib.suppress(OSError):  # a read-only mount: reported where writes fail
                os.fchmod(fd, mode)
        if not flags & os.O_NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_file(path: Path | str, limit: int | None = None) -> bytes:
    """The bytes of a regular file (at most `limit`), never read through a symlink."""
    fd = open_private_file(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read() if limit is None else f.read(limit)
