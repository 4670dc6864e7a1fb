"""Who runs what in the image, started as root (issue 15's security review, findings M4, I5, I6,
M5; docs/deployment.md "Users", "The entrypoint", "Restoring ownership"):

- the working directory is / (no planted ./restic-runner.toml), and a configuration file
  another user may write or owns is refused by root;
- `restic-runner` on PATH leaves root as the shims do: a root `exec … restic-runner run` runs
  its hooks as the service user, with CAP_DAC_READ_SEARCH their only capability;
- a restore run by root keeps what restoring owners takes: a root-owned 0600 file comes back
  root-owned 0600, through the peer's `restore` and `restic-runner restore` alike;
- the entrypoint never gives away /, a system directory or a directory that looks shared."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.podman import IMAGE, SERVICE_UID, ULIMITS, podman

ENV_MODE = ["--env", "RESTIC_PASSWORD=pw", "--env", "BACKUP_ROOT_DIR=/data"]


def _host_dir(path: Path, uid: int = 0, mode: int = 0o755) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)
    path.chmod(mode)
    return path


def test_the_working_directory_is_root_s() -> None:
    (info,) = json.loads(podman("image", "inspect", IMAGE).stdout)
    assert info["Config"]["WorkingDir"] == "/"
    done = podman("run", "--rm", *ULIMITS, "--entrypoint", "sh", IMAGE, "-c",
                  "pwd; stat -c '%u %a' .; command -v restic-runner")
    where, owner, mode, program = done.stdout.split()
    assert (where, owner, program) == ("/", "0", "/usr/local/bin/restic-runner"), done.stdout
    assert int(mode, 8) & 0o022 == 0, mode  # only root may write there


HOOK = """#!/bin/sh
echo "hook uid=$(id -u) $(grep ^CapEff /proc/self/status | tr -d '\\t')"
"""
CONFIG = """state_dir = "/tmp/state"
[restic]
repository = "/mnt/restic"
password_file = "/etc/restic-runner/pw"
[jobs.probe]
kind = "check"
pre_hook = ["/etc/restic-runner/hook"]
"""


def _config_dir(root: Path, owner: int) -> Path:
    conf = _host_dir(root / "conf")
    (conf / "restic-runner.toml").write_text(CONFIG)
    (conf / "pw").write_text("pw\n")
    (conf / "pw").chmod(0o600)
    (conf / "hook").write_text(HOOK)
    (conf / "hook").chmod(0o755)
    os.chown(conf / "restic-runner.toml", owner, owner)
    return conf


def test_a_root_exec_of_restic_runner_runs_hooks_as_the_service_user(tmp_path: Path) -> None:
    """M4: `docker exec c restic-runner run JOB` as root; I6: the hook's one capability is
    CAP_DAC_READ_SEARCH (the peer's hooks ran as root with all of root's)."""
    tmp_path.chmod(0o755)
    conf = _config_dir(tmp_path, 0)
    done = podman("run", "--rm", *ULIMITS, "--cap-add", "DAC_READ_SEARCH",
                  "--volume", f"{conf}:/etc/restic-runner:ro", "--entrypoint", "sh", IMAGE,
                  "-c", "restic-runner run probe --json", check=False)
    record = json.loads(done.stdout)
    assert f"hook uid={SERVICE_UID} CapEff:0000000000000004" in record["log_tail"], record


def test_root_refuses_a_configuration_the_service_user_owns(tmp_path: Path) -> None:
    """RESTIC_RUNNER_RUN_AS_ROOT=ON keeps root: a file uid 10001 owns (or could have planted)
    configures no root process; the service user's own process may use it."""
    tmp_path.chmod(0o755)
    conf = _config_dir(tmp_path, SERVICE_UID)
    flags = [*ULIMITS, "--volume", f"{conf}:/etc/restic-runner:ro", IMAGE,
             "restic-runner", "config", "check"]
    as_root = podman("run", "--rm", "--env", "RESTIC_RUNNER_RUN_AS_ROOT=ON", *flags, check=False)
    assert as_root.returncode != 0
    assert f"owned by uid {SERVICE_UID}, neither root nor this process's user (uid 0)" in \
        as_root.stdout + as_root.stderr
    os.chown(conf / "pw", SERVICE_UID, SERVICE_UID)
    as_service = podman("run", "--rm", *flags, check=False)
    assert as_service.returncode == 0, as_service.stdout + as_service.stderr


