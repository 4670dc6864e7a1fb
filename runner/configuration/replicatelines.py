"""Replicate job lines, `SOURCE;DESTINATION;MODE;ARGS`, read as restic-backup-helper's
/bin/replicate reads its job file (docs/migration.md): a line that is empty or starts with `#`
is skipped; the fields are split on the first three `;` and kept as written (no trimming); an
empty mode means `bisync`, and the mode is case-insensitive; the arguments are split on
whitespace, without quoting. A malformed line is kept with its `problem`: it is not run and
counts as a failed line, as the peer counts it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

MODES = ("bisync", "sync", "copy")


class ReplicateLine(NamedTuple):
    """One line of a replicate job file: one rclone call (re-exported by
    `runner.configuration.config`)."""

    number: int  # line number in the job file (1-based)
    mode: str  # bisync, sync or copy
    source: str
    destination: str
    args: tuple[str, ...] = ()  # the common REPLICATE_JOB_ARGS, then the line's own
    problem: str = ""  # non-empty: the line is malformed


def parse_line(number: int, line: str, common: tuple[str, ...]) -> ReplicateLine | None:
    """One line (None when it is blank or a comment); `common` goes before its own args."""
    line = line.removesuffix("\r")
    if not line or line.startswith("#"):
        return None
    fields = line.split(";", 3)
    source = fields[0]
    destination = fields[1] if len(fields) > 1 else ""
    mode = (fields[2] if len(fields) > 2 else "") or "bisync"
    own = tuple((fields[3] if len(fields) > 3 else "").split())
    if not source or not destination:
        return ReplicateLine(number, mode.lower(), source, destination, (*common, *own),
                             problem=f"invalid line {number}: expected "
                                     "SOURCE;DESTINATION[;MODE[;ARGS]]")
    if mode.lower() not in MODES:
        return ReplicateLine(number, mode.lower(), source, destination, (*common, *own),
                             problem=f"invalid replicate mode {mode!r} on line {number} "
                                     "(allowed: bisync, sync, copy)")
    return ReplicateLine(number, mode.lower(), source, destination, (*common, *own))


def parse_lines(lines: Iterable[str], common: tuple[str, ...]) -> tuple[ReplicateLine, ...]:
    """Every job line, numbered from 1 as in the file (blank lines and comments count)."""
    parsed = (parse_line(number, line, common) for number, line in enumerate(lines, 1))
    return tuple(p for p in parsed if p is not None)
