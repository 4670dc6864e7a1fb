"""The fields restic-backup-helper 2.14 wrote in `last-<job>.json`, added to the run record at a
run's end beside ours (docs/runs.md, "Fields of restic-backup-helper"): `release`,
`started_epoch`, `finished_epoch`; for a backup `backup_root_dir`, `restic_tag`,
`forget_exit_code`, `snapshot_id`, `files_*`, `dirs_*`, `bytes_added`, `bytes_stored`; for a
replicate job `replicate_jobs_processed` and `replicate_jobs_failed`; for a restore rehearsal
its `/bin/restore-test`'s (`verification`, `canary_*`, `canary_results`, …).

Types as its scripts wrote them: its extras were JSON strings (`"files_new": "3"`), whatever
its docs said; the numbers themselves are in the record's `stats`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner import __version__
from runner.engine.jobs.humantext import format_bytes
from runner.engine.record import RunRecord, parse_rfc3339

if TYPE_CHECKING:
    from pathlib import Path

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


def add_peer_fields(record: RunRecord, job: JobConfig, state_dir: Path | None = None) -> None:
    """Add the peer's fields to an ended record (every write of `last-<job>.json` has them).
    `state_dir`: a restore rehearsal into a directory under it used a scratch directory of
    restic-runner's own (the peer's `target_autotmp`)."""
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
    elif job.kind == "restore-test":
        _restore_test(record, job, stats, state_dir)


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


def _on(flag: bool) -> str:
    return "ON" if flag else "OFF"


def _arg(args: tuple[str, ...], flag: str) -> str | None:
    values = [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]
    return values[-1] if values else None


def _restore_test(record: RunRecord, job: JobConfig, stats: dict[str, Any],
                  state_dir: Path | None) -> None:
    """The fields of the peer's `last-restore-test.json`, from the rehearsal's steps and stats
    (its counts as strings, its `canary_results` as an array)."""
    steps = {s.get("name"): s.get("exit_code") for s in record.get("steps") or []}
    target = job.target_dir
    autotmp = bool(state_dir and target and str(target).startswith(str(state_dir) + "/"))
    cleanup = steps.get("cleanup")
    files = stats.get("files_restored")
    results = stats.get("canaries") if isinstance(stats.get("canaries"), dict) else {}
    record.update({
        "snapshot": job.snapshot, "target": str(target or ""), "target_autotmp": _on(autotmp),
        "keep": _on(job.keep), "verify": _on("--verify" in job.args),
        "min_files": str(job.min_files),
        "min_files_met": "false" if isinstance(files, int) and files < job.min_files
        else "true",
        "files_restored": str(stats.get("files_restored", 0)),
        "bytes_restored": str(stats.get("bytes_restored", 0)),
        "verification": "skipped" if "--dry-run" in job.args
        else str(stats.get("verdict") or "skipped"),
        "canary_total": str(stats.get("canaries_total", 0)),
        "canary_passed": str(stats.get("canaries_passed", 0)),
        "canary_failed": str(stats.get("canaries_failed", 0)),
        "cleanup_status": "not-attempted" if cleanup is None else "cleanup-failed" if cleanup
        else "kept" if job.keep else "cleaned",
        "include_paths_count": str(len(job.include)),
        "canary_results": [_canary(path, job.canaries.get(path, ""), str(result))
                           for path, result in results.items()],
    })
    for key, flag in (("tag_filter", "--tag"), ("host_filter", "--host")):
        value = _arg(job.args, flag)
        if value:
            record[key] = value  # type: ignore[literal-required]


def _canary(path: str, expected: str, result: str) -> dict[str, str]:
    """One entry of the peer's `canary_results`; restic-runner does not keep the hash it found
    (`actual_sha256` is the expected one when it matched, else empty)."""
    message = {"missing": "file not present in restored tree",
               "mismatch": f"expected {expected}, got a different sha256"}.get(result, "")
    return {"path": path, "expected_sha256": expected,
            "actual_sha256": expected if result == "passed" else "", "status": result,
            "message": message}
