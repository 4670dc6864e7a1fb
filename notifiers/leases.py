"""Who holds a delivery's lease, and whether that process still lives.

A claimed delivery is its claimer's for `LEASE_SECONDS`. A claimer that dies mid-attempt (SIGKILL,
the OOM killer, a container stopped, `serve` restarted) would otherwise hold it that long. So each
claiming process holds an `flock` on a file of its own under `state_dir/leases/` for as long as it
lives: the kernel frees that lock however the process dies, and in whatever PID namespace shares
the state directory (a pid would be meaningless after a container restart). A claim first frees
the leases of holders whose lock can be taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterable
from pathlib import Path

from runner.fsutil import state_subdir

_NAME = re.compile(r"[0-9]+-[0-9a-f]{12}")
_HOLDERS: dict[Path, LeaseHolder] = {}


def lease_holder(lease_dir: Path) -> LeaseHolder:
    """This process's holder for `lease_dir`: one per process, however many outboxes claim."""
    holder = _HOLDERS.get(lease_dir)
    if holder is None:
        holder = _HOLDERS[lease_dir] = LeaseHolder(lease_dir)
    return holder


class LeaseHolder:
    def __init__(self, lease_dir: Path) -> None:
        """Use `lease_holder()`; a second holder in one process is for tests."""
        self.lease_dir = lease_dir
        self._name: str | None = None
        self._fd: int | None = None

    @property
    def name(self) -> str:
        """This process's holder name; its lock file is made and locked on first use
        (OSError when it cannot be: the caller's leases then only run out)."""
        if self._name is None:
            self._name = self._create()
        return self._name

    def dead(self, names: Iterable[str]) -> list[str]:
        """The holders among `names` whose process is gone (their files are removed). One that
        cannot be judged (an unreadable file, a name we never make) counts as alive: its leases
        then run out as before."""
        gone = []
        for name in names:
            if name != self._name and _NAME.fullmatch(name) and self._take(f"{name}.lock"):
                gone.append(name)
        return gone

    def _create(self) -> str:
        """A new lock file, locked before it appears under its name (rename), so nobody can
        take a half-made holder for a dead one."""
        state_subdir(self.lease_dir)  # 0700; refused when a symlink
        self._sweep()
        for _ in range(5):
            name = f"{os.getpid()}-{os.urandom(6).hex()}"
            draft = self.lease_dir / f".{name}.draft"
            fd = os.open(draft, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.rename(draft, self.lease_dir / f"{name}.lock")
            except OSError:  # another's sweep took the draft between open and flock: anew
                os.close(fd)
                continue
            self._fd = fd
            return name
        raise OSError(f"cannot make a lease file in {self.lease_dir}")

    def _sweep(self) -> None:
        """Remove the files of holders that are gone: each process that claims makes one."""
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.lease_dir):
                self._take(entry.name)

    def _take(self, filename: str) -> bool:
        """Whether the holder of `filename` is gone; if so the file is removed. A missing file
        was removed by whoever found its holder gone."""
        path = self.lease_dir / filename
        try:
            # never through a symlink (ELOOP: counted alive, left alone)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # held: its process lives
        else:
            with contextlib.suppress(OSError):
                path.unlink()
            return True
        finally:
            os.close(fd)

    def _forget_inherited(self) -> None:
        """In a forked child: close our copy of the descriptor without unlocking (an unlock
        would free the parent's lock; a copy left open would keep it held after the parent
        dies). The child makes a holder of its own when it claims."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd, self._name = None, None


def _after_fork_in_child() -> None:
    for holder in _HOLDERS.values():
        holder._forget_inherited()


os.register_at_fork(after_in_child=_after_fork_in_child)
