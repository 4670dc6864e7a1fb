"""Shared fixtures: real restic (0.14 from Debian 12, 0.18 from Debian 13), real rclone, real
repositories in temporary directories, and the real `restic-runner` command line."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RUNNER = str(VENV_BIN / "restic-runner")
# scripts/bootstrap.sh puts both here: a link to the system's restic when it is that version,
# else the binary from the Debian release that ships it (12: 0.14, 13: 0.18).
RESTIC_BINARIES = {
    "0.14": ROOT / ".tools" / "restic-0.14" / "restic",
    "0.18": ROOT / ".tools" / "restic-0.18" / "restic",
}
RCLONE_BINARIES = {
    "1.60": Path("/usr/bin/rclone"),
    "1.75": VENV_BIN / "rclone",
}
# A canary with every character that has broken masking before: / @ : % space, non-ASCII.
CANARY = "pä/ss@w:rd%20 ünï-🔑"


def _version_of(binary: Path) -> str:
    out = subprocess.run([binary, "version"], capture_output=True, text=True, check=True).stdout
    return out.split()[1].lstrip("v")


@pytest.fixture(scope="session", params=sorted(RESTIC_BINARIES))
def restic_version(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def restic_bin(restic_version: str) -> Path:
    binary = RESTIC_BINARIES[restic_version]
    if not binary.exists():
        pytest.fail(f"restic {restic_version} missing at {binary}: run `make test` "
                    "(scripts/bootstrap.sh installs both versions)")
    assert _version_of(binary).startswith(restic_version), f"{binary} is not {restic_version}"
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


@pytest.fixture(scope="session")
def repo_template(restic_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_template(restic_bin, tmp_path_factory.mktemp(f"template-{restic_bin.parent.name}"))


def make_data(root: Path, files: int = 20, size: int = 2000) -> Path:
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


def make_workspace(tmp_path: Path, restic: Path, version: str, template: Path) -> Workspace:
    repo = tmp_path / "repo"
    shutil.copytree(template / "repo", repo)
    password = tmp_path / "password"
    shutil.copy(template / "password", password)
    password.chmod(0o600)
    return Workspace(root=tmp_path, restic=restic, restic_version=version, repo=repo,
                     password_file=password, data=make_data(tmp_path / "data"),
                     state=tmp_path / "state")


@pytest.fixture
def ws(tmp_path: Path, restic_bin: Path, restic_version: str, repo_template: Path) -> Workspace:
    return make_workspace(tmp_path, restic_bin, restic_version, repo_template)


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, the /proc/<pid>/stat fields after the command name: state, ppid, pgid, ...) of
    every process; one that ends while we read is skipped."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            yield int(entry.name), fields


def pids_of_group_members(pgid: int) -> list[int]:
    return [pid for pid, fields in proc_stats() if int(fields[2]) == pgid and fields[0] != "Z"]


def children_of(pid: int) -> set[int]:
    return {child for child, fields in proc_stats() if int(fields[1]) == pid}


def processes_with_cmdline(needle: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if needle.encode() in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something true (returned), or fail after `timeout`."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def start_serve(env: dict[str, str], cwd: Path, url: str, log: Path, *,
                own_session: bool = False, timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """`restic-runner serve` (output appended to `log`), once its `/healthz` answers at `url`.
    `own_session`: a session of its own, so `stop_process` can kill all it started."""
    import urllib.request

    with open(log, "ab") as out:
        process = subprocess.Popen([RUNNER, "serve"], env=env, stdout=out, stderr=out, cwd=cwd,
                                   start_new_session=own_session)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_until(up, timeout=timeout, interval=0.1)
    except AssertionError:
        stop_process(process)
        raise AssertionError(f"serve did not start:\n{log.read_text()}") from None
    return process


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM (`serve` cancels its running jobs gracefully), then SIGKILL: to its whole session
    when it leads one."""
    import signal

    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if os.getsid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()


@pytest.fixture
def wait_for() -> Iterator[Any]:
    yield wait_until


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
