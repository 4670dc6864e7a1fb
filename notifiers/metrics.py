"""Prometheus metrics of the runs, computed from the history at scrape time, so every gunicorn
worker answers `/metrics` with the same numbers (and the Pushgateway notifier can push the same
families). Labels are only `hostname` and `job_name`: no label or value carries a URL.

Stats become gauges by an explicit list with the unit in the name, never "anything numeric".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runner.configuration.config import DRY_RUN_KINDS, Config, JobConfig
from runner.engine.history import History
from runner.engine.record import RunRecord, Status, parse_rfc3339

# stat name in the run record -> metric suffix: restic_<kind>_last_<suffix> (the last run's) and
# restic_<kind>_last_success_<suffix> (the last successful run's: a failure does not blank it)
STAT_METRICS: dict[str, dict[str, str]] = {
    "backup": {"files_new": "files_new", "files_changed": "files_changed",
               "files_unmodified": "files_unmodified", "dirs_new": "dirs_new",
               "dirs_changed": "dirs_changed", "dirs_unmodified": "dirs_unmodified",
               "data_added": "data_added_bytes", "data_added_packed": "data_added_packed_bytes",
               "total_files_processed": "files_processed",
               "total_bytes_processed": "processed_bytes",
               # restic-backup-helper's: its inline forget's exit code, only when it ran
               "forget_exit_code": "forget_exit_code"},
    "forget": {"snapshots_kept": "snapshots_kept", "snapshots_removed": "snapshots_removed"},
    "check": {"errors_found": "errors"},
    "replicate": {"transferred_bytes": "transferred_bytes", "transfers": "transfers",
                  "checks": "checks", "deletes": "deletes", "errors": "errors",
                  # restic-backup-helper's: lines of its job file run, and failed
                  "replicate_jobs_processed": "replicate_jobs_processed",
                  "replicate_jobs_failed": "replicate_jobs_failed"},
    "restore-test": {"files_restored": "files_restored", "bytes_restored": "restored_bytes",
                     "canaries_passed": "canaries_passed", "canaries_failed": "canaries_failed"},
}
LABELS = ["hostname", "job_name"]


def _ts(text: str | None) -> float | None:
    return parse_rfc3339(text).timestamp() if text else None


SUCCESS_STAT = "last_success_"  # prefix of a stat of the last successful run


def kind_gauge(kind: str, suffix: str) -> GaugeMetricFamily:
    """The `restic_<kind>_<suffix>` family, named and described the same wherever it is built
    (the Pushgateway refuses a family whose help differs between pushes)."""
    stat = suffix.removeprefix(SUCCESS_STAT)
    if stat != suffix and stat != "timestamp":
        description = f"{stat.replace('_', ' ')} of the last successful {kind} run"
    else:
        description = f"{suffix.replace('_', ' ')} of the last {kind} run"
    return GaugeMetricFamily(f"restic_{kind.replace('-', '_')}_{suffix}",
                             f"restic-runner: {description}", labels=LABELS)


def stat_values(record: RunRecord, prefix: str) -> dict[str, float]:
    """`<prefix><suffix>` -> value of each listed stat the run reported (a number)."""
    values = {}
    for stat, suffix in STAT_METRICS.get(record["kind"], {}).items():
        value = (record.get("stats") or {}).get(stat)
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[f"{prefix}{suffix}"] = float(value)
    return values


def run_values(record: RunRecord | None, last_success: dict[str, Any] | None,
               running: bool) -> dict[str, float]:
    """The `restic_<kind>_*` values of one job (suffix -> value): the last run's, and the last
    successful run's time and stats (kept when later runs fail)."""
    values: dict[str, float] = {"running": 1.0 if running else 0.0}
    if record is not None:
        values.update({
            "last_exit_code": float(record["exit_code"]) if record["exit_code"] is not None
            else -1.0,
            "last_success": 1.0 if record["status"] == Status.SUCCEEDED else 0.0,
            "last_duration_seconds": float(record.get("duration_seconds") or 0.0),
        })
        for key, suffix in (("started_at", "last_started_timestamp"),
                            ("finished_at", "last_finished_timestamp")):
            stamp = _ts(record.get(key))
            if stamp is not None:
                values[suffix] = stamp
        values.update(stat_values(record, "last_"))
    if last_success is not None:
        values.update(stat_values(last_success, SUCCESS_STAT))
        success_at = _ts(last_success.get("finished_at"))
        if success_at is not None:
            values["last_success_timestamp"] = success_at
    return values


