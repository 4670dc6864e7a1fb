"""The run record (docs/runs.md): one document for the API, `last-<job>.json` and webhooks,
its statuses, and every change of a run's state: a run's own process (runner.engine.runs) and
the recovery of runs whose supervisor died (runner.engine.recovery) both change it only here."""

from __future__ import annotations

import os
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from datetime import datetime

SCHEMA = "restic-runner.run/1"


class Status(StrEnum):
    """A run's status; the values are what the record, the API and the metrics say."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    WARNING = "warning"
    FAILED = "failed"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


ENDED = frozenset(status for status in Status if status is not Status.RUNNING)


class _RecordFields(TypedDict):
    schema: str
    run_id: str
    job: str
    kind: str
    status: str  # a Status value
    exit_code: int | None
    hostname: str
    repository: str | None  # masked
    trigger: dict[str, Any]
    dry_run: bool
    started_at: str
    finished_at: str | None
    duration_seconds: float | None
    stats: dict[str, Any]
    steps: list[dict[str, Any]]
    progress: dict[str, Any] | None
    log_tail: str
    error: str | None
    notifications: list[dict[str, Any]]
    version: str


class RunRecord(_RecordFields, total=False):
    """One run, as docs/runs.md describes it (a plain dict: JSON in and out)."""

    params: dict[str, Any]
    running_run_id: str  # a skipped run: the run it yielded to
    end_recorded_late: bool  # its end came from its job lock, after a full disk
    last_success: dict[str, Any] | None  # last-<job>.json only
    # restic-backup-helper's fields (runner.engine.peerfields; docs/runs.md), set at a run's
    # end; its extras were strings, so these are too
    release: str
    started_epoch: int
    finished_epoch: int
    backup_root_dir: str
    restic_tag: str
    forget_exit_code: str
    snapshot_id: str  # short, as "snapshot d3d8ba59 saved"
    files_new: str
    files_changed: str
    files_unmodified: str
    dirs_new: str
    dirs_changed: str
    dirs_unmodified: str
    bytes_added: str  # as restic prints it: "1.234 KiB"
    bytes_stored: str
    replicate_jobs_processed: str
    replicate_jobs_failed: str
    # a restore rehearsal, as the helper's last-restore-test.json (strings but canary_results)
    snapshot: str
    target: str
    target_autotmp: str
    keep: str
    verify: str
    min_files: str
    min_files_met: str
    files_restored: str
    bytes_restored: str
    verification: str
    canary_total: str
    canary_passed: str
    canary_failed: str
    cleanup_status: str
    include_paths_count: str
    canary_results: list[dict[str, str]]
    tag_filter: str
    host_filter: str


def new_run_id() -> str:
    """A random (version 4) UUID; `uuid` itself costs more start-up time than a run's SQLite."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utc_now() -> str:
    """Now, as `rfc3339` writes it (without `datetime`: a run stamps its start before restic
    starts, and the cron path imports nothing it does not need by then)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def rfc3339(moment: datetime) -> str:
    from datetime import UTC

    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds_between(started_at: str, finished_at: str) -> float:
    return round((parse_rfc3339(finished_at) - parse_rfc3339(started_at)).total_seconds(), 3)


def new_record(*, job: str, kind: str, hostname: str, repository: str | None,
               trigger: dict[str, Any], version: str, dry_run: bool = False) -> RunRecord:
    """A `running` record. `dry_run`: the tool runs with --dry-run; such a run never counts as
    the job's last success (metrics, healthchecks, `last_success` in `last-<job>.json`)."""
    return {
        "schema": SCHEMA,
        "run_id": new_run_id(),
        "job": job,
        "kind": kind,
        "status": Status.RUNNING,
        "exit_code": None,
        "hostname": hostname,
        "repository": repository,
        "trigger": trigger,
        "dry_run": dry_run,
        "started_at": utc_now(),
        "finished_at": None,
        "duration_seconds": None,
        "stats": {},
        "steps": [],
        "progress": None,
        "log_tail": "",
        "error": None,
        "notifications": [],
        "version": version,
    }


# --- the changes of a run's state ---------------------------------------------------------------

def finish(record: RunRecord, status: Status, exit_code: int) -> None:
    """A run's own end."""
    record.update(status=status, exit_code=exit_code, progress=None, finished_at=utc_now())
    record["duration_seconds"] = seconds_between(record["started_at"], record["finished_at"])


def skip(record: RunRecord, holder: str, message: str) -> None:
    """A run that yielded to the run holding its job's lock."""
    record.update(status=Status.SKIPPED, exit_code=0, finished_at=record["started_at"],
                  duration_seconds=0.0, error=message, log_tail=message + "\n",
                  running_run_id=holder)


def not_started(record: RunRecord, reason: str, exit_code: int) -> None:
    """A run that failed before its first process started (a secret file that cannot be used)."""
    record.update(status=Status.FAILED, exit_code=exit_code, finished_at=record["started_at"],
                  duration_seconds=0.0, error=reason, log_tail=reason + "\n")


def interrupt(record: RunRecord) -> None:
    """A run whose supervisor died before it ended."""
    record.update(status=Status.INTERRUPTED, progress=None, finished_at=utc_now())
    record["duration_seconds"] = seconds_between(record["started_at"], record["finished_at"])
    record["error"] = record.get("error") or "the supervising process died before the run ended"


def end_late(record: RunRecord, ended: dict[str, Any]) -> None:
    """A run whose supervisor saw its end but could not record it (a full disk): the end it
    left in its job's lock, recorded now."""
    record.update(status=ended.get("status") or Status.FAILED, exit_code=ended.get("exit_code"),
                  finished_at=ended.get("finished_at") or utc_now(), progress=None,
                  end_recorded_late=True)
    record["duration_seconds"] = seconds_between(record["started_at"], record["finished_at"])
    late = f"its end was recorded late: {ended.get('reason')}"
    record["error"] = f"{ended['error']}; {late}" if ended.get("error") else late
