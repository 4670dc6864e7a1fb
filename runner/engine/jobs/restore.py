"""`restore`: `restic restore` of one snapshot into a target directory (docs/cli.md), then, when
`--include` paths were given, a check that something matched them: restic exits 0 when an
include matches nothing, and restic-backup-helper's /bin/restore failed such a restore with
exit 3 (a path typed as `/home/…` for a snapshot of `/host/home/…`). Which snapshot, target and
filters: the job's own (`snapshot`, `target_dir`, `include`, `args`), fixed before the run by
whoever built the job (`restic-runner restore` checks the target first: runner/cli/restore.py).
The check runs as a step of its own (`python -m runner.engine.jobs.restore included …`)."""

from __future__ import annotations

import os
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from runner.configuration.config import JobConfig
from runner.engine.jobs.output import OutputParser, ResticOutput
from runner.engine.jobs.steps import StepSpec

# restic >= 0.17 prints a JSON summary of a restore; 0.14 prints none (no stats then)
RESTORE_STATS = ("files_restored", "bytes_restored", "files_skipped", "bytes_skipped",
                 "total_files", "total_bytes", "seconds_elapsed")
EXIT_NOTHING_MATCHED = 3  # restic-backup-helper's /bin/restore: an include matched nothing
_GLOB = frozenset("*?[")


def restore_steps(job: JobConfig, dry_run: bool, restic: tuple[str, ...]) -> list[StepSpec]:
    """`restic` is `restic restore --json` with the job's global flags (runner.engine.jobs)."""
    includes = [f"--include={path}" for path in job.include]
    argv = (*restic, job.snapshot, f"--target={job.target_dir}", *includes, *job.args,
            *(["--dry-run"] if dry_run else []))
    steps = [StepSpec("restore", argv, RestoreOutput)]
    if job.include and not dry_run:
        steps.append(StepSpec(
            "include-check", (sys.executable, "-m", "runner.engine.jobs.restore", "included",
                              str(job.target_dir), *job.include),
            OutputParser, needs_success=True))
    return steps


class RestoreOutput(ResticOutput):
    """Files and bytes restored, from restic's summary line (0.17 and later)."""

    def on_summary(self, doc: dict[str, Any]) -> None:
        self.stats = {name: doc[name] for name in RESTORE_STATS
                      if isinstance(doc.get(name), int | float)
                      and not isinstance(doc.get(name), bool)}


def include_problem(include: str) -> str:
    """Why `include` cannot be a path of a snapshot (empty when it can): `..` leaves it."""
    if ".." in include.split("/"):
        return "'..' is not part of any path in a snapshot"
    return ""


def matched(target: Path, include: str) -> bool:
    """Whether anything under `target` matches one `--include` (a path of the snapshot, or
    restic's glob pattern; one without a leading `/` matches at any depth). Only what restic
    restored counts: the walk stays under `target` and never follows a symlink (one restored
    from the snapshot may point anywhere); a `..` matches nothing."""
    if include_problem(include):
        return False
    parts = [part for part in include.split("/") if part not in ("", ".")]
    if not parts:
        return False
    if not include.startswith("/"):
        parts = ["**", *parts]
    return _match(str(target), parts)


def _match(directory: str, parts: list[str]) -> bool:
    """Whether `parts` (names or glob patterns, `**` any depth) match below `directory`,
    descending only into real directories."""
    head, rest = parts[0], parts[1:]
    if head == "**":
        if not rest:
            return bool(_entries(directory))
        return _match(directory, rest) or any(
            _match(entry.path, parts) for entry in _entries(directory)
            if entry.is_dir(follow_symlinks=False))
    for entry in _entries(directory):
        named = entry.name == head or (bool(_GLOB & set(head))
                                       and fnmatchcase(entry.name, head))
        if named and (not rest or (entry.is_dir(follow_symlinks=False)
                                   and _match(entry.path, rest))):
            return True
    return False


def _entries(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as found:
            return list(found)
    except OSError:
        return []


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "included":
        print("usage: python -m runner.engine.jobs.restore included TARGET INCLUDE…",
              file=sys.stderr)
        return 2
    target, includes = Path(argv[1]), argv[2:]
    if any(matched(target, include) for include in includes):
        print(f"restore: the include filters matched what is now under {target}")
        return 0
    print(f"error: no file or directory matched --include {' '.join(includes)}: check the path "
          "as it is stored in the snapshot (restic-runner snapshots, restic ls)",
          file=sys.stderr)
    return EXIT_NOTHING_MATCHED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
