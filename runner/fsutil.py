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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from security.privatefiles import FILE_MODE, NotRegularFile

DIR_MODE = 0o700


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], object],
                 mode: int = FILE_MODE) -> None:
    """Write `data` (or what `data(out)` writes: a file streamed in) so readers see the old
    file or the new one, never a torn one.

    The new file is created (`O_EXCL`, never through a link) and renamed over `path`: whatever
    was there, a symlink or a FIFO, is replaced, never written through."""
    # Not tempfile.mkstemp: importing tempfile costs more start-up time than this whole write.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                data(f)
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
    directory (a link planted there would send locks and logs elsewhere). Checked before
    anything is changed: nothing outside `state_dir` is ever chmod-ed."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, DIR_MODE)
    os.close(_open_private_subdir(path))
    return path


def _open_private_subdir(path: Path) -> int:
    """A descriptor of the directory `path` itself (never through a symlink), tightened to 0700
    when ours; refused when a symlink, not a directory, or another user's that others may
    write to (a group-writable one is a Kubernetes volume's `fsGroup`)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise NotRegularFile(errno.ENOTDIR, "a symlink or not a directory, refused",
                                 str(path)) from None
        raise
    try:
        info = os.fstat(fd)
        if info.st_uid == os.geteuid():
            if info.st_mode & 0o077:
                with contextlib.suppress(OSError):  # a read-only mount: reported where writes fail
                    os.fchmod(fd, DIR_MODE)
        elif info.st_mode & 0o002:
            raise NotRegularFile(errno.EPERM, f"owned by uid {info.st_uid} and writable by "
                                              "every local user, refused", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def sync_private_files(directory: Path, files: Mapping[str, bytes]) -> None:
    """Make `directory` (inside `state_dir`) hold exactly `files` (name -> content), each mode
    0600: a file whose content is already right is left alone (a read-only command writes
    nothing then), any other regular file or link there is removed (its secret is gone).

    Everything goes through a descriptor of the directory opened without following a link, so
    a link planted at `directory`, or swapped in meanwhile, is refused (naming the path), never
    written through. Without `files`, a missing directory is not created."""
    for name in files:
        if not name or name.startswith(".") or "/" in name or "\0" in name:
            raise ValueError(f"not a plain file name: {name!r}")
    if not files and not os.path.lexists(directory):
        return
    if files:
        state_subdir(directory)
    fd = _open_private_subdir(directory)
    try:
        for name, data in files.items():
            if _holds(fd, name, data):
                continue
            tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, FILE_MODE, dir_fd=fd)
            try:
                with os.fdopen(out, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fchmod(f.fileno(), FILE_MODE)
                os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=fd)
                raise
        for name in os.listdir(fd):
            if name in files or name.startswith("."):  # another writer's file in flight
                continue
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode):
                os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def _holds(dir_fd: int, name: str, data: bytes) -> bool:
    """Whether `name` is already a 0600 regular file holding exactly `data` (another user's too:
    root checking the service user's files must not take them over)."""
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return False  # not even opened: a FIFO or a device planted under the name
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if (not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != FILE_MODE
                or info.st_size != len(data)):
            return False
        return f.read(len(data) + 1) == data


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