def test_a_root_restore_puts_owners_and_modes_back(tmp_path: Path) -> None:
    """M5: restic restores owners only with CAP_CHOWN (and modes, times of files it no longer
    owns with CAP_FOWNER); a root restore keeps them, for the restore only."""
    tmp_path.chmod(0o755)
    data = _host_dir(tmp_path / "data")
    secret = data / "root-only"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    other = data / "someone"
    other.write_text("theirs\n")
    os.chown(other, 1234, 4321)
    repo = _host_dir(tmp_path / "repo", SERVICE_UID, 0o700)
    restored = _host_dir(tmp_path / "restored", 0, 0o700)
    script = ("init-repo --yes >/dev/null && backup >/dev/null && "
              "restore --target /restored/peer >/dev/null && "
              "restic-runner restore --target /restored/runner >/dev/null && "
              "echo restored")
    done = podman("run", "--rm", *ULIMITS, "--cap-add", "DAC_READ_SEARCH", *ENV_MODE,
                  "--volume", f"{data}:/data:ro", "--volume", f"{repo}:/mnt/restic",
                  "--volume", f"{restored}:/restored", "--entrypoint", "sh", IMAGE, "-c", script,
                  check=False, timeout=180)
    assert done.stdout.split() == ["restored"], done.stdout + done.stderr
    for how in ("peer", "runner"):
        back = restored / how / "data"
        info = (back / "root-only").stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (0, 0, 0o600), how
        info = (back / "someone").stat()
        assert (info.st_uid, info.st_gid) == (1234, 4321), how
        assert (back / "root-only").read_text() == "root only\n"


def test_the_entrypoint_gives_away_no_system_or_shared_directory(tmp_path: Path) -> None:
    """I5: / and system directories are refused by name; a tree holding another user's file
    looks shared; a tree only root wrote (the peer's) is given, but not what is mounted inside
    it (the peer's compose files mount /var/log/textfile_collector inside /var/log)."""
    tmp_path.chmod(0o755)
    system = _host_dir(tmp_path / "system")
    (system / "file").write_text("x")
    shared = _host_dir(tmp_path / "shared")
    (shared / "mine").write_text("x")
    os.chown(shared / "mine", 1234, 1234)
    outer = _host_dir(tmp_path / "outer")
    inner = _host_dir(tmp_path / "inner")
    (inner / "file").write_text("x")
    ours = _host_dir(tmp_path / "ours", 0, 0o700)
    _host_dir(ours / "data" / "00", 0, 0o700)
    (ours / "data" / "00" / "pack").write_text("x")
    done = podman("run", "--rm", *ULIMITS,
                  "--volume", f"{system}:/srv", "--volume", f"{shared}:/mnt/shared",
                  "--volume", f"{outer}:/mnt/outer", "--volume", f"{inner}:/mnt/outer/inner",
                  "--volume", f"{ours}:/mnt/ours",
                  "--env", "METRICS_DIR=/", "--env", "XDG_CACHE_HOME=/srv",
                  "--env", "RESTIC_RUNNER_COMPAT_LOG_DIR=/etc/x",
                  "--env", "RESTIC_REPOSITORY=local:/mnt/shared",
                  "--env", "TMPDIR=/mnt/outer", "--env", "RESTIC_CACHE_DIR=/mnt/ours",
                  IMAGE, "restic-runner", "--version")
    err = done.stderr
    assert done.stdout.startswith("restic-runner "), done.stdout
    for name in ("/", "/srv", "/etc/x"):
        assert f"not giving {name} to the service user (uid {SERVICE_UID}): a system" in err, err
    assert "not giving local:/mnt/shared" not in err
    assert f"not giving /mnt/shared to the service user (uid {SERVICE_UID}): it looks shared " \
           f"(it holds /mnt/shared/mine (owner uid 1234" in err, err
    for name in ("/mnt/ours", "/mnt/outer"):
        assert f"{name} now belongs to the service user (uid {SERVICE_UID})" in err, err
    for path in (system, system / "file", shared, inner, inner / "file"):
        assert path.stat().st_uid == 0, path
    assert (shared / "mine").stat().st_uid == 1234
    for path in (outer, ours, ours / "data" / "00", ours / "data" / "00" / "pack"):
        assert path.stat().st_uid == SERVICE_UID, path
