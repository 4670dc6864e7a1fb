"""The peer's manual commands (restic-backup-helper 2.14.2: every /bin/<name> its Dockerfile
installs, and the names its entry.sh dispatches) are all `restic-runner compat` commands, and
`compat --list` prints exactly the names the image makes shims for (issue 15, interface B)."""

from __future__ import annotations

import re
import subprocess

from tests.support.paths import RUNNER
from tests.support.peer import PEER_ROOT, peer_commands

# the names of interface B: one shim per name in the image
SHIM_NAMES = {"backup", "check", "forget", "prune", "replicate", "bisync", "unlock", "status",
              "health-summary", "doctor", "cron-list", "notify-test", "config-check",
              "forget-preview", "restore-test", "init-repo", "restore", "rotate_log",
              "snapshot-export", "mount-snapshot", "sources-report", "locked_run"}


def entry_dispatched() -> set[str]:
    """The first arguments the peer's entry.sh handles itself (`if [ "${1:-}" = "name" ]`)."""
    text = (PEER_ROOT / "app" / "entry.sh").read_text()
    return set(re.findall(r'"\$\{1:-\}" = "([\w-]+)"', text))


def test_every_peer_command_is_a_compat_command() -> None:
    done = subprocess.run([RUNNER, "compat", "--list"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    listed = set(done.stdout.split())
    assert listed == SHIM_NAMES, (sorted(listed - SHIM_NAMES), sorted(SHIM_NAMES - listed))
    peers = set(peer_commands()) | entry_dispatched()
    assert peers <= listed, sorted(peers - listed)
