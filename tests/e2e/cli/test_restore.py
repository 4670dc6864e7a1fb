"""`restic-runner restore` and `restic-runner compat restore`: a real restore through the engine
(locked, recorded, masked, `last-restore.json`), its refusals, and no secret in any output."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.envmode import EnvRunner, explain
from tests.support.paths import RUNNER
from tests.support.rest_server import start_rest_server
from tests.support.secrets import CANARY, encodings, secret_file
from tests.support.workspace import Workspace

URL_CANARY = "url-" + CANARY
PASSWORD_CANARY = "pw-" + CANARY


def _backup_config(ws: Workspace) -> None:
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
tags = ["docs"]
""")
    done = ws.cli("run", "nightly")
    assert done.returncode == 0, done.stderr


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_restore_latest_into_a_new_target_is_a_recorded_run(ws: Workspace) -> None:
    _backup_config(ws)
    target = ws.root / "restored"
    done = ws.cli("restore", "latest", "--target", str(target), "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["job"] == "restore" and record["kind"] == "restore"
    assert record["status"] == "succeeded" and record["exit_code"] == 0
    restored = target / str(ws.data).lstrip("/")
    assert _files(restored) == _files(ws.data)
    last = json.loads((ws.state / "last-restore.json").read_text())
    assert last["run_id"] == record["run_id"]
    argv = " ".join(step["name"] for step in record["steps"])
    assert argv == "restore"
    if ws.restic_version == "0.18":  # 0.14 prints no summary of a restore
        assert record["stats"]["bytes_restored"] == sum(len(b) for b in _files(ws.data).values())


def test_include_restores_only_that_path_and_the_compat_flags_work(ws: Workspace) -> None:
    _backup_config(ws)
    snapshot = ws.snapshots()[0]["short_id"]
    target = ws.root / "only-dir1"
    done = ws.cli("compat", "restore", "--id", snapshot, "--target", str(target),
                  "--include", str(ws.data / "dir1"), "--tag", "docs")
    assert done.returncode == 0, done.stdout + done.stderr
    restored = _files(target / str(ws.data).lstrip("/"))
    assert restored and all(name.startswith("dir1/") for name in restored)
    listing = ws.cli("compat", "restore", "--list")
    assert listing.returncode == 0 and snapshot in listing.stdout


def test_an_include_that_matches_nothing_fails_with_exit_3(ws: Workspace) -> None:
    """restic restores nothing and exits 0; restic-backup-helper's /bin/restore said exit 3."""
    _backup_config(ws)
    target = ws.root / "typo"
    done = ws.cli("compat", "restore", "--target", str(target), "--include",
                  "/home/not-in-the-snapshot")
    assert done.returncode == 3, done.stdout + done.stderr
    record = json.loads((ws.state / "last-restore.json").read_text())
    assert record["status"] == "failed" and record["exit_code"] == 3
    assert "no file or directory matched --include" in record["error"]


@pytest.mark.parametrize("where", ["non-empty", "source", "root"])
def test_targets_that_would_overwrite_are_refused(ws: Workspace, where: str) -> None:
    _backup_config(ws)
    target = {"non-empty": ws.root / "full", "source": ws.data, "root": Path("/")}[where]
    if where == "non-empty":
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    before = _files(ws.data)
    done = ws.cli("restore", "latest", "--target", str(target))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pass --force" in done.stderr or "--force" in done.stderr
    assert _files(ws.data) == before
    assert not (ws.state / "last-restore.json").exists()  # nothing ran
    if where == "non-empty":
        assert _files(target) == {"keep.txt": b"mine"}
        forced = ws.cli("restore", "latest", "--target", str(target), "--force")
        assert forced.returncode == 0, forced.stderr
        assert (target / str(ws.data).lstrip("/") / "dir0" / "file000.txt").is_file()


def test_a_restore_while_another_runs_is_skipped_not_reported_as_done(ws: Workspace) -> None:
    _backup_config(ws)
    lock_dir = ws.state / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "restore.lock", "a") as held:  # another restore holds the job's lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = ws.cli("restore", "latest", "--target", str(ws.root / "t"))
    assert done.returncode == 75, done.stdout + done.stderr
    assert "skipped" in done.stdout + done.stderr
    assert not any((ws.root / "t").rglob("*.txt"))


