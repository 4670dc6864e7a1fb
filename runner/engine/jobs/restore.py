"""`restore`: `restic restore` of one snapshot into a target directory (docs/cli.md). The
arguments after `restic restore` and the parser of its summary; the step itself is built in
`runner.engine.jobs` like every kind's. Which snapshot, target and filters: the job's own
(`snapshot`, `target_dir`, `include`, `args`), fixed before the run by whoever built the job
(`restic-runner restore` checks the target first: runner/cli/restore.py)."""

from __future__ import annotations

from typing import Any

from runner.configuration.config import JobConfig
from runner.engine.jobs.output import ResticOutput

# restic >= 0.17 prints a JSON summary of a restore; 0.14 prints none (no stats then)
RESTORE_STATS = ("files_restored", "bytes_restored", "files_skipped", "bytes_skipped",
                 "total_files", "total_bytes", "seconds_elapsed")


def restore_args(job: JobConfig, dry_run: bool) -> tuple[str, ...]:
    """What follows `restic restore --json`: the snapshot, the target, the filters."""
    includes = [f"--include={path}" for path in job.include]
    return (job.snapshot, f"--target={job.target_dir}", *includes, *job.args,
            *(["--dry-run"] if dry_run else []))


class RestoreOutput(ResticOutput):
    """Files and bytes restored, from restic's summary line (0.17 and later)."""

    def on_summary(self, doc: dict[str, Any]) -> None:
        self.stats = {name: doc[name] for name in RESTORE_STATS
                      if isinstance(doc.get(name), int | float)
                      and not isinstance(doc.get(name), bool)}
