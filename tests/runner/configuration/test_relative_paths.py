"""Relative paths in a config file mean the file's directory: the converters of path options in
restic's `args` and of rclone's local operands (the whole behaviour, runs started from another
directory: tests/e2e/cli/test_relative_paths.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.configuration.tables import as_rclone_args, as_restic_args

BASE = Path("/etc/rr")


@pytest.mark.parametrize(("args", "expected"), [
    (["sync", "src", "remote:dst"], ["sync", "/etc/rr/src", "remote:dst"]),
    (["copy", "./a:b", ":s3:bucket/x", "/abs"], ["copy", "/etc/rr/a:b", ":s3:bucket/x", "/abs"]),
    # options end the operands: a value such as "4" is never taken for a path
    (["sync", "a", "b", "--transfers", "4", "--exclude-from", "ex", "--backup-dir=old"],
     ["sync", "/etc/rr/a", "/etc/rr/b", "--transfers", "4", "--exclude-from", "/etc/rr/ex",
      "--backup-dir=/etc/rr/old"]),
    (["--transfers", "4", "sync", "a", "b"], ["--transfers", "4", "sync", "a", "b"]),
    (["sync", "a", "r:b", "--backup-dir", "r:old"],
     ["sync", "/etc/rr/a", "r:b", "--backup-dir", "r:old"]),
])
def test_rclone_arguments(args: list[str], expected: list[str]) -> None:
    assert list(as_rclone_args(BASE)(args)) == expected


def test_restic_arguments() -> None:
    args = ["--exclude-file=ex", "--files-from", "list", "--exclude", "*.tmp",
            "--exclude-if-present", ".nobackup", "--iexclude-file", "~/ex", "--one-file-system"]
    assert list(as_restic_args(BASE)(args)) == [
        "--exclude-file=/etc/rr/ex", "--files-from", "/etc/rr/list", "--exclude", "*.tmp",
        "--exclude-if-present", ".nobackup", "--iexclude-file",
        os.path.expanduser("~/ex"), "--one-file-system"]