def test_dry_run_writes_nothing(ws: Workspace) -> None:
    _backup_config(ws)
    target = ws.root / "preview"
    done = ws.cli("restore", "latest", "--target", str(target), "--dry-run", "--json")
    if ws.restic_version == "0.18":
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["dry_run"] is True
    else:  # restic 0.14's restore has no --dry-run: said before anything runs
        assert done.returncode == 2
        assert "restic 0.14.0 has no `restore --dry-run`" in done.stderr
    assert not any(target.rglob("*.txt"))


def test_no_secret_in_any_output(ws: Workspace) -> None:
    """A REST repository whose URL carries the canary password, and a canary password file."""
    server = start_rest_server(ws.root / "rest-root", user="backup", password=URL_CANARY)
    try:
        _no_secret_in_any_output(ws, server.url)
    finally:
        server.stop()


def _no_secret_in_any_output(ws: Workspace, canary_repository_url: str) -> None:
    repo_file = secret_file(ws.root / "repo-url", canary_repository_url)
    password = secret_file(ws.root / "canary-password", PASSWORD_CANARY)
    env = ws.restic_env() | {"RESTIC_REPOSITORY": canary_repository_url,
                             "RESTIC_PASSWORD_FILE": str(password)}
    subprocess.run([ws.restic, "init"], env=env, check=True, capture_output=True)
    ws.config_path.write_text(f"""
state_dir = "{ws.state}"
hostname = "test-host"
[restic]
binary = "{ws.restic}"
repository_file = "{repo_file}"
password_file = "{password}"
cache_dir = "{ws.root / 'cache'}"

[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
""")
    outputs = [ws.cli("run", "nightly")]
    outputs.append(ws.cli("restore", "latest", "--target", str(ws.root / "r1"), "--json"))
    outputs.append(ws.cli("restore", "--list"))
    outputs.append(ws.cli("compat", "restore", "--target", str(ws.root / "r2"), "--verbose"))
    outputs.append(ws.cli("compat", "restore", "--list"))
    outputs.append(ws.cli("compat", "restore", "--id", "nope", "--target", str(ws.root / "r3")))
    assert [d.returncode for d in outputs[:5]] == [0] * 5, [d.stderr for d in outputs]
    assert outputs[5].returncode != 0
    assert "rest:http://backup:***@127.0.0.1" in outputs[4].stdout
    texts = [d.stdout.encode() + d.stderr.encode() for d in outputs]
    texts += [p.read_bytes() for p in ws.state.rglob("*") if p.is_file() and "env-secrets"
              not in p.parts]
    for data in texts:
        for canary in (URL_CANARY, PASSWORD_CANARY):
            for form in encodings(canary):
                assert form not in data
    assert _files(ws.root / "r1" / str(ws.data).lstrip("/")) == _files(ws.data)


