"""The rclone calls of replicate jobs: the argv of one call (the job's binary, the arguments,
`--dry-run`, the flags that make rclone report its stats as JSON lines) and which of a job-file
line's arguments go into which call."""

from collections.abc import Sequence

from runner.configuration.config import JobConfig, ReplicateLine
from runner.engine.jobs.output import RcloneOutput
from runner.engine.jobs.steps import StepSpec

# What makes rclone report its stats as JSON lines (a periodic one gives live progress); a flag
# the job sets itself wins.
RCLONE_STATS_FLAGS = {"--use-json-log": (), "--stats-log-level": ("NOTICE",), "--stats": ("5s",)}
RESYNC = "--resync"
# Flags of `rclone bisync` alone (rclone 1.60's), which `rclone copy` and `rclone sync` refuse:
# the flag -> whether a separate value follows it (`--workdir DIR`; `--workdir=DIR` is one arg).
BISYNC_ONLY = {"--check-access": False, "--check-filename": True, "--check-sync": True,
               "--filters-file": True, "--force": False, "--localtime": False,
               "--no-cleanup": False, "--remove-empty-dirs": False, RESYNC: False,
               "--workdir": True}


def _flag(arg: str) -> str:
    return arg.split("=", 1)[0]


def rclone_step(job: JobConfig, name: str, args: Sequence[str], dry_run: bool,
                line: int | None = None) -> StepSpec:
    """One rclone call: `rclone ARGS [--dry-run] <stats flags the args do not set>`."""
    given = {_flag(a) for a in args if a.startswith("--")}
    flags = [x for flag, value in RCLONE_STATS_FLAGS.items() if flag not in given
             for x in (flag, *value)]
    return StepSpec(name, (job.rclone.binary, *args, *(["--dry-run"] if dry_run else []),
                           *flags), RcloneOutput, line=line)


def line_args(line: ReplicateLine, command: str) -> tuple[str, ...]:
    """A line's arguments (the job's common ones, then its own) for one of its calls. Never
    `--resync`: a routine bisync must not resync by itself, only a recovery does (and adds it).
    No bisync-only flag (with its value) in a `copy` or `sync` call, such as the recovery's
    copies: restic-backup-helper's REPLICATE_BISYNC_CHECK_ACCESS, too, goes to bisync alone."""
    dropped = {RESYNC: False} if command == "bisync" else BISYNC_ONLY
    kept: list[str] = []
    skip_value = False
    for arg in line.args:
        if skip_value:
            skip_value = False
        elif _flag(arg) in dropped:
            skip_value = dropped[_flag(arg)] and "=" not in arg
        else:
            kept.append(arg)
    return tuple(kept)


def main_step(job: JobConfig, line: ReplicateLine, dry_run: bool) -> StepSpec:
    """The call a line asks for: `rclone MODE SOURCE DESTINATION ARGS`."""
    return rclone_step(job, f"line {line.number} {line.mode}",
                       (line.mode, line.source, line.destination, *line_args(line, line.mode)),
                       dry_run, line=line.number)
