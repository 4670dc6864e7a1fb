"""`restic-runner snapshots`: the snapshots of a job's repository, masked."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from runner.configuration.config import Config, JobConfig
from runner.engine.childenv import resolve_environment
from runner.errors import UserError
from security.masking import redact_text


class SnapshotsFailed(UserError):
    """restic could not list the snapshots (exit 1: the repository, not the input)."""

    exit_code = 1


def restic_job(config: Config, name: str | None) -> JobConfig:
    """The named job, or the first restic job when none is named."""
    if name:
        job = config.job(name)
        if not job.uses_restic:
            raise UserError(f"job {name} is a {job.kind} job: it has no restic repository")
        return job
    for job in config.jobs.values():
        if job.uses_restic:
            return job
    raise UserError("no restic job is configured")


def list_snapshots(job: JobConfig, timeout: float = 300) -> list[dict[str, Any]]:
    """`restic snapshots --json`, newest first; every string in it masked."""
    tool = resolve_environment(job)
    argv = [job.restic.binary, "snapshots", "--json", "--no-lock"]
    if job.restic.cacert:
        argv += ["--cacert", str(job.restic.cacert)]
    try:
        done = subprocess.run(argv, env=tool.env, capture_output=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SnapshotsFailed(redact_text(f"restic snapshots could not run: {exc}")) from None
    if done.returncode != 0:
        lines = redact_text(done.stderr.decode("utf-8", "replace")).strip().splitlines()
        raise SnapshotsFailed(f"restic snapshots exited {done.returncode}: "
                              f"{lines[-1] if lines else ''}")
    text = redact_text(done.stdout.decode("utf-8", "replace"))
    snapshots = json.loads(text.splitlines()[0] if text.strip() else "[]") or []
    return sorted(snapshots, key=lambda s: s.get("time", ""), reverse=True)


def snapshots_table(snapshots: list[dict[str, Any]]) -> str:
    rows = [("ID", "TIME", "HOST", "TAGS", "PATHS")]
    for s in snapshots:
        rows.append((s.get("short_id") or s.get("id", "")[:8], s.get("time", "")[:19],
                     s.get("hostname", ""), ",".join(s.get("tags") or []),
                     ",".join(s.get("paths") or [])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)
