"""Configuration, parsed in-process: every mistake names the file, the key and what was expected
(the CLI's one-line errors and exit 2: tests/e2e/cli/test_config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.configuration.units import parse_duration
from tests.support.config import config_error, parse_minimal


@pytest.mark.parametrize(("text", "seconds"), [
    ("6h", 21600), ("90m", 5400), ("45s", 45), ("1h30m", 5400), ("2d", 172800), ("120", 120),
    (30, 30), (2.5, 2.5), ("0.5s", 0.5),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "6x", "h", "-5", 0, True, "1h 30m", [1]])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = parse_minimal(tmp_path, {"jobs": {"n": {"kind": "backup", "paths": ["/data"]}}})
    assert config.state_dir == tmp_path / "var"
    assert config.jobs["n"].restic.repository == "/r"
    assert config.jobs["n"].restic.progress_fps == 2.0


def test_a_job_overrides_restic_keys(tmp_path: Path) -> None:
    other = tmp_path / "other-pw"
    other.write_text("y")
    config = parse_minimal(tmp_path, {"jobs": {"n": {
        "kind": "check", "repository": "/elsewhere", "password_file": str(other),
        "auto_unlock": True}}})
    job = config.jobs["n"]
    assert job.restic.repository == "/elsewhere" and job.restic.password_file == other
    assert job.restic.auto_unlock and not config.restic.auto_unlock


@pytest.mark.parametrize(("data", "key", "expected"), [
    ({"jobs": {"n": {"kind": "backup", "paths": ["/d"], "tagz": ["x"]}}},
     "jobs.n.tagz", "unknown key"),
    ({"jobs": {"n": {"kind": "backup", "paths": ["/d"], "timeout": "soon"}}},
     "jobs.n.timeout", "expected a duration"),
    ({"jobs": {"n": {"kind": "backup", "paths": "/d"}}}, "jobs.n.paths", "expected a list"),
    ({"jobs": {"n": {"kind": "backup"}}}, "jobs.n.paths", "needs paths"),
    ({"jobs": {"n": {"kind": "sync"}}}, "jobs.n.kind", 'expected "backup"'),
    ({"jobs": {"n": {"paths": ["/d"]}}}, "jobs.n.kind", "missing"),
    ({"jobs": {"n": {"kind": "forget"}}}, "jobs.n.args", "empty policy is refused"),
    ({"jobs": {"n": {"kind": "forget", "args": ["--prune"]}}}, "jobs.n.args", "policy"),
    ({"jobs": {"n": {"kind": "backup", "paths": ["/d"], "forget_args": ["--dry-run"]}}},
     "jobs.n.forget_args", "--keep-"),
    ({"jobs": {"n": {"kind": "backup", "paths": ["/d"], "tags": ["a,b"]}}},
     "jobs.n.tags", "without commas"),
    ({"jobs": {"n": {"kind": "backup", "paths": ["/d"], "params": ["exclude"]}}},
     "jobs.n.params", "unknown param"),
    ({"jobs": {"n": {"kind": "backup", "paths": ["/d"], "params": ["tags"]}}},
     "jobs.n.allowed_tags", "required with params"),
    ({"jobs": {"n": {"kind": "backup", "paths": ["/d"], "allowed_tags": ["weekly"]}}},
     "jobs.n.allowed_tags", "no effect without"),
    ({"jobs": {"n": {"kind": "backup", "paths": ["/d"], "params": ["tags"],
                     "allowed_tags": ["a b"]}}}, "jobs.n.allowed_tags", "tags matching"),
    ({"jobs": {"n": {"kind": "check", "password_file": "/no/such/file"}}},
     "jobs.n.password_file", "does not exist"),
    ({"jobs": {"n": {"kind": "backup", "paths": ["/d"], "hook_env": ["AWS_KEY"]}}},
     "jobs.n.hook_env", "not a secret this job knows"),
    ({"jobs": {"n": {"kind": "replicate"}}}, "jobs.n.args", "rclone arguments"),
    ({"jobs": {"n": {"kind": "replicate", "args": ["sync", "a", "b"], "paths": ["/x"]}}},
     "jobs.n.paths", "unknown key"),
    ({"jobs": {"bad name!": {"kind": "check"}}}, "jobs.bad name!", "job names"),
    ({"restic": {"repository": "/r"}, "jobs": {"n": {"kind": "check"}}},
     "jobs.n.password_file", "no password"),
    ({"jobs": {"n": {"kind": "check", "keep_logs": 0}}}, "jobs.n.keep_logs", "positive"),
    ({"colour": "blue"}, "colour", "unknown key"),
    ({"restic": {"repository": "/r", "pasword_file": "/x"}}, "restic.pasword_file", "unknown key"),
    ({"rclone": {"conf": "/x"}}, "rclone.conf", "unknown key"),
    ({"restic": {"repository": "/r", "password": "a", "password_file": "/x"}},
     "restic.password_file", "not both"),
    ({"restic": {"repository": "/r", "auto_unlock": "yes"}}, "restic.auto_unlock", "true or false"),
    ({"jobs": {"n": {"kind": "check", "env_files": {"AWS": "/nope"}}}},
     "jobs.n.env_files.AWS", "does not exist"),
])
def test_config_errors_name_the_key(tmp_path: Path, data: dict, key: str, expected: str) -> None:
    err = config_error(tmp_path, data)
    assert err.key == key
    assert expected in err.problem
    assert str(err).startswith(f"{tmp_path / 'restic-runner.toml'}: {key}: ")




def test_a_replicate_job_may_give_job_file_lines(tmp_path: Path) -> None:
    config = parse_minimal(tmp_path, {"jobs": {"r": {
        "kind": "replicate", "args": ["--fast-list"],
        "lines": ["# a comment", "src;remote:dst;sync;--checksum", "/a;/b"]}}})
    lines = config.jobs["r"].replicate_lines
    assert [(x.number, x.mode, x.source, x.destination, x.args) for x in lines] == [
        (2, "sync", str(tmp_path / "src"), "remote:dst", ("--fast-list", "--checksum")),
        (3, "bisync", "/a", "/b", ("--fast-list",))]
    error = config_error(tmp_path, {"jobs": {"r": {"kind": "replicate",
                                                   "lines": ["/a;/b;mirror"]}}})
    assert error.key == "jobs.r.lines" and "invalid replicate mode 'mirror'" in error.problem


def test_hook_env_star_means_the_whole_environment(tmp_path: Path) -> None:
    config = parse_minimal(tmp_path, {"jobs": {"n": {"kind": "check", "hook_env": ["*"]}}})
    assert config.jobs["n"].hook_env == ("*",)
    error = config_error(tmp_path, {"jobs": {"n": {"kind": "check",
                                                   "hook_env": ["*", "RESTIC_PASSWORD"]}}})
    assert error.key == "jobs.n.hook_env"


def test_compat_log_dir(tmp_path: Path) -> None:
    assert parse_minimal(tmp_path, {}).compat_log_dir is None
    config = parse_minimal(tmp_path, {"compat_log_dir": "var-log"})
    assert config.compat_log_dir == tmp_path / "var-log"


def test_backup_paths_may_be_in_args(tmp_path: Path) -> None:
    config = parse_minimal(tmp_path, {"jobs": {"n": {"kind": "backup", "args": ["/srv"]}}})
    assert config.jobs["n"].args == ("/srv",)
    assert config_error(tmp_path, {"jobs": {"n": {"kind": "backup",
                                                  "args": ["--one-file-system"]}}}
                        ).key == "jobs.n.paths"