def test_compat_restore_runs_from_the_shim_path(ws18: Workspace) -> None:
    """The entrypoint passes `/bin/restore` as it is given."""
    _backup_config(ws18)
    done = subprocess.run([RUNNER, "compat", "/bin/restore", "--target",
                           str(ws18.root / "shim"), "--yes"], env=ws18.env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (ws18.root / "shim" / str(ws18.data).lstrip("/") / "dir3").is_dir()


def test_environment_mode_restore_runs_the_helpers_hooks_and_outputs(ws18: Workspace) -> None:
    """restic-backup-helper's variables: /bin/restore's hooks (`post-restore.sh "$rc"`) and its
    outputs where it wrote them (last-restore.json, restore-last.log)."""
    runner = EnvRunner(ws18.root / "env", ws18.restic, {
        "RESTIC_REPOSITORY": str(ws18.repo), "RESTIC_PASSWORD_FILE": str(ws18.password_file),
        "BACKUP_ROOT_DIR": str(ws18.data), "RESTIC_TAG": "helper", "HOSTNAME": "helper-host",
        "RESTIC_CACHE_DIR": str(ws18.root / "cache")})
    runner.hooks.mkdir(parents=True)
    for phase in ("pre", "post"):
        hook = runner.hooks / f"{phase}-restore.sh"
        hook.write_text(f'#!/bin/sh\necho "$# $* $RESTIC_TAG" > "{runner.root}/{phase}.out"\n')
        hook.chmod(0o755)
    done = runner.cli("compat", "backup")
    assert done.returncode == 0, explain(done)
    target = ws18.root / "restore"
    done = runner.cli("compat", "restore", "--target", str(target))
    assert done.returncode == 0, explain(done)
    assert (target / str(ws18.data).lstrip("/") / "dir0" / "file000.txt").is_file()
    assert (runner.root / "pre.out").read_text() == "0  helper\n"
    assert (runner.root / "post.out").read_text() == "1 0 helper\n"
    last = runner.last_run("restore")
    assert last["exit_code"] == 0 and (runner.log / "restore-last.log").is_file()


def test_a_source_behind_a_symlink_or_double_slash_is_refused(ws18: Workspace) -> None:
    """Review L5: the same source named another way, or a directory inside it."""
    _backup_config(ws18)
    link = ws18.root / "to-data"
    link.symlink_to(ws18.data)
    before = _files(ws18.data)
    for target in (str(link), f"/{ws18.data}", str(ws18.data / "restored-here")):
        done = ws18.cli("restore", "latest", "--target", target)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "backup source" in done.stderr and "--force" in done.stderr
    assert _files(ws18.data) == before and not (ws18.data / "restored-here").exists()
    assert not (ws18.state / "last-restore.json").exists()  # nothing ran


def test_an_include_with_dot_dot_is_refused_before_anything_runs(ws18: Workspace) -> None:
    """Review L6: restic restored nothing for it, and the run said it succeeded."""
    _backup_config(ws18)
    done = ws18.cli("compat", "restore", "--target", str(ws18.root / "t"), "--include",
                    "../../../etc")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "'..' is not part of any path in a snapshot" in done.stderr
    assert not (ws18.state / "last-restore.json").exists()
    test = ws18.cli("compat", "restore-test", "--path", "/data/../etc")
    assert test.returncode == 2 and "'..'" in test.stderr


def test_an_include_through_a_symlink_in_the_snapshot_matches_nothing(ws: Workspace) -> None:
    """Review L6: the snapshot holds `link`, a symlink to a directory outside the target. A
    first restore puts the link in the target; a second one (--force) includes a path below
    it: restic restores nothing through a link, so that is exit 3 (the check followed the
    link before and said "matched": whether a file exists outside the target)."""
    outside = ws.root / "outside"
    outside.mkdir()
    (outside / "shadow").write_text("exists outside the target")
    (ws.data / "link").symlink_to(outside)
    _backup_config(ws)
    target = ws.root / "t"
    assert ws.cli("restore", "latest", "--target", str(target)).returncode == 0
    assert (target / str(ws.data).lstrip("/") / "link").is_symlink()
    done = ws.cli("compat", "restore", "--target", str(target), "--force", "--include",
                  f"{ws.data}/link/shadow")
    assert done.returncode == 3, done.stdout + done.stderr
    record = json.loads((ws.state / "last-restore.json").read_text())
    assert record["status"] == "failed" and record["exit_code"] == 3


@pytest.mark.parametrize("argv", [("compat", "restore", "--id=--no-lock", "--target", "{t}"),
                                  ("restore", "--target", "{t}", "--", "--no-lock"),
                                  ("compat", "restore-test", "--id=--no-lock")])
def test_a_snapshot_id_that_restic_would_read_as_a_flag_is_refused(ws18: Workspace,
                                                                    argv: tuple[str, ...]
                                                                    ) -> None:
    """Review I1."""
    _backup_config(ws18)
    done = ws18.cli(*(a.format(t=ws18.root / "t") for a in argv))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "never starts with '-'" in done.stderr
    assert not list(ws18.state.glob("last-restore*.json"))


SERVICE_UID = 65534
OWNED_MTIME = 978307200  # 2001-01-01


def _as_service_user(ws: Workspace, *args: str,
                     caps: str = "+dac_read_search") -> subprocess.CompletedProcess[str]:
    """`restic-runner ARGS` as the image runs it (docker/as-service-user.sh's setpriv): a
    non-root user keeping only `caps` (CAP_DAC_READ_SEARCH), ambient so restic has them too."""
    return subprocess.run(["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}",
                           "--clear-groups", f"--bounding-set=-all,{caps}",
                           "--securebits=+no_setuid_fixup", f"--inh-caps=-all,{caps}",
                           f"--ambient-caps={caps}", RUNNER, *args], env=ws.env(),
                          capture_output=True, text=True, timeout=120, cwd="/")


def _owned_backup(ws: Workspace) -> Path:
    """A backup of data holding a setgid file of uid 1234's (mode 2640); the repository, state
    and cache then belong to the service user (as the image's entrypoint makes them)."""
    owned = ws.data / "dir0" / "owned.txt"
    owned.write_text("uid 1234's")
    os.chown(owned, 1234, 1235)
    owned.chmod(0o2640)  # setgid, group-readable, others nothing
    os.utime(owned, (OWNED_MTIME, OWNED_MTIME))
    _backup_config(ws)
    for top in (ws.repo, ws.state, ws.root / "cache", ws.password_file):
        for path in (top, *top.rglob("*")):
            os.chown(path, SERVICE_UID, SERVICE_UID, follow_symlinks=False)
    return owned.relative_to("/")


@pytest.mark.parametrize("caps, warning, kept", [
    ("", "without CAP_CHOWN: restic cannot give restored files their owners back",
     ("mode", "time", "setgid")),
    (",+chown", "with CAP_CHOWN but without CAP_FOWNER: restic gives restored files their "
                "owners back, then cannot set their modes and times", ("owner",)),
    (",+chown,+fowner", "without CAP_FSETID: restored files lose their setgid bit",
     ("owner", "mode", "time")),
    (",+chown,+fowner,+fsetid", "", ("owner", "mode", "time", "setgid")),
])
def test_a_restore_that_cannot_keep_owners_says_so(ws18: Workspace, caps: str, warning: str,
                                                   kept: tuple[str, ...]) -> None:
    """Review M5: restic restores no owner when it is not root (it ignores the refusal of
    lchown), and with CAP_CHOWN alone no mode or time; the restore says so before it runs,
    and still restores. The last case is what a non-root restore needs to lose nothing."""
    owned = _owned_backup(ws18)
    target = ws18.root / "as-service"
    target.mkdir()
    os.chown(target, SERVICE_UID, SERVICE_UID)
    done = _as_service_user(ws18, "compat", "restore", "--target", str(target),
                            caps=f"+dac_read_search{caps}")
    assert done.returncode == 0, done.stdout + done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("warning: restoring")]
    assert len(said) == bool(warning), done.stderr
    assert not warning or said[0].startswith(f"warning: restoring as uid {SERVICE_UID} {warning}")
    info = (target / owned).stat()
    assert ((info.st_uid, info.st_gid) == (1234, 1235)) is ("owner" in kept)
    assert (info.st_uid == SERVICE_UID) is ("owner" not in kept)  # what the warning said
    assert (info.st_mode & 0o777 == 0o640) is ("mode" in kept)
    assert (int(info.st_mtime) == OWNED_MTIME) is ("time" in kept)
    assert bool(info.st_mode & 0o2000) is ("setgid" in kept)


