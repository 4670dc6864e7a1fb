"""restic-backup-helper's outputs, written where it wrote them (`compat_log_dir`, /var/log in the
image; docs/runs.md, "Outputs where restic-backup-helper wrote them"): after every run,
`last-<job>.json` (a copy of the one in `state_dir`), `<job>-last.log` (the run's log, as its
`/var/log/<worker>-last.log`) and the run's log appended to `cron.log` (which received its
workers' output, and which its compose files `tail -fn0`).

What is written there is what the state directory holds, masked the same way, but readable by
others (0644, as the peer's files were): a log collector or node-exporter sidecar reads it. A
failure here never fails a run; it is said in the run's log.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

from runner.engine.record import RunRecord
from runner.fsutil import atomic_write, open_private_file
from security.masking import REGISTRY

MODE = 0o644
CRON_LOG = "cron.log"
# cron.log gets at most this much of one run's log (a verbose backup's log can be hundreds of
# MB); what is left out is said, and `<job>-last.log` has it all
CRON_LOG_LIMIT = 256 * 1024


def last_json_path(directory: Path, job: str) -> Path:
    return directory / f"last-{job}.json"


def last_log_path(directory: Path, job: str) -> Path:
    return directory / f"{job}-last.log"


def write_compat_logs(directory: Path, record: RunRecord, last_json: Path | None,
                      run_log: Path | None, tail: str = "") -> str | None:
    """Write the three outputs of one ended run; return what failed, in words, or None.
    `last_json`: the state directory's `last-<job>.json` (copied as it is); `run_log`: the
    run's log file (None, or unreadable: `tail` stands in for it)."""
    job = record["job"]
    problems = []
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        return f"compat_log_dir {directory}: {exc.strerror or exc}"
    try:
        atomic_write(last_json_path(directory, job), _last_json(record, last_json), mode=MODE)
    except OSError as exc:
        problems.append(f"{last_json_path(directory, job)}: {exc.strerror or exc}")
    try:
        _copy_log(run_log, last_log_path(directory, job), tail)
    except OSError as exc:
        problems.append(f"{last_log_path(directory, job)}: {exc.strerror or exc}")
    try:
        _append(directory / CRON_LOG, _cron_lines(run_log, tail, job))
    except OSError as exc:
        problems.append(f"{directory / CRON_LOG}: {exc.strerror or exc}")
    return "; ".join(problems) or None


def _last_json(record: RunRecord, last_json: Path | None) -> bytes:
    if last_json is not None:
        with contextlib.suppress(OSError):
            fd = open_private_file(last_json, os.O_RDONLY)
            with os.fdopen(fd, "rb") as f:
                return f.read()
    return json.dumps(record, indent=2).encode() + b"\n"


def _open_log(run_log: Path | None) -> int | None:
    if run_log is None:
        return None
    try:
        return open_private_file(run_log, os.O_RDONLY)
    except OSError:
        return None


def _copy_log(run_log: Path | None, target: Path, tail: str) -> None:
    """Copy the run log atomically (a reader sees the last run's log or this one), streamed:
    it may be large. The run log is masked already; the tail is masked again."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            source = _open_log(run_log)
            if source is None:
                out.write(REGISTRY.redact(_with_newline(tail).encode()))
            else:
                with os.fdopen(source, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
            os.fchmod(out.fileno(), MODE)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    interleave their lines."""
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                 MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(_with_newline_bytes(data))
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


def _with_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def _with_newline_bytes(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"
