"""Configuration: every mistake is one line naming the file, the key and what was expected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.configuration.config import parse_config
from runner.configuration.units import parse_duration
from runner.errors import ConfigError
from tests.conftest import Workspace


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


def _parse(tmp_path: Path, data: dict) -> object:
    secret = tmp_path / "pw"
    secret.write_text("x")
    secret.chmod(0o600)
    base = {"state_dir": "var", "restic": {"repository": "/r", "password_file": str(secret)}}
    base.update(data)
    return parse_config(base, tmp_path / "restic-runner.toml")


def _error(tmp_path: Path, data: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _parse(tmp_path, data)
    return info.value


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = _parse(tmp_path, {"jobs": {"n": {"kind": "backup", "paths": ["/data"]}}})
    assert config.state_dir == tmp_path / "var"
    assert config.jobs["n"].restic.repository == "/r"
    assert config.jobs["n"].restic.progress_fps == 2.0


def test_a_job_overrides_restic_keys(tmp_path: Path) -> None:
    other = tmp_path / "other-pw"
    other.write_text("y")
    config = _parse(tmp_path, {"jobs": {"n": {
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
    ({"jobs": {"n": {"kind": "backup", "paths": ["/d"], "tags": ["bad tag"]}}},
     "jobs.n.tags", "tags matching"),
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
    err = _error(tmp_path, data)
    assert err.key == key
    assert expected in err.problem
    assert str(err).startswith(f"{tmp_path / 'restic-runner.toml'}: {key}: ")


def test_cli_reports_config_errors_in_one_line_with_exit_2(ws: Workspace) -> None:
    ws.write_config('[jobs.n]\nkind = "backup"\npaths = ["/d"]\ntimeout = "soon"\n')
    for args in (("config", "check"), ("run", "n"), ("status",)):
        done = ws.cli(*args)
        assert done.returncode == 2, args
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(f"restic-runner: error: {ws.config_path}: jobs.n.timeout: "
                                   "expected a duration")


def test_cli_config_errors_invalid_toml_and_missing_file(ws: Workspace) -> None:
    ws.config_path.write_text("state_dir = \n")
    done = ws.cli("config", "check")
    assert done.returncode == 2 and "not valid TOML" in done.stderr
    done = ws.cli("--config", str(ws.root / "nope.toml"), "config", "check")
    assert done.returncode == 2 and "nope.toml: file does not exist" in done.stderr
    done = ws.cli("run", "x", "--config", str(ws.root / "nope.toml"))
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_config_check_json(ws: Workspace) -> None:
    ws.write_config(f'[jobs.n]\nkind = "backup"\npaths = ["{ws.data}"]\ntags = ["a"]\n')
    done = ws.cli("config", "check", "--json", check=True)
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["jobs"]["n"]["steps"][0][:5] == [str(ws.restic), "backup", "--json",
                                                   "--host=test-host", "--tag=a"]
    # a --host of the job's own wins over the config's hostname
    ws.write_config(f'[jobs.n]\nkind = "backup"\npaths = ["{ws.data}"]\nargs = ["--host", "x"]\n')
    report = json.loads(ws.cli("config", "check", "--json", check=True).stdout)
    assert report["jobs"]["n"]["steps"][0][2:6] == ["--json", "--host", "x", "--"]
    ws.write_config('[jobs.n]\nkind = "bogus"\n')
    done = ws.cli("config", "check", "--json")
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["error"]["key"] == "jobs.n.kind"


def test_unknown_job_is_a_usage_error(ws: Workspace) -> None:
    ws.write_config(f'[jobs.n]\nkind = "backup"\npaths = ["{ws.data}"]\n')
    done = ws.cli("run", "other")
    assert done.returncode == 2 and "jobs.other: no such job (configured: n)" in done.stderr


def test_world_readable_secret_file_stops_run(ws: Workspace) -> None:
    ws.password_file.chmod(0o644)
    ws.write_config(f'[jobs.n]\nkind = "backup"\npaths = ["{ws.data}"]\n')
    done = ws.cli("run", "n")
    assert done.returncode == 2
    assert "readable by every local user" in done.stderr
    assert not (ws.state / "last-n.json").exists()  # nothing ran
    ws.password_file.chmod(0o640)  # group-readable is allowed (Kubernetes fsGroup)
    assert ws.cli("run", "n").returncode == 0
