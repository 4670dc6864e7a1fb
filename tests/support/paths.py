"""Where things are: the repository, the `restic-runner` command, and the real tools the tests
run (restic 0.14 and 0.18, rclone 1.60 and 1.75, Debian's Pushgateway)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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
# The one restic version of the suites whose behaviour does not depend on restic's (the API,
# the notifiers, most faults, load, fuzzing); the engine's behaviour is tested on both.
ONE_RESTIC = "0.18"
PUSHGATEWAY = "/usr/bin/prometheus-pushgateway"


def version_of(binary: Path) -> str:
    """`restic version` / `rclone version`'s number, without the `v`."""
    out = subprocess.run([binary, "version"], capture_output=True, text=True, check=True).stdout
    return out.split()[1].lstrip("v")

# the content of a file outside the state directory that a followed symlink would damage
PRECIOUS = b"root:x:0:0:precious, must survive\n"
