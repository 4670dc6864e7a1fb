"""The built container image under podman (`make image-test`, scripts/image-test.sh, sets
RESTIC_RUNNER_IMAGE and RESTIC_RUNNER_PODMAN): running podman, containers started and stopped,
their logs, and restic on the host on the repositories they wrote."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import ROOT

IMAGE = os.environ.get("RESTIC_RUNNER_IMAGE", "")
PODMAN = shlex.split(os.environ.get("RESTIC_RUNNER_PODMAN", "podman"))
SERVICE_UID = 10001  # the image's service user
HOST_RESTIC = ROOT / ".tools" / "restic-0.18" / "restic"  # the image ships 0.18 too
# what runc on these machines needs (docs/environment.md)
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]


def podman(*args: str, check: bool = True, timeout: float = 120,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stdout}\n{done.stderr}")
    return done


def logs(name: str) -> str:
    done = podman("logs", name, check=False)
    return done.stdout + done.stderr


def exit_code(name: str) -> int:
    return int(podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip())


def running(name: str) -> bool:
    done = podman("inspect", "--format", "{{.State.Running}}", name, check=False)
    return done.stdout.strip() == "true"


def wait_for_log(name: str, text: str, timeout: float = 90) -> str:
    """The container's log once it contains `text`; fails with the log if it stops or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = logs(name)
        if text in out:
            return out
        if not running(name):
            raise AssertionError(f"{name} stopped (exit {exit_code(name)}) before {text!r}:\n{out}")
        time.sleep(0.3)
    raise AssertionError(f"{name}: no {text!r} in {timeout}s:\n{logs(name)}")


@dataclass(frozen=True)
class HostRestic:
    """restic on the host, on a repository a container wrote."""

    repository: Path
    password: str
    cache: Path

    def __call__(self, *args: str) -> str:
        env = {"PATH": os.environ["PATH"], "HOME": str(self.cache),
               "RESTIC_REPOSITORY": str(self.repository), "RESTIC_PASSWORD": self.password,
               "RESTIC_CACHE_DIR": str(self.cache)}
        done = subprocess.run([HOST_RESTIC, *args], env=env, capture_output=True, text=True,
                              check=True, timeout=120)
        return done.stdout
