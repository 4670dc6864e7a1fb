"""restic-backup-helper's outputs, written where it wrote them (`compat_log_dir`, /var/log in the
image; docs/runs.md, "Outputs where restic-backup-helper wrote them"): after every run,
`last-<job>.json` (a copy of the one in `state_dir`), `<job>-last.log` (the run's log, as its
`/var/log/<worker>-last.log`) and the run's log appended to `cron.log` (which received its
workers' output, and which its compose files `tail -fn0`).

What is written there is what the state directory holds, masked the same way, but readable by
others (0644, as the peer's files were): a log collector or node-exporter sidecar reads it. So
`last-<job>.json` there leaves out who triggered the run (`trigger` keeps only its `source`:
no API client name, address or idempotency key, which the peer's files never had).

The directory may be writable by others (/var/log on a host), so nothing there is trusted: every
file is opened without following a symlink and without blocking (a FIFO planted as `cron.log`
must not hang the run holding its job lock), and written only if it is a regular file with one
link; `cron.log`'s lock is waited for a few seconds at most, and the whole writing is given
WRITE_TIMEOUT seconds (a hung network file system). A failure here never fails a run; it is
said in the run's log (docs/runs.md, "Outputs where restic-backup-helper wrote them").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from runner.engine.record import RunRecord
from runner.fsutil import atomic_write, open_private_file
from security.masking import REGISTRY

MODE = 0o644
CRON_LOG = "cron.log"
# cron.log gets at most this much of one run's log (a verbose backup's log can be hundreds of
# MB); what is left out is said, and `<job>-last.log` has it all
CRON_LOG_LIMIT = 256 * 1024
WRITE_TIMEOUT = 30.0  # seconds for the three files together
LOCK_TIMEOUT = 5.0  # seconds cron.log's lock is waited for (any reader of it can hold it)
_OPEN = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


def last_json_path(directory: Path, job: str) -> Path:
    return directory / f"last-{job}.json"


def last_log_path(directory: Path, job: str) -> Path:
    return directory / f"{job}-last.log"


def write_compat_logs(directory: Path, record: RunRecord, last_json: Path | None,
                      run_log: Path | None, tail: str = "") -> str | None:
    """Write the three outputs of one ended run; return what failed, in words, or None (never
    raises, returns within about WRITE_TIMEOUT seconds). `last_json`: the state directory's
    `last-<job>.json` (copied without the trigger's details); `run_log`: the run's log file
    (None, or unreadable: `tail` stands in for it)."""
    job = str(record.get("job"))
    document = dict(record)  # the caller's record stays its own, whatever happens here
    outcome: list[str | None] = []

    def work() -> None:
        try:
            outcome.append(_write_all(directory, job, last_json, document, run_log, tail))
        except Exception as exc:  # a bug here must not fail the run either
            outcome.append(f"compat_log_dir {directory}: {type(exc).__name__}: {exc}")

    thread = threading.Thread(target=work, name="compat-logs", daemon=True)
    thread.start()
    thread.join(WRITE_TIMEOUT)
    if thread.is_alive() or not outcome:
        return (f"compat_log_dir {directory}: not done after {WRITE_TIMEOUT:g}s (a hung file "
                f"system?); the run goes on without it")
    return outcome[0]


def touch_cron_log(directory: Path | str | None) -> str | None:
    """Make `cron.log` exist (the peer's entry.sh did: `tail -f` follows it, its Kubernetes
    readiness probe is `test -f /var/log/cron.log`) the same careful way: never through a
    symlink, never waiting on a FIFO. What was refused, in words, or None."""
    if not directory:
        return None
    path = Path(directory) / CRON_LOG
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _OPEN, MODE)
    except OSError as exc:
        return f"{path}: {_reason(exc)}"
    try:
        _regular(fd, path)
    except OSError as exc:
        return f"{path}: {_reason(exc)}"
    finally:
        os.close(fd)
    return None


def _write_all(directory: Path, job: str, last_json: Path | None,
               document: dict[str, Any], run_log: Path | None, tail: str) -> str | None:
    problems = []
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        return f"compat_log_dir {directory}: {exc.strerror or exc}"
    writes: list[tuple[Path, Callable[[], None]]] = [
        (last_json_path(directory, job),
         lambda: atomic_write(last_json_path(directory, job), _last_json(last_json, document),
                              mode=MODE)),
        (last_log_path(directory, job),
         lambda: atomic_write(last_log_path(directory, job),
                              lambda out: _copy_log(run_log, out, tail), mode=MODE)),
        (directory / CRON_LOG,
         lambda: _append(directory / CRON_LOG, _cron_lines(run_log, tail, job))),
    ]
    for path, write in writes:
        try:
            write()
        except OSError as exc:
            problems.append(f"{path}: {_reason(exc)}")
    return "; ".join(problems) or None


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symlink, refused"
    if exc.errno == errno.ENXIO:  # a FIFO nobody reads, opened without blocking
        return "not a regular file, refused"
    return exc.strerror or str(exc)


def public_record(document: dict[str, Any]) -> dict[str, Any]:
    """The run record as `compat_log_dir` (readable by others) gets it: the trigger says only
    where the run came from (`cli`, `schedule`, `api`), not who or which address asked."""
    trigger = document.get("trigger")
    if isinstance(trigger, dict):
        document = {**document, "trigger": {"source": trigger.get("source")}}
    return document


def _last_json(last_json: Path | None, record: dict[str, Any]) -> bytes:
    """The state directory's `last-<job>.json` (it has `notifications` and `last_success`), or
    the record itself when that cannot be read."""
    document: Any = record
    if last_json is not None:
        with contextlib.suppress(OSError, ValueError):
            fd = open_private_file(last_json, os.O_RDONLY)
            with os.fdopen(fd, "rb") as f:
                document = json.loads(f.read())
    if not isinstance(document, dict):
        document = record
    return json.dumps(public_record(document), indent=2).encode() + b"\n"


def _regular(fd: int, path: Path) -> None:
    """Refuse what is not a regular file with one link (a hard link to another file of the
    system would have it written; protected_hardlinks is not everywhere)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(errno.EINVAL, "not a regular file, refused", str(path))
    if info.st_nlink != 1:
        raise OSError(errno.EMLINK, f"{info.st_nlink} hard links, refused", str(path))


def _open_log(run_log: Path | None) -> int | None:
    if run_log is None:
        return None
    try:
        return open_private_file(run_log, os.O_RDONLY)
    except OSError:
        return None


def _copy_log(run_log: Path | None, out: BinaryIO, tail: str) -> None:
    """The run log, streamed (it may be large); masked already. The tail is masked again."""
    source = _open_log(run_log)
    if source is None:
        out.write(REGISTRY.redact(_with_newline(tail).encode()))
        return
    with os.fdopen(source, "rb") as f:
        shutil.copyfileobj(f, out, 1 << 20)


def _cron_lines(run_log: Path | None, tail: str, job: str) -> bytes:
    source = _open_log(run_log)
    if source is None:
        return REGISTRY.redact(_with_newline(tail).encode())
    with os.fdopen(source, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= CRON_LOG_LIMIT:
            return f.read()
        f.seek(size - CRON_LOG_LIMIT)
        data = f.read()
    data = data[data.find(b"\n") + 1:]  # from a whole line on
    left_out = size - len(data)
    return (f"[{job}: the first {left_out} bytes of this run's log are left out here; "
            f"{job}-last.log has all of it]\n").encode() + data


def _append(path: Path, data: bytes) -> None:
    """Append in one write under an exclusive lock: runs of several jobs ending together do not
    interleave their lines. The lock is waited for LOCK_TIMEOUT seconds at most: anyone who
    can read cron.log can hold it."""
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _OPEN, MODE)
    try:
        _regular(fd, path)
        _lock(fd, path)
        view = memoryview(_with_newline_bytes(data))
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


def _lock(fd: int, path: Path) -> None:
    give_up = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= give_up:
                raise OSError(errno.EWOULDBLOCK, f"locked by another process for "
                              f"{LOCK_TIMEOUT:g}s; this run's lines are not appended",
                              str(path)) from None
            time.sleep(0.05)


def _with_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def _with_newline_bytes(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"