def test_a_restore_as_root_keeps_owners_and_warns_of_nothing(ws18: Workspace) -> None:
    owned = _owned_backup(ws18)
    as_root = ws18.root / "as-root"
    done = ws18.cli("compat", "restore", "--target", str(as_root))
    assert done.returncode == 0 and "warning: restoring" not in done.stderr, done.stderr
    info = (as_root / owned).stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o2777) == (1234, 1235, 0o2640)


def test_an_owner_the_process_cannot_apply_fails_loudly(ws18: Workspace) -> None:
    """Review M5: --owner without CAP_CHOWN fails (exit 1, one line) before restoring; as root
    it applies."""
    owned = _owned_backup(ws18)
    target = ws18.root / "as-service"
    target.mkdir()
    os.chown(target, SERVICE_UID, SERVICE_UID)
    done = _as_service_user(ws18, "compat", "restore", "--target", str(target), "--owner",
                            "1000:1000")
    assert done.returncode == 1, done.stdout + done.stderr
    assert (f"restic-runner: error: --owner 1000:1000: this process (uid {SERVICE_UID}) cannot "
            "change files' owner: it has no CAP_CHOWN") in done.stderr
    assert "nothing restored" in done.stderr and not any(target.iterdir())
    as_root = ws18.root / "as-root"
    done = ws18.cli("compat", "restore", "--target", str(as_root), "--owner", "1000:1001")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in (as_root, *as_root.rglob("*"))} == {
        (1000, 1001)}
    assert (as_root / owned).read_text() == "uid 1234's"
    bad = ws18.cli("compat", "restore", "--target", str(ws18.root / "x"), "--owner", "www")
    assert bad.returncode == 2 and "expected UID:GID in numbers" in bad.stderr
