"""A replicate job made of job-file lines (`JobConfig.replicate_lines`), run as
restic-backup-helper's /bin/replicate runs its job file: every line is one rclone call (bisync,
sync or copy), in the file's order, and a failed line does not stop the next. A malformed line
(its `problem`) is not run and counts as failed. A failed bisync is recovered
(runner.engine.jobs.bisyncrecovery); it still counts as a failed line, but a recovered one does
not fail the run. The run's exit code is the first unrecovered failure's (2 for a malformed
line), 0 when there is none (docs/runs.md#replicate-job-files)."""

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from runner.configuration.config import JobConfig, ReplicateLine
from runner.engine.jobs.bisyncrecovery import RunStep, recover
from runner.engine.jobs.rclonecalls import main_step
from runner.engine.process import ProcessOutcome
from security.masking import mask_repository

EXIT_BAD_LINE = 2  # restic-backup-helper's code for a malformed line
ARROWS = {"bisync": "<->", "sync": "->", "copy": "->"}
# the run's totals: rclone's counters summed over every call (not its elapsed time)
SUMMED = ("transferred_bytes", "transfers", "checks", "deletes", "renames", "errors",
          "total_bytes", "total_transfers", "server_side_copies")


class LinesResult(NamedTuple):
    exit_code: int
    error: str | None  # the first unrecovered failure, masked
    stats: dict[str, Any]  # replicate_jobs_processed, replicate_jobs_failed, the totals
    stopped: ProcessOutcome | None = None  # a timeout or cancel stopped the run in this call
    unfinished: tuple[str, ...] = ()  # the calls not run to their end, when stopped


class _Tally:
    def __init__(self) -> None:
        self.processed = self.failed = self.exit_code = 0
        self.error: str | None = None
        self.totals: dict[str, int | float] = {}

    def add_stats(self, stats: Iterable[Mapping[str, Any]]) -> None:
        for one in stats:
            for name in SUMMED:
                if name in one:
                    self.totals[name] = self.totals.get(name, 0) + one[name]

    def fail(self, exit_code: int, error: str) -> None:
        if self.exit_code == 0:
            self.exit_code, self.error = exit_code, error

    def result(self, stopped: ProcessOutcome | None = None,
               unfinished: tuple[str, ...] = ()) -> LinesResult:
        stats = {"replicate_jobs_processed": self.processed,
                 "replicate_jobs_failed": self.failed, **self.totals}
        return LinesResult(self.exit_code, self.error, stats, stopped, unfinished)


def describe(line: ReplicateLine) -> str:
    """`bisync SOURCE <-> DESTINATION`, credentials in the endpoints masked."""
    return (f"{line.mode} {mask_repository(line.source)} {ARROWS.get(line.mode, '->')} "
            f"{mask_repository(line.destination)}")


def run_lines(job: JobConfig, dry_run: bool, run_step: RunStep, note: Callable[[str], None],
              add_step: Callable[[dict[str, Any]], None]) -> LinesResult:
    """Run every line of `job`; `run_step` runs one call under the engine's supervision and
    records it in the run's steps, `add_step` records a line that is not run."""
    tally = _Tally()
    lines = job.replicate_lines
    for index, line in enumerate(lines):
        tally.processed += 1
        n, started = line.number, time.monotonic()
        if line.problem:
            tally.failed += 1
            note(f"line {n} not run: {line.problem}")
            add_step({"name": f"line {n}", "exit_code": EXIT_BAD_LINE, "duration_seconds": 0.0,
                      "line": n})
            tally.fail(EXIT_BAD_LINE, f"line {n}: {line.problem}")
            continue
        note(f"line {n}: {describe(line)}")
        outcome, parser = run_step(main_step(job, line, dry_run))
        tally.add_stats([parser.stats])
        if outcome.stopped:
            return tally.result(outcome, _left(lines[index:], outcome))
        if outcome.exit_code == 0:
            note(f"line {n}: {line.mode} succeeded")
        else:
            tally.failed += 1
            why = f": {parser.error}" if parser.error else ""
            note(f"line {n}: {line.mode} failed (exit {outcome.exit_code})")
            if line.mode != "bisync":
                tally.fail(outcome.exit_code, f"line {n} ({line.mode}) exited "
                                              f"{outcome.exit_code}{why}")
            else:
                recovery = recover(job, line, dry_run, run_step, note)
                tally.add_stats(recovery.stats)
                if recovery.stopped is not None:
                    return tally.result(recovery.stopped, (f"line {n} recovery",
                                                           *_names(lines[index + 1:])))
                if recovery.exit_code != 0:
                    tally.fail(recovery.exit_code, f"line {n} (bisync) exited "
                                                   f"{outcome.exit_code}{why}; recovery failed: "
                                                   f"{recovery.error}")
        note(f"line {n}: finished after {time.monotonic() - started:.1f}s")
    note(f"replicate: {tally.processed} lines processed, {tally.failed} failed")
    return tally.result()


def _names(lines: Iterable[ReplicateLine]) -> tuple[str, ...]:
    return tuple(f"line {line.number} {line.mode}" for line in lines if not line.problem)


def _left(lines: tuple[ReplicateLine, ...], outcome: ProcessOutcome) -> tuple[str, ...]:
    """The calls not run to their end: those after the stopped one, and it unless it exited 0
    (a call that ignored the stop and finished did its work)."""
    rest = _names(lines[1:])
    return rest if outcome.exit_code == 0 else (*_names(lines[:1]), *rest)
