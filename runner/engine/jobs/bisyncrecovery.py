"""Recovering a failed `rclone bisync` as restic-backup-helper does: bisync fails on its first
run and whenever its state (the listings in its work directory) is lost, and then needs a
`--resync`. So after any failed bisync of a job-file line: `rclone copy --update` from the
source to the destination, then back, and when both succeeded `rclone bisync --resync`. Newer
files win on both sides and nothing is deleted; a side that lost files on purpose gets them back
(docs/runs.md#bisync-recovery)."""

from collections.abc import Callable
from typing import NamedTuple

from runner.configuration.config import JobConfig, ReplicateLine
from runner.engine.jobs.output import OutputParser
from runner.engine.jobs.rclonecalls import RESYNC, line_args, rclone_step
from runner.engine.jobs.steps import StepSpec
from runner.engine.process import ProcessOutcome

RunStep = Callable[[StepSpec], tuple[ProcessOutcome, OutputParser]]


class Recovery(NamedTuple):
    exit_code: int  # 0: recovered; else the first failed call's code
    error: str | None  # why it failed, masked
    stats: tuple[dict[str, int | float], ...]  # each call's rclone stats
    stopped: ProcessOutcome | None  # a timeout or cancel stopped a call


def recover(job: JobConfig, line: ReplicateLine, dry_run: bool, run_step: RunStep,
            note: Callable[[str], None]) -> Recovery:
    n = line.number
    note(f"line {n}: recovering the bisync: copy --update both ways, then bisync --resync")
    copy_args = line_args(line, "copy")
    calls = (("to destination", ("copy", line.source, line.destination, "--update", *copy_args)),
             ("to source", ("copy", line.destination, line.source, "--update", *copy_args)))
    codes: list[int] = []
    stats: list[dict[str, int | float]] = []
    error: str | None = None
    for direction, args in calls:
        outcome, parser = run_step(rclone_step(job, f"line {n} recovery copy {direction}", args,
                                               dry_run, line=n))
        stats.append(parser.stats)
        if outcome.stopped:
            return Recovery(outcome.exit_code, None, tuple(stats), outcome)
        codes.append(outcome.exit_code)
        if outcome.exit_code != 0 and error is None:
            error = f"copy {direction} exited {outcome.exit_code}" + _why(parser)
    if error is not None:
        note(f"line {n}: recovery failed: {error}; no resync")
        return Recovery(next(c for c in codes if c), error, tuple(stats), None)
    resync = ("bisync", line.source, line.destination, RESYNC, *line_args(line, "bisync"))
    outcome, parser = run_step(rclone_step(job, f"line {n} recovery resync", resync, dry_run,
                                           line=n))
    stats.append(parser.stats)
    if outcome.stopped:
        return Recovery(outcome.exit_code, None, tuple(stats), outcome)
    if outcome.exit_code != 0:
        error = f"bisync --resync exited {outcome.exit_code}" + _why(parser)
        note(f"line {n}: recovery failed: {error}")
        return Recovery(outcome.exit_code, error, tuple(stats), None)
    note(f"line {n}: recovered (copy to destination, copy to source and resync exited 0)")
    return Recovery(0, None, tuple(stats), None)


def _why(parser: OutputParser) -> str:
    return f": {parser.error}" if parser.error else ""
