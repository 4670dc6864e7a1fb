"""Small filesystem helpers: atomic writes and private directories."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write `data` so readers see the old file or the new one, never a torn one."""
    # Not tempfile.mkstemp: importing tempfile costs more start-up time than this whole write.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
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
    """Create `path` (mode 0700 for what we create) and return it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
