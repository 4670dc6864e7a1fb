"""Filesystems for the state directory: a small one to fill to the last byte (tmpfs, else a
loop-mounted ext4 image) and a read-only bind mount. Both need root; a machine that allows
neither fails the test (never skips it: the fault would stay untested)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _unmount(path: Path) -> None:
    if _run("umount", str(path)).returncode != 0:
        _run("umount", "-l", str(path))  # something still holds a file there: detach it


@contextlib.contextmanager
def small_filesystem(path: Path, size_kib: int = 2048) -> Iterator[str]:
    """A small filesystem mounted at `path`: tmpfs, else a loop-mounted ext4 image. Fails (never
    skips) when this machine allows neither. Unmounted at the end; yields which one it is."""
    path.mkdir(parents=True, exist_ok=True)
    tried = []
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(path))
    kind = "tmpfs"
    if done.returncode != 0:
        tried.append(f"mount -t tmpfs: {done.stderr.strip()}")
        image = path.with_name(path.name + ".ext4")
        with open(image, "wb") as f:
            f.truncate(max(size_kib, 1024) * 1024)
        steps = [("mkfs.ext4", "-q", "-F", "-m", "0", str(image)),
                 ("mount", "-o", "loop", str(image), str(path))]
        kind = "ext4 loop"
        for step in steps:
            done = _run(*step)
            if done.returncode != 0:
                tried.append(f"{' '.join(step[:2])}: {done.stderr.strip()}")
                pytest.fail("cannot simulate a full disk on this machine (not skipped: this "
                            "fault stays untested here): " + "; ".join(tried))
        path.chmod(0o700)
    try:
        yield kind
    finally:
        _unmount(path)


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to the last byte; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` bind-mounted read-only over itself (root ignores file modes, not a read-only
    mount); the bind mount is removed at the end."""
    for step in (("mount", "--bind", str(path), str(path)),
                 ("mount", "-o", "remount,ro,bind", str(path))):
        done = _run(*step)
        if done.returncode != 0:
            if step[1] != "--bind":
                _unmount(path)
            pytest.fail(f"cannot make {path} read-only here ({' '.join(step)}: "
                        f"{done.stderr.strip()}); this fault stays untested")
    try:
        yield
    finally:
        _unmount(path)
