"""The peer's own scripts (tests.support.peer) and restic-runner in environment mode
(tests.support.envmode) given the same variables, repository and data, each with its outputs
in its own directory: what each wrote, for the side-by-side comparisons."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.envmode import EnvRunner
from tests.support.peer import (
    PeerInstall,
    hook_call,
    install_peer,
    textfile_samples,
    write_dump_hooks,
)
from tests.support.workspace import Workspace

HOSTNAME = "sbs-host"
PHASES = [f"{phase}-{job}" for job in ("backup", "check", "forget", "prune", "replicate")
          for phase in ("pre", "post")]
# a variable of the user's own, as the peer's documented alert hook reads (docs: hooks.md)
USER_VARIABLE = ("SLACK_WEBHOOK_URL", "https://hooks.example.invalid/services/T0/B0/x")


@dataclass
class SideBySide:
    """One repository and its data (a `Workspace`), the peer installed under `root/peer`,
    restic-runner's world under `root/ours`; `variables` are what both are given."""

    ws: Workspace
    peer: PeerInstall
    ours: EnvRunner
    variables: dict[str, str]

    @property
    def ours_dumps(self) -> Path:
        return self.ours.root / "dumps"

    def run_peer(self, command: str, *args: str,
                 **changes: str) -> subprocess.CompletedProcess[str]:
        """The peer's /bin/<command>, as `docker exec` runs it."""
        variables = {**self.variables, "METRICS_DIR": str(self.peer.log / "textfile_collector"),
                     **changes}
        return self.peer.run(command, *args, env=self.peer.env(self.ws.restic, variables))

    def run_ours(self, job: str, **changes: str) -> subprocess.CompletedProcess[str]:
        """`restic-runner run <job>` on the same variables."""
        return self.ours.cli("run", job, **changes)

    def last_run(self, side: str, job: str) -> dict[str, Any]:
        log = self.peer.log if side == "peer" else self.ours.log
        return json.loads((log / f"last-{job}.json").read_text())

    def metrics(self, side: str, job: str) -> dict[str, tuple[dict[str, str], str]]:
        log = self.peer.log if side == "peer" else self.ours.log
        return textfile_samples((log / "textfile_collector" / f"restic_{job}.prom").read_text())

    def hook(self, side: str, phase: str) -> tuple[list[str], dict[str, str]] | None:
        return hook_call(self.peer.dumps if side == "peer" else self.ours_dumps, phase)


def side_by_side(ws: Workspace, smtp_port: int) -> SideBySide:
    """Both sides on `ws`'s repository and data, mail to `mail -s` (peer) and to the SMTP
    server on `smtp_port` (ours), dump hooks for backup, check and replicate on both."""
    peer = install_peer(ws.root / "peer")
    variables = {
        "RESTIC_REPOSITORY": str(ws.repo), "RESTIC_PASSWORD_FILE": str(ws.password_file),
        "RESTIC_TAG": "side-by-side", "BACKUP_ROOT_DIR": str(ws.data), "HOSTNAME": HOSTNAME,
        "RESTIC_FORGET_ARGS": "--keep-last 5", "RESTIC_CACHE_DIR": str(ws.root / "cache"),
        "MAILX_RCPT": "ops@example.invalid", "HOOK_TIMEOUT": "60", "BACKUP_CRON": "0 3 * * *",
        USER_VARIABLE[0]: USER_VARIABLE[1],
    }
    ours = EnvRunner(ws.root / "ours", ws.restic, {
        **variables, "METRICS_DIR": str(ws.root / "ours" / "var-log" / "textfile_collector"),
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port),
        "SMTP_FROM": "restic@example.invalid"})
    pair = SideBySide(ws, peer, ours, variables)
    write_dump_hooks(peer.hooks, peer.dumps, PHASES)
    write_dump_hooks(ours.hooks, pair.ours_dumps, PHASES)
    return pair
