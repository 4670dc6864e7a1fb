"""Human and machine views of runs, status and config (everything printed is masked later)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runner.configuration.config import Config
from runner.configuration.units import human_bytes, human_duration
from runner.engine.history import History
from runner.engine.record import RunRecord, Status, parse_rfc3339, rfc3339


def run_details(record: RunRecord) -> str:
    """The interesting numbers of a run, as restic-backup-helper's mail subjects word them."""
    s = record.get("stats") or {}
    parts = ["dry run"] if record.get("dry_run") else []
    if "files_new" in s:
        parts.append(f"{s['files_new']} new, {s.get('files_changed', 0)} changed files")
    if "data_added" in s:
        parts.append(f"{human_bytes(s['data_added'])} added")
    if "snapshot_id" in s:
        parts.append(f"snapshot {s['snapshot_id'][:8]}")
    if "snapshots_removed" in s:
        parts.append(f"{s['snapshots_kept']} kept, {s['snapshots_removed']} removed")
    if "errors_found" in s:
        parts.append(f"{s['errors_found']} errors found")
    if "transferred_bytes" in s:
        parts.append(f"{human_bytes(s['transferred_bytes'])} in {s.get('transfers', 0)} "
                     "transfers")
    for step in record.get("steps", [])[1:]:
        if step["name"] == "forget" and "stats" in step:
            parts.append(f"forget: {step['stats']['snapshots_removed']} removed")
        elif step["exit_code"] != 0:
            parts.append(f"{step['name']} exited {step['exit_code']}")
    return ", ".join(parts)


