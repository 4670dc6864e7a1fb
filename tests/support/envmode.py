"""`restic-runner` as a process in environment mode (no config file: the variables of
restic-backup-helper, docs/migration.md), the way the swapped image runs it, with the peer's
container directories moved under a test's temporary directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.paths import RUNNER


@dataclass
class EnvRunner:
    """The CLI on `variables` (as a compose file's `environment:`), with its state under
    `root/state`, the peer's /var/log at `root/var-log` (`RESTIC_RUNNER_COMPAT_LOG_DIR`, where
    tests.support.compose's `adapt_paths` puts /var/log), its /hooks at `root/hooks`, and
    `restic`'s directory first on PATH."""

    root: Path
    restic: Path
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.root / "var-log"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def hooks(self) -> Path:
        return self.root / "hooks"

    def env(self, **overrides: str) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("RESTIC_", "RCLONE_", "SMTP_", "MAILX_", "WEBHOOK_"))
                     and k not in ("HOSTNAME", "TZ")}
        path = os.pathsep.join([str(self.restic.parent), os.environ.get("PATH", "/usr/bin")])
        return {**inherited, "PATH": path, "HOME": str(self.root), "TZ": "UTC",
                "RESTIC_RUNNER_STATE_DIR": str(self.state),
                "RESTIC_RUNNER_COMPAT_LOG_DIR": str(self.log),
                "RESTIC_RUNNER_HOOKS_DIR": str(self.hooks),
                **self.variables, **overrides}

    def popen(self, *args: str, **overrides: str) -> subprocess.Popen[str]:
        self.log.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen([RUNNER, *args], env=self.env(**overrides), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.root)

    def cli(self, *args: str, timeout: float = 180,
            **overrides: str) -> subprocess.CompletedProcess[str]:
        """`restic-runner ARGS` with no config file (cwd has none, RESTIC_RUNNER_CONFIG unset)."""
        self.log.mkdir(parents=True, exist_ok=True)
        self.hooks.mkdir(parents=True, exist_ok=True)
        return subprocess.run([RUNNER, *args], env=self.env(**overrides), capture_output=True,
                              text=True, timeout=timeout, cwd=self.root)

    def last_run(self, job: str) -> dict[str, Any]:
        """`last-<job>.json` where the peer wrote it (the compat log directory)."""
        return json.loads((self.log / f"last-{job}.json").read_text())


def explain(done: subprocess.CompletedProcess[str]) -> str:
    """A failed command's exit code and output, for an assertion message."""
    return (f"{' '.join(map(str, done.args))} exited {done.returncode}\n"
            f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")


def start_up(runner: EnvRunner, ready: Path, timeout: float = 60) -> str:
    """The container's start-up without a container: `restic-runner schedule` (what the image's
    entrypoint starts; it probes the repository and initialises a missing one, as the peer's
    entry.sh does) until `ready` exists (e.g. the repository's `config`), then SIGTERM.
    Returns its output; raises AssertionError when `ready` never appears."""
    process = runner.popen("schedule")
    deadline = time.monotonic() + timeout
    try:
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
    if not ready.exists():
        raise AssertionError(f"`restic-runner schedule` exited {process.returncode} before "
                             f"{ready} appeared\n--- stdout\n{out[-3000:]}\n--- stderr\n"
                             f"{err[-3000:]}")
    return out + err
