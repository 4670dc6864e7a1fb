"""The fields restic-backup-helper 2.14 wrote in `last-<job>.json`, added to the run record at a
run's end beside ours (docs/runs.md, "Fields of restic-backup-helper"): `release`,
`started_epoch`, `finished_epoch`; for a backup `backup_root_dir`, `restic_tag`,
`forget_exit_code`, `snapshot_id`, `files_*`, `dirs_*`, `bytes_added`, `bytes_stored`; for a
replicate job `replicate_jobs_processed` and `replicate_jobs_failed`.

Types as its scripts wrote them: its extras were JSON strings (`"files_new": "3"`), whatever
its docs said; the numbers themselves are in the record's `stats`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner import __version__
from runner.engine.jobs.humantext import format_bytes
from runner.engine.record import RunRecord, parse_rfc3339

if TYPE_CHECKING:
    from runner.configuration.config import JobConfig

# restic-backup-helper's worker names, as its mail subjects write them
KIND_TITLES = {"backup": "Backup", "check": "Check", "forget": "Forget", "prune": "Prune",
               "replicate": "Replicate", "unlock": "Unlock", "restore-test": "Restore-test",
               "restore": "Restore", "notify-test": "Notify test"}
_COUNTS = ("files_new", "files_changed", "files_unmodified", "dirs_new", "dirs_changed",
           "dirs_unmodified")


def kind_title(kind: str) -> str:
    return KIND_TITLES.get(kind, kind.replace("-", " ").capitalize())


def _epoch(stamp: str | None) -> int | None:
    return int(parse_rfc3339(stamp).timestamp()) if stamp else None


def add_peer_fields(record: RunRecord, job: JobConfig) -> None:
    """Add the peer's fields to an ended record (every write of `last-<job>.json` has them)."""
    # restic-runner's version: asking restic its own would start one more process per run
    record["release"] = __version__
    for key, stamp in (("started_epoch", record.get("started_at")),
                       ("finished_epoch", record.get("finished_at"))):
        epoch = _epoch(stamp)
        if epoch is not None:
            record[key] = epoch  # type: ignore[literal-required]
    stats = record.setdefault("stats", {})
    if job.kind == "backup":
        _backup(record, job, stats)
    elif job.kind == "replicate":
        _replicate(record, job, stats)


def _backup(record: RunRecord, job: JobConfig, stats: dict[str, Any]) -> None:
    tags = [*job.tags, *(t for t in (record.get("params") or {}).get("tags", ())
                         if t not in job.tags)]
    record["backup_root_dir"] = " ".join(job.paths)
    record["restic_tag"] = ",".join(tags)
    forget = [s for s in record.get("steps") or [] if s.get("name") == "forget"]
    if forget and isinstance(forget[-1].get("exit_code"), int):
        stats["forget_exit_code"] = forget[-1]["exit_code"]  # for the metrics
        record["forget_exit_code"] = str(forget[-1]["exit_code"])
    if isinstance(stats.get("snapshot_id"), str) and not record.get("dry_run"):
        record["snapshot_id"] = stats["snapshot_id"][:8]
    for key in _COUNTS:
        if isinstance(stats.get(key), int):
            record[key] = str(stats[key])  # type: ignore[literal-required]
    if isinstance(stats.get("data_added"), int | float):
        record["bytes_added"] = format_bytes(stats["data_added"])
    if isinstance(stats.get("data_added_packed"), int | float):
        record["bytes_stored"] = format_bytes(stats["data_added_packed"])


def _replicate(record: RunRecord, job: JobConfig, stats: dict[str, Any]) -> None:
    """From the counts the replicate job keeps (one per line of its job file); a job without
    lines is one rclone call: one job, failed unless it succeeded."""
    processed = stats.get("replicate_jobs_processed")
    failed = stats.get("replicate_jobs_failed")
    if processed is None and not job.replicate_lines and record.get("steps"):
        processed, failed = 1, 0 if record["status"] == "succeeded" else 1
        stats.update(replicate_jobs_processed=processed, replicate_jobs_failed=failed)
    if processed is not None:
        record["replicate_jobs_processed"] = str(processed)
        record["replicate_jobs_failed"] = str(failed or 0)