def _age(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    return round((datetime.now(UTC) - parse_rfc3339(timestamp)).total_seconds(), 1)


def status_report(config: Config, history: History) -> dict[str, Any]:
    from notifiers.outbox import Outbox
    from notifiers.registry import build_targets
    from runner.scheduling.scheduler import next_runs

    upcoming = next_runs(config)
    jobs = []
    for name, job in config.jobs.items():
        last = history.last_ended(name)
        success = history.last_success(name)  # never a dry run
        jobs.append({
            "job": name,
            "kind": job.kind,
            "schedule": job.schedule,
            "next_run": rfc3339(upcoming[name]) if name in upcoming else None,
            "last": None if last is None else {
                key: last.get(key) for key in ("run_id", "status", "exit_code", "started_at",
                                               "finished_at", "duration_seconds", "stats",
                                               "error")
            } | {"age_seconds": _age(last.get("finished_at")),
                 "dry_run": bool(last.get("dry_run"))},
            "last_success_at": (success or {}).get("finished_at"),
            "last_success": _ended_summary(success),
            # a warning (restic exit 3) counts, as for the shipped alert; a skip does not
            "last_failure": _ended_summary(history.last_ended(
                name, exclude=(Status.SUCCEEDED, Status.SKIPPED)), with_error=True),
            "running": [{"run_id": r["run_id"], "started_at": r["started_at"],
                         "progress": r.get("progress")} for r in history.running(name)],
        })
    outbox = Outbox(history.db)
    return {"schema": "restic-runner.status/1", "hostname": config.hostname,
            "state_dir": str(config.state_dir), "jobs": jobs,
            "deliveries_pending": outbox.pending_retries(),
            "targets_stopped": outbox.stopped_targets(build_targets(config))}


def _ended_summary(record: RunRecord | None, *, with_error: bool = False) -> dict[str, Any] | None:
    """When a run ended and how long ago (and, for a failure, its status and error line)."""
    if record is None:
        return None
    summary = {"run_id": record["run_id"], "finished_at": record.get("finished_at"),
               "age_seconds": _age(record.get("finished_at"))}
    if with_error:
        summary |= {"status": record["status"], "exit_code": record.get("exit_code"),
                    "dry_run": bool(record.get("dry_run")), "error": record.get("error")}
    return summary


def status_table(report: dict[str, Any]) -> str:
    """One row per job, then each job's last failure with its error line, then what the
    notifications need from the operator."""
    rows = [("JOB", "KIND", "LAST", "EXIT", "FINISHED", "AGE", "DURATION", "LAST SUCCESS",
             "RUNNING", "NEXT")]
    failures = []
    for job in report["jobs"]:
        last = job["last"] or {}
        running = ", ".join(
            r["run_id"][:8] + (f" {r['progress']['percent_done'] * 100:.0f}%"
                               if (r.get("progress") or {}).get("percent_done") is not None
                               else "")
            for r in job["running"]) or "-"
        age = last.get("age_seconds")
        shown = last.get("status", "never") + (" (dry run)" if last.get("dry_run") else "")
        rows.append((job["job"], job["kind"], shown,
                     str(last.get("exit_code", "-")), last.get("finished_at") or "-",
                     _ago(age), f"{last['duration_seconds']:.1f}s" if last.get(
                         "duration_seconds") is not None else "-",
                     _when(job.get("last_success")) if job.get("last_success") else "never",
                     running, job.get("next_run") or "-"))
        failure = job.get("last_failure")
        if failure:
            what = failure["status"] + (" (dry run)" if failure.get("dry_run") else "")
            failures.append(f"  {job['job']}: {what} (exit {failure.get('exit_code')}) "
                            f"{_when(failure)}: {failure.get('error') or 'no error recorded'}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                      for r in rows)
    if failures:
        table += "\nLast failures:\n" + "\n".join(failures)
    pending = report.get("deliveries_pending")
    if pending:
        table += (f"\n{pending} notification deliveries wait for a retry (the service retries "
                  "them, or the next `run`)")
    for target, reason in (report.get("targets_stopped") or {}).items():
        table += f"\nnotifications to {target} are stopped: {reason}"
    return table


def _ago(seconds: float | None) -> str:
    return human_duration(seconds) if seconds is not None else "-"


def _when(summary: dict[str, Any]) -> str:
    """`<finished_at> (<age> ago)`."""
    return f"{summary.get('finished_at') or '?'} ({_ago(summary.get('age_seconds'))} ago)"


def config_summary(config: Config) -> dict[str, Any]:
    """The resulting configuration, masked, as `config check --json` shows it."""
    from runner.engine.jobs import plan
    from security.masking import mask_repository

    warnings = []
    jobs = {}
    for name, job in config.jobs.items():
        entry: dict[str, Any] = {"kind": job.kind, "timeout_seconds": job.timeout,
                                 "schedule": job.schedule, "params": list(job.params),
                                 "dry_run": job.dry_run,
                                 "steps": [list(s.argv) for s in plan(job)]}
        if job.uses_restic:
            r = job.restic
            entry["repository"] = (mask_repository(r.repository) if r.repository
                                   else f"(from {r.repository_file})")
            entry["password"] = "(inline)" if r.password else f"(from {r.password_file})"
            entry["env_files"] = {k: str(v) for k, v in r.env_files.items()}
            if r.password:
                warnings.append(f"jobs.{name}: password is inline; prefer password_file")
            if r.repository and mask_repository(r.repository) != r.repository:
                warnings.append(f"jobs.{name}: repository carries a password inline; "
                                "prefer repository_file")
        else:
            entry["rclone_config"] = str(job.rclone.config) if job.rclone.config else None
        jobs[name] = entry
    return {"schema": "restic-runner.config-check/1", "ok": True, "file": str(config.path),
            "state_dir": str(config.state_dir), "hostname": config.hostname, "jobs": jobs,
            "notify": notify_summary(config),
            "warnings": sorted(set(warnings)) + list(config.warnings)}


def notify_summary(config: Config) -> dict[str, Any]:
    """Each target with where it points (URLs as `scheme://host/...`) and what it hears."""
    n = config.notify
    return {"targets": {target.target: target.destination() for target in n.targets()},
            "signing": bool(config.signing.key_file),
            "retry": {"initial_seconds": n.retry.initial,
                      "max_interval_seconds": n.retry.max_interval,
                      "give_up_after_seconds": n.retry.give_up_after},
            "cli_wait_seconds": n.cli_wait}

