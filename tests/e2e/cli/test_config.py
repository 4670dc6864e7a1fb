"""Configuration errors through the real `restic-runner`: one line naming the file, the key and
what was expected, exit 2; `config check --json` (the parser itself:
tests/runner/configuration/test_config.py)."""

from __future__ import annotations

import json

from tests.support.workspace import Workspace


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
    assert ws.snapshots() == []  # nothing ran; the run that could not start is recorded
    last = json.loads((ws.state / "last-n.json").read_text())
    assert (last["status"], last["exit_code"], last["steps"]) == ("failed", 2, [])
    assert "readable by every local user" in last["error"]
    ws.password_file.chmod(0o640)  # group-readable is allowed (Kubernetes fsGroup)
    assert ws.cli("run", "n").returncode == 0
