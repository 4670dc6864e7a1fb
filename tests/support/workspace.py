"""A test's world on disk: real restic repositories (initialised once per session as templates,
copied per test), source data, a password file, and the config `restic-runner` reads."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import RESTIC_BINARIES, RUNNER, version_of


def restic_binary(version: str) -> Path:
    """The restic binary of `version` (fails, never skips, when it is missing or another)."""
    binary = RESTIC_BINARIES[version]
    if not binary.exists():
        pytest.fail(f"restic {version} missing at {binary}: run `make test` "
                    "(scripts/bootstrap.sh installs both versions)")
    assert version_of(binary).startswith(version), f"{binary} is not {version}"
    return binary


def init_template(restic: Path, base: Path) -> Path:
    """An initialised repository and its password under `base` (init costs ~2 s: tests copy
    it instead of running init)."""
    password = base / "password"
    password.write_text("template-password-0\n")
    password.chmod(0o600)
    env = {"PATH": os.environ["PATH"], "HOME": str(base), "RESTIC_REPOSITORY": str(base / "repo"),
           "RESTIC_PASSWORD_FILE": str(password), "RESTIC_CACHE_DIR": str(base / "cache")}
    subprocess.run([restic, "init"], env=env, check=True, capture_output=True)
    return base


def shared_template(factory: pytest.TempPathFactory, restic: Path, name: str) -> Path:
    """`init_template` once per test session: under pytest-xdist the first worker that asks
    makes it in the session's shared temporary directory, the others wait for it and use it
    (tests only copy a template, never change it)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return init_template(restic, factory.mktemp(name))
    shared = factory.getbasetemp().parent  # one per session, seen by every worker
    base = shared / name
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (base / "ready").exists():
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir()
            init_template(restic, base)
            (base / "ready").touch()
    return base


def make_data(root: Path, files: int = 20, size: int = 2000) -> Path:
    """`files` files of `size` bytes (half random) in four directories under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        sub = root / f"dir{i % 4}"
        sub.mkdir(exist_ok=True)
        (sub / f"file{i:03d}.txt").write_bytes(os.urandom(size // 2) + b"x" * (size // 2))
    return root


@dataclass
class Workspace:
    """A test's world: a repository, source data, a password file and a config to write."""

    root: Path
    restic: Path
    restic_version: str
    repo: Path
    password_file: Path
    data: Path
    state: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / "restic-runner.toml"

    def write_config(self, jobs: str, *, restic: str = "", top: str = "") -> Path:
        text = textwrap.dedent(f"""\
            state_dir = "{self.state}"
            hostname = "test-host"
            {textwrap.dedent(top)}
            [restic]
            binary = "{self.restic}"
            repository = "{self.repo}"
            password_file = "{self.password_file}"
            cache_dir = "{self.root / 'cache'}"
            {textwrap.dedent(restic)}
            """) + textwrap.dedent(jobs)
        self.config_path.write_text(text)
        return self.config_path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "RCLONE_"))}
        env["RESTIC_RUNNER_CONFIG"] = str(self.config_path)
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, check: bool | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`restic-runner ARGS` as a process, on this workspace's config."""
        done = subprocess.run([RUNNER, *args], env=self.env(), capture_output=True, text=True,
                              timeout=timeout, cwd=self.root)
        if check and done.returncode != 0:
            raise AssertionError(f"restic-runner {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([RUNNER, *args], env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=self.root)

    def run_json(self, job: str) -> tuple[int, dict[str, Any]]:
        done = self.cli("run", job, "--json")
        return done.returncode, json.loads(done.stdout)

    def restic_env(self) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "HOME": str(self.root),
                "RESTIC_REPOSITORY": str(self.repo),
                "RESTIC_PASSWORD_FILE": str(self.password_file),
                "RESTIC_CACHE_DIR": str(self.root / "cache")}

    def restic_json(self, *args: str) -> Any:
        done = subprocess.run([self.restic, *args, "--json"], env=self.restic_env(),
                              capture_output=True, check=True)
        return json.loads(done.stdout.splitlines()[0])

    def snapshots(self) -> list[dict[str, Any]]:
        return self.restic_json("snapshots")

    def snapshots_by_restic(self, count: int) -> None:
        """`count` snapshots of the data made by restic itself, each with a new file."""
        for i in range(count):
            (self.data / f"extra-{i}.txt").write_text(str(i))
            subprocess.run([self.restic, "backup", "--quiet", "--host=test-host", str(self.data)],
                           env=self.restic_env(), check=True, capture_output=True)

    def run_in_process(self, job: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One run in this process through the engine every caller uses (what the API hands
        its params to), on this workspace's config; its final record."""
        from runner.configuration.load import load_config
        from runner.engine.history import History
        from runner.engine.runs import Engine

        config = load_config(str(self.config_path))
        engine = Engine(config, lambda: History(config.state_dir))
        try:
            return dict(engine.run(job, params=params))
        finally:
            engine.close()


def make_workspace(tmp_path: Path, restic: Path, version: str, template: Path) -> Workspace:
    """A workspace under `tmp_path` with a copy of `template`'s repository."""
    repo = tmp_path / "repo"
    shutil.copytree(template / "repo", repo)
    password = tmp_path / "password"
    shutil.copy(template / "password", password)
    password.chmod(0o600)
    return Workspace(root=tmp_path, restic=restic, restic_version=version, repo=repo,
                     password_file=password, data=make_data(tmp_path / "data"),
                     state=tmp_path / "state")


def job_metrics(ws: Workspace, job: str) -> dict[str, float]:
    """The series of `job` as `/metrics` (and the Pushgateway's end push) would show them, from
    the metrics code the service uses: {family: value}."""
    from notifiers.metrics import exposition
    from runner.configuration.load import load_config
    from runner.engine.history import History

    config = load_config(str(ws.config_path))
    history = History(config.state_dir)
    try:
        text = exposition(config, history).decode()
    finally:
        history.close()
    return {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if f'job_name="{job}"' in line and not line.startswith("#")}
