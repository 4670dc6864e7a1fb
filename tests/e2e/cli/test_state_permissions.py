"""What restic-runner creates under `state_dir` is private (directories 0700, files 0600)
whatever the umask; an existing state directory open to others is tightened or refused;
`config check` creates nothing. Real `restic-runner run`, `doctor` and `config check` (the
stores opened in-process: tests/runner/engine/test_state_permissions.py)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import RUNNER
from tests.support.processes import umask
from tests.support.workspace import Workspace

JOBS = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]
"""


def modes(root: Path) -> dict[str, str]:
    """Every path under `root` (itself included) → its type and permission bits."""
    found = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        kind = "dir" if stat.S_ISDIR(info.st_mode) else "file" if stat.S_ISREG(
            info.st_mode) else "other"
        found[str(path.relative_to(root.parent))] = f"{kind} {stat.S_IMODE(info.st_mode):04o}"
    return found


def assert_private(root: Path) -> None:
    found = modes(root)
    wrong = {path: mode for path, mode in found.items()
             if mode not in ("dir 0700", "file 0600")}
    assert not wrong, wrong
    return None


@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_a_run_creates_every_state_path_private_whatever_the_umask(ws: Workspace,
                                                                     mask: int) -> None:
    ws.state = ws.root / "deep" / "state"  # parents made by the runner too
    ws.write_config(JOBS.format(data=ws.data))
    with umask(mask):
        ws.cli("run", "nightly", check=True)
        ws.cli("run", "nightly", check=True)  # the WAL and shm exist by now
    found = modes(ws.state)
    assert {"state/history.db", "state/locks/nightly.lock", "state/last-nightly.json",
            "state/logs/nightly"} <= set(found), found
    assert any(p.endswith(".log") for p in found), found
    assert_private(ws.state)
    assert_private(ws.root / "deep")


@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_doctor_makes_the_state_dir_private_and_config_check_makes_nothing(
        ws: Workspace, mask: int) -> None:
    ws.write_config(JOBS.format(data=ws.data))
    with umask(mask):
        checked = ws.cli("config", "check")
        assert checked.returncode == 0, checked.stderr
        assert not ws.state.exists()
        ws.cli("doctor")
    assert_private(ws.state)


def test_config_check_does_not_create_the_default_state_dir(ws: Workspace) -> None:
    """No `state_dir` key: the default (/var/lib/restic-runner, as root) is chosen without
    being made. In a mount namespace with an empty /var/lib, so the host's stays untouched."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private /var/lib")
    config = ws.root / "no-state-dir.toml"
    config.write_text(f'[restic]\nbinary = "{ws.restic}"\nrepository = "{ws.repo}"\n'
                      f'password_file = "{ws.password_file}"\n')
    env = {k: v for k, v in ws.env().items() if k != "RESTIC_RUNNER_STATE_DIR"}
    script = (f"mount -t tmpfs none /var/lib && {RUNNER} config check --config {config} "
              "&& echo listing: && ls -A /var/lib")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "state_dir /var/lib/restic-runner" in done.stdout
    assert done.stdout.split("listing:\n")[1].strip() == ""


def test_an_existing_state_dir_and_files_open_to_others_are_reported_then_tightened(
        ws: Workspace) -> None:
    ws.write_config(JOBS.format(data=ws.data))
    ws.cli("run", "nightly", check=True)
    ws.state.chmod(0o755)
    (ws.state / "logs").chmod(0o755)
    (ws.state / "history.db").chmod(0o644)
    (ws.state / "last-nightly.json").chmod(0o644)
    report = ws.cli("doctor").stdout
    assert f"state_dir {ws.state} (mode 0755) is open to group or others; run and serve " \
           "tighten it to 0700" in report
    assert "history.db (0644)" in report and "last-nightly.json (0644)" in report
    ws.cli("run", "nightly", check=True)
    assert_private(ws.state)
    assert f"state_dir {ws.state} (mode 0700) is private" in ws.cli("doctor").stdout


def test_a_state_dir_every_user_may_write_that_is_not_ours_is_refused(ws: Workspace) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory to another user")
    ws.write_config(JOBS.format(data=ws.data))
    ws.state.mkdir()
    os.chown(ws.state, 65534, 65534)
    ws.state.chmod(0o777)
    done = ws.cli("run", "nightly")
    assert done.returncode == 2
    assert (f"state_dir: {ws.state} is writable by every local user (mode 0777, owner uid "
            "65534): refused") in done.stderr
    assert list(ws.state.iterdir()) == []
    assert "is writable by every local user; run and serve refuse it" in ws.cli("doctor").stdout