def dry_run_values(record: RunRecord | None) -> dict[str, float]:
    """`last_dry_run_*` of a job's newest dry run: shown apart, never as its last run."""
    if record is None:
        return {}
    code = record["exit_code"]
    values = {"last_dry_run_exit_code": float(code) if code is not None else -1.0}
    stamp = _ts(record.get("finished_at"))
    if stamp is not None:
        values["last_dry_run_timestamp"] = stamp
    return values


def can_dry_run(job: JobConfig) -> bool:
    return job.kind in DRY_RUN_KINDS and (job.dry_run or "dry_run" in job.params)


class RunCollector(Collector):
    """The families of some jobs (default: all configured), read from the history."""

    def __init__(self, config: Config, history: History,
                 jobs: tuple[str, ...] | None = None) -> None:
        self.config, self.history = config, history
        self.jobs = tuple(config.jobs) if jobs is None else jobs
        self.whole = jobs is None  # /metrics: the service's own families too, not per job

    def collect(self) -> Iterator[Metric]:
        from notifiers.outbox import Outbox

        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

        def add(family: GaugeMetricFamily | CounterMetricFamily, labels: list[str],
                value: float) -> None:
            families.setdefault(family.name, family).add_metric(labels, value)

        counters = Outbox(self.history.db).job_counters()
        for name in self.jobs:
            job = self.config.jobs[name]
            labels = [self.config.hostname, name]
            # a dry run is never the last run nor a success: it has families of its own
            last = self.history.last_ended(name, exclude=(Status.SKIPPED,), dry_run=False)
            success = self.history.last_success(name)
            running = self.history.running(name)
            values = run_values(last, success, bool(running))
            if can_dry_run(job):
                values.update(dry_run_values(self.history.last_ended(
                    name, exclude=(Status.SKIPPED,), dry_run=True)))
            since = _ts(running[0]["started_at"]) if running else None
            if since is not None:
                values["running_since_timestamp"] = since
            for suffix, value in values.items():
                add(kind_gauge(job.kind, suffix), labels, value)
            pending, failures, given_up = counters.get(name, (0, 0, 0))
            if not job.dry_run:  # a preview never succeeds for real: nothing to be old
                add(GaugeMetricFamily("restic_runner_job_max_age_seconds", "restic-runner: how "
                                      "old the last success may be before the shipped alert "
                                      "fires (job key max_age)", labels=LABELS),
                    labels, job.max_age)
            add(GaugeMetricFamily("restic_runner_notifications_pending", "restic-runner: "
                                  "deliveries of this job's events waiting for a retry",
                                  labels=LABELS), labels, float(pending))
            add(CounterMetricFamily("restic_runner_notification_failures", "restic-runner: "
                                    "failed delivery attempts of this job's events",
                                    labels=LABELS), labels, float(failures))
            add(CounterMetricFamily("restic_runner_notifications_given_up", "restic-runner: "
                                    "deliveries of this job's events abandoned (retry budget "
                                    "spent, permanent error, 410 Gone)", labels=LABELS),
                labels, float(given_up))
        if self.whole:
            store = GaugeMetricFamily("restic_runner_history_bytes", "restic-runner: size of "
                                      "the run history database (history.db: pages x page "
                                      "size)", labels=["hostname"])
            store.add_metric([self.config.hostname], float(self.history.store_bytes()))
            families[store.name] = store
        yield from families.values()


def registry_for(config: Config, history: History,
                 jobs: tuple[str, ...] | None = None) -> CollectorRegistry:
    """A dedicated registry (never the process's default one: no process metrics pushed)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(config, history, jobs))
    return registry


def exposition(config: Config, history: History) -> bytes:
    return generate_latest(registry_for(config, history))
