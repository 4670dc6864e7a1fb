"""Relative paths in a config file mean the file's directory, never the working directory of
whoever started the command (under systemd that is `/`): backup paths, path options in `args`,
rclone's local operands, relative binaries and hooks. Environment mode keeps
restic-backup-helper's meaning: the working directory. The real `restic-runner`, started from
another directory (the converters alone: tests/runner/configuration/test_relative_paths.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import RCLONE_BINARIES, RUNNER
from tests.support.workspace import Workspace, make_data


def _cli(ws: Workspace, cwd: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUNNER, *args], env=env or ws.env(), capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.fixture
def layout(ws: Workspace) -> tuple[Path, Path]:
    """`conf/` holds the config and what it names relatively; `elsewhere/` is the working
    directory, with a decoy `data/` and `excludes.txt` of its own."""
    conf, elsewhere = ws.root / "conf", ws.root / "elsewhere"
    make_data(conf / "data", files=6, size=500)
    (conf / "data" / "skip.me").write_text("excluded by conf/excludes.txt")
    (conf / "excludes.txt").write_text("*.me\n")
    (conf / "bin").mkdir()
    (conf / "bin" / "restic").symlink_to(ws.restic)
    (conf / "hooks").mkdir()
    hook = conf / "hooks" / "pre.sh"
    hook.write_text('#!/bin/sh\necho "pre hook ran in $PWD" > "$1"\n')
    hook.chmod(0o755)
    (elsewhere / "data").mkdir(parents=True)
    (elsewhere / "data" / "decoy.txt").write_text("the working directory's data")
    (elsewhere / "excludes.txt").write_text("*.txt\n")
    (elsewhere / "hooks").mkdir()
    ws.config_path.unlink(missing_ok=True)
    config = conf / "restic-runner.toml"
    config.write_text(f"""
state_dir = "state"
hostname = "test-host"

[restic]
binary = "{ws.restic}"
repository = "{ws.repo}"
password_file = "{ws.password_file}"
cache_dir = "cache"

[jobs.nightly]
kind = "backup"
paths = ["data"]
args = ["--exclude-file", "excludes.txt"]
""")
    ws.extra_env["RESTIC_RUNNER_CONFIG"] = str(config)
    return conf, elsewhere


def _snapshot_files(ws: Workspace) -> tuple[list[str], set[str]]:
    done = subprocess.run([ws.restic, "ls", "latest", "--json"], env=ws.restic_env(),
                          capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    snapshot, nodes = lines[0], lines[1:]
    return snapshot["paths"], {n["path"] for n in nodes if n.get("type") == "file"}


def test_run_from_another_directory_backs_up_the_configs_data(
        ws: Workspace, layout: tuple[Path, Path]) -> None:
    conf, elsewhere = layout
    done = _cli(ws, elsewhere, "run", "nightly", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    record: dict[str, Any] = json.loads(done.stdout)
    assert record["status"] == "succeeded"
    paths, files = _snapshot_files(ws)
    assert paths == [str(conf / "data")]
    assert files == {str(p) for p in (conf / "data").rglob("*.txt")}  # skip.me excluded
    assert not any("decoy" in f for f in files)
    assert (conf / "state" / "history.db").exists() and not (elsewhere / "state").exists()
    assert (conf / "cache").is_dir() and not (elsewhere / "cache").exists()


def test_a_relative_binary_and_hook_are_the_configs(ws: Workspace,
                                                    layout: tuple[Path, Path]) -> None:
    """A program with a `/` is a path (a bare name is looked up on PATH when it runs)."""
    conf, elsewhere = layout
    config = conf / "restic-runner.toml"
    text = config.read_text().replace(f'binary = "{ws.restic}"', 'binary = "bin/restic"')
    config.write_text(text + f'pre_hook = ["hooks/pre.sh", "{ws.root / "hook-ran"}"]\n'
                             'post_hook = ["true"]\n')
    done = _cli(ws, elsewhere, "run", "nightly", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (ws.root / "hook-ran").read_text().strip() == f"pre hook ran in {elsewhere}"
    assert _snapshot_files(ws)[0] == [str(conf / "data")]
    [backup] = json.loads(_cli(ws, elsewhere, "config", "check", "--json").stdout
                          )["jobs"]["nightly"]["steps"]
    assert backup[0] == str(conf / "bin" / "restic")


def test_config_check_shows_the_resolved_paths(ws: Workspace,
                                               layout: tuple[Path, Path]) -> None:
    conf, elsewhere = layout
    done = _cli(ws, elsewhere, "config", "check", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["state_dir"] == str(conf / "state")
    [backup] = summary["jobs"]["nightly"]["steps"]
    assert backup[-2:] == ["--", str(conf / "data")]
    assert backup[backup.index("--exclude-file") + 1] == str(conf / "excludes.txt")
    text = _cli(ws, elsewhere, "config", "check")
    assert text.returncode == 0 and f"state_dir {conf / 'state'}" in text.stdout


@pytest.mark.parametrize("rclone", ["1.60"])
def test_replicate_resolves_local_operands(ws: Workspace, rclone: str) -> None:
    conf, elsewhere = ws.root / "conf", ws.root / "elsewhere"
    source = make_data(conf / "src", files=5, size=400)
    elsewhere.mkdir()
    make_data(elsewhere / "src", files=2, size=100)  # a decoy the working directory offers
    (conf / "filters.txt").write_text("- dir0/**\n")
    ws.config_path.unlink(missing_ok=True)
    config = conf / "restic-runner.toml"
    config.write_text(f"""
state_dir = "{ws.state}"
[rclone]
binary = "{RCLONE_BINARIES[rclone]}"
[jobs.offsite]
kind = "replicate"
args = ["sync", "src", "copy/of-src", "--filter-from", "filters.txt"]
""")
    ws.extra_env["RESTIC_RUNNER_CONFIG"] = str(config)
    done = _cli(ws, elsewhere, "run", "offsite", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    copied = sorted(p.relative_to(conf / "copy" / "of-src")
                    for p in (conf / "copy" / "of-src").rglob("*") if p.is_file())
    assert copied == sorted(p.relative_to(source) for p in source.rglob("*")
                            if p.is_file() and p.parent.name != "dir0")
    assert not (elsewhere / "copy").exists()


def test_environment_mode_keeps_the_working_directory(ws: Workspace) -> None:
    """restic-backup-helper's BACKUP_ROOT_DIR means the working directory (there is no file)."""
    here = ws.root / "here"
    make_data(here / "data", files=3, size=100)
    env = {k: v for k, v in ws.env().items() if k != "RESTIC_RUNNER_CONFIG"}
    env.update(RESTIC_REPOSITORY=str(ws.repo), RESTIC_PASSWORD_FILE=str(ws.password_file),
               RESTIC_RUNNER_STATE_DIR=str(ws.state), BACKUP_ROOT_DIR="data",
               RESTIC_JOB_ARGS="--exclude-file=excludes.txt")
    (here / "excludes.txt").write_text("file000.txt\n")
    done = _cli(ws, here, "config", "check", "--json", env=env)
    assert done.returncode == 0, done.stderr
    [backup] = json.loads(done.stdout)["jobs"]["backup"]["steps"]
    assert backup[-2:] == ["--", str(here / "data")]
    assert f"--exclude-file={here / 'excludes.txt'}" in backup
    run = _cli(ws, here, "run", "backup", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    paths, files = _snapshot_files(ws)
    assert paths == [str(here / "data")] and not any(f.endswith("file000.txt") for f in files)


