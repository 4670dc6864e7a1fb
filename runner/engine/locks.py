"""Named locks: one `fcntl.flock` on `<dir>/<name>.lock`. Each job has one under
`state_dir/locks/`, held by the process that supervises its run, so the kernel frees it when that
process dies, however it dies; `serve` and the scheduler have one each per state directory.
Whether a run may start is decided by taking the lock, never by looking first.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from runner.engine.record import RunRecord


class Holder(NamedTuple):
    """Who holds a lock, as its note says: the run (or "serve", "scheduler") and the process."""

    run_id: str
    pid: int


class NamedLock:
    """`<lock_dir>/<name>.lock`: a job's lock (held by the process that supervises its run), or
    the one `serve` and the one scheduler per state directory."""

    def __init__(self, lock_dir: Path, name: str) -> None:
        self.path = lock_dir / f"{name}.lock"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        if self._fd is not None:
            return True
        from runner.errors import UserError
        from runner.fsutil import NotRegularFile, open_private_file, private_dir

        try:
            private_dir(self.path.parent)
            fd = open_private_file(self.path, os.O_RDWR | os.O_CREAT)
        except NotRegularFile:
            raise UserError(f"state_dir: the lock {self.path} is a symlink or not a regular "
                            "file: refused (remove it)") from None
        except OSError as exc:
            raise UserError(f"state_dir: {self.path.parent} is not writable: cannot open "
                            f"the lock {self.path.name} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def write_holder(self, run_id: str) -> None:
        """Note who holds the lock, so a skipped run can name the run it yielded to."""
        assert self._fd is not None
        data = json.dumps({"run_id": run_id, "pid": os.getpid()}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def write_end(self, record: RunRecord, reason: str) -> None:
        """The run's end, when the history could not take it (a full disk): into the lock file
        we hold, within the block it already has, so it needs no free space. Whoever marks the
        run later (runner.engine.recovery) records this end."""
        if self._fd is None:
            return
        ended = {"status": record["status"], "exit_code": record["exit_code"],
                 "finished_at": record.get("finished_at"), "reason": reason[:300],
                 "error": (record.get("error") or "")[:1000]}
        data = json.dumps({"run_id": record["run_id"], "pid": os.getpid(),
                           "ended": ended}).encode()[:4000]
        try:
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))  # shrinks at most: no new block
        except OSError:
            pass

    def holder(self) -> Holder | None:
        """The process noted as holding this lock, when that process is alive. The one answer to
        "is the holder alive?": a run is live when this names it and its record says running
        (the note of a lock taken an instant ago may still be the previous holder's)."""
        note = self.read_holder() or {}
        run_id, pid = note.get("run_id"), note.get("pid")
        if not isinstance(run_id, str) or not isinstance(pid, int) or not process_exists(pid):
            return None
        return Holder(run_id, pid)

    def read_holder(self) -> dict[str, object] | None:
        from runner.fsutil import read_regular_file

        try:
            data = json.loads(read_regular_file(self.path, 65536) or b"null")
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def drop_inherited(self) -> None:
        """In a forked child: close our copy of the descriptor without unlocking (an unlock
        would release the parent's lock too; a copy left open would keep it held after the
        parent dies)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None



def signal_holder(lock_dir: Path, job: str, run_id: str) -> bool:
    """Ask the supervisor of `run_id` to stop (SIGTERM: it passes SIGINT to restic).

    False when the lock is not held for that run (ended, or its supervisor is gone). The lock is
    tried first: a free lock's note may name a pid the system has given to another process.
    """
    import signal

    lock = NamedLock(lock_dir, job)
    if lock.try_acquire():  # nobody holds it: the run has no live supervisor
        lock.release()
        return False
    holder = lock.holder()
    if holder is None or holder.run_id != run_id:
        return False
    try:
        os.kill(holder.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def process_exists(pid: object) -> bool:
    """Whether a process exists (one we may not signal counts as existing). A lock holder's
    process that is gone leaves a run to be marked interrupted."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
