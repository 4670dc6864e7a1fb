"""The run record (docs/runs.md): one document for the API, `last-<job>.json` and webhooks."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

SCHEMA = "restic-runner.run/1"
ENDED = frozenset({"succeeded", "warning", "failed", "skipped", "timed_out", "cancelled",
                   "interrupted"})


def new_run_id() -> str:
    """A random (version 4) UUID; `uuid` itself costs more start-up time than a run's SQLite."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utc_now() -> str:
    return rfc3339(datetime.now(UTC))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds_between(started_at: str, finished_at: str) -> float:
    return round((parse_rfc3339(finished_at) - parse_rfc3339(started_at)).total_seconds(), 3)


def new_record(*, job: str, kind: str, hostname: str, repository: str | None,
               trigger: dict[str, Any], version: str, dry_run: bool = False) -> dict[str, Any]:
    """A `running` record. `dry_run`: the tool runs with --dry-run; such a run never counts as
    the job's last success (metrics, healthchecks, `last_success` in `last-<job>.json`)."""
    return {
        "schema": SCHEMA,
        "run_id": new_run_id(),
        "job": job,
        "kind": kind,
        "status": "running",
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
