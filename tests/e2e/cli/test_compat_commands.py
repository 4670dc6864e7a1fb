"""`restic-runner compat NAME`: each of restic-backup-helper's /bin commands as a process against
real repositories (docs/compat-commands.md). Restore has its own module (test_restore.py)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.support.envmode import EnvRunner, explain
from tests.support.paths import PRECIOUS, RUNNER
from tests.support.workspace import Workspace

NAMES = ["backup", "check", "forget", "prune", "replicate", "bisync", "unlock", "status",
         "health-summary", "doctor", "cron-list", "notify-test", "config-check",
         "forget-preview", "restore-test", "init-repo", "restore", "rotate_log",
         "snapshot-export", "mount-snapshot", "sources-report", "locked_run"]


def _config(ws: Workspace, extra: str = "") -> None:
    ws.write_config(f"""
[jobs.backup]
kind = "backup"
paths = ["{ws.data}"]
tags = ["docs"]
schedule = "0 3 * * *"

[jobs.check]
kind = "check"

[jobs.forget]
kind = "forget"
args = ["--keep-last", "1"]

[jobs.prune]
kind = "prune"

[jobs.replicate]
kind = "replicate"
args = ["copy", "{ws.data}", "{ws.root / 'replica'}"]
{extra}
""")


def _ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_list_names_every_command_once() -> None:
    done = subprocess.run([RUNNER, "compat", "--list"], capture_output=True, text=True,
                          check=True)
    assert sorted(done.stdout.split()) == sorted(NAMES)


def test_an_unknown_name_exits_2() -> None:
    done = subprocess.run([RUNNER, "compat", "frobnicate"], capture_output=True, text=True)
    assert done.returncode == 2 and "compat --list" in done.stderr


def test_the_job_workers_run_the_configured_jobs(ws: Workspace) -> None:
    _config(ws)
    _ok(ws.cli("compat", "backup"))
    _ok(ws.cli("compat", "/bin/backup"))  # as the entrypoint passes it
    assert len(ws.snapshots()) == 2
    _ok(ws.cli("compat", "forget"))
    assert len(ws.snapshots()) == 1
    for name in ("check", "prune", "unlock"):
        _ok(ws.cli("compat", name))
    _ok(ws.cli("compat", "replicate"))
    assert (ws.root / "replica" / "dir2" / "file002.txt").is_file()
    bisync = _ok(ws.cli("compat", "bisync"))
    assert "deprecated alias of replicate" in bisync.stderr
    for job in ("backup", "forget", "check", "prune", "replicate", "unlock"):
        assert (ws.state / f"last-{job}.json").is_file(), job


def test_a_worker_whose_job_runs_is_skipped_with_exit_0(ws18: Workspace) -> None:
    _config(ws18)
    (ws18.state / "locks").mkdir(parents=True)
    with open(ws18.state / "locks" / "backup.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = ws18.cli("compat", "backup")
    assert done.returncode == 0 and "skipped" in done.stdout + done.stderr
    assert ws18.snapshots() == []


def test_a_worker_without_its_job_says_so(ws18: Workspace) -> None:
    ws18.write_config(f'[jobs.nightly]\nkind = "backup"\npaths = ["{ws18.data}"]\n')
    _ok(ws18.cli("compat", "backup"))  # the one backup job, whatever its name
    done = ws18.cli("compat", "prune")
    assert done.returncode == 1 and "no prune job is configured" in done.stderr


def test_status_health_summary_and_verdicts(ws18: Workspace) -> None:
    _config(ws18, '\n[jobs.broken]\nkind = "check"\nschedule = "0 4 * * *"\n'
                  f'password_file = "{ws18.root / "wrong-pw"}"\n')
    (ws18.root / "wrong-pw").write_text("wrong\n")
    (ws18.root / "wrong-pw").chmod(0o600)
    _ok(ws18.cli("compat", "backup"))
    done = ws18.cli("compat", "status")
    assert done.returncode == 0 and "verdict: WARN" in done.stdout  # broken never ran
    assert ws18.cli("run", "broken").returncode != 0
    failed = ws18.cli("compat", "health-summary", "--json")
    report = json.loads(failed.stdout)
    assert failed.returncode == 1 and report["verdict"] == "FAIL"
    assert any("broken" in f["message"] for f in report["findings"])
    assert ws18.cli("compat", "status", "--bogus").returncode == 2


def test_doctor_config_check_and_cron_list(ws18: Workspace) -> None:
    _config(ws18)
    doctor = _ok(ws18.cli("compat", "doctor"))
    assert "repository" in doctor.stdout
    assert json.loads(_ok(ws18.cli("compat", "doctor", "--json")).stdout)["ok"] is True
    check = _ok(ws18.cli("compat", "config-check"))
    assert "[config-check] OK." in check.stdout
    document = json.loads(_ok(ws18.cli("compat", "config-check", "--json")).stdout)
    assert document["schema"] == "restic-backup-helper.config-check/1"
    assert document["errors"] == 0 and {c["key"] for c in document["checks"]} >= {
        "RESTIC_REPOSITORY", "RESTIC_PASSWORD_FILE", "RESTIC_TAG", "BACKUP_PATHS", "jobs.backup"}
    repository = next(c for c in document["checks"] if c["key"] == "RESTIC_REPOSITORY")
    assert str(ws18.repo) in repository["message"] and repository["status"] == "ok"
    cron = _ok(ws18.cli("compat", "cron-list"))
    assert "0 3 * * *" in cron.stdout and "manual only (restic-runner run check)" in cron.stdout
    ws18.config_path.write_text(ws18.config_path.read_text() + "\n[jobs.bad]\nkind = 'nope'\n")
    bad = ws18.cli("compat", "config-check")
    assert bad.returncode == 1 and "[config-check] ERROR:" in bad.stderr


def test_forget_preview_removes_nothing(ws18: Workspace) -> None:
    _config(ws18)
    ws18.snapshots_by_restic(3)
    done = _ok(ws18.cli("compat", "forget-preview", "--policy", "--keep-last 1",
                        "--repo-wide"))
    assert "would keep 1 and remove 2" in done.stdout
    assert len(ws18.snapshots()) == 3
    record = json.loads((ws18.state / "last-forget-preview.json").read_text())
    assert record["dry_run"] is True
    scoped = _ok(ws18.cli("compat", "forget-preview", "--policy", "--keep-last 1", "--tag",
                          "other"))
    assert "no snapshot matches the filters" in scoped.stdout
    ws18.write_config(f'[jobs.backup]\nkind = "backup"\npaths = ["{ws18.data}"]\n')
    assert ws18.cli("compat", "forget-preview").returncode == 2  # no policy anywhere


def test_unlock_dry_run_lists_and_unlock_removes_stale_locks(ws18: Workspace) -> None:
    _config(ws18)
    lock_id = _stale_lock(ws18)
    dry = _ok(ws18.cli("compat", "unlock", "--dry-run"))
    assert lock_id in dry.stdout and "1 lock(s)" in dry.stdout
    assert len(list((ws18.repo / "locks").iterdir())) == 1
    _ok(ws18.cli("compat", "unlock"))
    assert list((ws18.repo / "locks").iterdir()) == []


def _stale_lock(ws: Workspace) -> str:
    """A lock left by a restic that died holding it: `backup --stdin` waits on its input with
    the lock taken; SIGKILL leaves the lock file behind (its process is gone: stale)."""
    proc = subprocess.Popen([ws.restic, "backup", "--stdin"], env=ws.restic_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    locks = ws.repo / "locks"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # listed by restic: the lock file is whole, not half-written
        listed = subprocess.run([ws.restic, "list", "locks", "--no-lock"], env=ws.restic_env(),
                                capture_output=True, text=True)
        if listed.stdout.strip():
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    found = list(locks.iterdir())
    assert len(found) == 1, "restic took no lock"
    return found[0].name[:8]


def test_init_repo_probes_confirms_and_refuses_an_existing_one(ws18: Workspace,
                                                              tmp_path: Path) -> None:
    _config(ws18)
    fresh = tmp_path / "fresh-repo"
    ws18.config_path.write_text(ws18.config_path.read_text().replace(
        f'repository = "{ws18.repo}"', f'repository = "{fresh}"'))
    dry = _ok(ws18.cli("compat", "init-repo", "--dry-run"))
    assert "missing" in dry.stdout and "planned: restic init" in dry.stdout
    assert not fresh.exists()
    record = json.loads((ws18.state / "last-init-repo.json").read_text())
    assert (record["job"], record["exit_code"], record["dry_run"], record["repo_existed"],
            record["probe_exit_code"], record["confirmed"]) == (
        "init-repo", 0, "ON", "false", "10", "OFF"), record
    unconfirmed = ws18.cli("compat", "init-repo")
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert not fresh.exists()
    _ok(ws18.cli("compat", "init-repo", "--yes"))
    assert (fresh / "config").is_file()
    again = ws18.cli("compat", "init-repo", "--yes")
    assert again.returncode == 3 and "exists" in again.stdout
    record = json.loads((ws18.state / "last-init-repo.json").read_text())
    assert (record["exit_code"], record["dry_run"], record["repo_existed"]) == (3, "OFF", "true")


def test_restore_test_passes_and_fails_on_a_wrong_canary(ws: Workspace) -> None:
    _config(ws)
    _ok(ws.cli("compat", "backup"))
    canary = ws.data / "dir0" / "file000.txt"
    digest = hashlib.sha256(canary.read_bytes()).hexdigest()
    _ok(ws.cli("compat", "restore-test", "--canary", f"{canary}={digest}", "--min-files",
               "20", "--tag", "docs"))
    record = json.loads((ws.state / "last-restore-test.json").read_text())
    assert record["stats"]["canaries_passed"] == 1
    wrong = ws.cli("compat", "restore-test", "--canary", f"{canary}={'0' * 64}")
    assert wrong.returncode == 1 and "mismatch" in wrong.stdout + wrong.stderr
    ws.extra_env["RESTORE_TEST_MIN_FILES"] = "1000"  # the helper's variables give defaults
    floor = ws.cli("compat", "restore-test")
    assert floor.returncode == 1 and "min_files = 1000" in floor.stdout + floor.stderr


def test_restore_test_dry_run_restores_and_verifies_nothing(ws18: Workspace) -> None:
    _config(ws18)
    _ok(ws18.cli("compat", "backup"))
    _ok(ws18.cli("compat", "restore-test", "--dry-run", "--tag", "docs"))
    record = json.loads((ws18.state / "last-restore-test.json").read_text())
    assert record["dry_run"] is True and record["verification"] == "skipped", record
    assert [s["name"] for s in record["steps"]] == ["restore"], record["steps"]
    assert not Path(record["target"]).exists()


def test_notify_test_dry_run_and_missing_targets(ws18: Workspace) -> None:
    _config(ws18, '\n[notify.webhooks.ops]\nurl = "http://127.0.0.1:9/hook"\n')
    dry = _ok(ws18.cli("compat", "notify-test", "--dry-run", "--webhook"))
    assert "webhook:ops: dry-run" in dry.stdout
    record = json.loads((ws18.state / "last-notify-test.json").read_text())
    assert (record["exit_code"], record["dry_run"], record["target_mode"], record["mail_result"],
            record["webhook_result"]) == (0, "ON", "webhook", "skipped", "dry-run"), record
    mail = ws18.cli("compat", "notify-test", "--mail")
    assert mail.returncode == 2 and "no mail" in mail.stderr
    failed = ws18.cli("compat", "notify-test")  # nothing listens on port 9
    assert failed.returncode == 1 and "webhook:ops: failed" in failed.stdout
    record = json.loads((ws18.state / "last-notify-test.json").read_text())
    assert (record["exit_code"], record["webhook_result"], record["webhook_rc"]) == (1, "failed",
                                                                                     "1"), record
    assert record["webhook_url"] == "http://127.0.0.1:9/...", record  # scheme and host only


def test_notify_test_mail_without_an_smtp_server(ws18: Workspace) -> None:
    """MAILX_RCPT with neither SMTP_HOST nor an msmtprc: the helper's mail was configured and
    failed to send; its dry run says dry-run, exit 0."""
    runner = EnvRunner(ws18.root / "env", ws18.restic, {
        "RESTIC_REPOSITORY": str(ws18.repo), "RESTIC_PASSWORD_FILE": str(ws18.password_file),
        "BACKUP_ROOT_DIR": str(ws18.data), "MAILX_RCPT": "ops@example.invalid",
        "RESTIC_RUNNER_MSMTPRC": str(ws18.root / "no-msmtprc")})
    runner.root.mkdir()
    dry = runner.cli("compat", "notify-test", "--mail", "--dry-run")
    assert dry.returncode == 0 and "mail: dry-run" in dry.stdout, explain(dry)
    record = json.loads((runner.log / "last-notify-test.json").read_text())
    assert (record["mail_configured"], record["mail_result"]) == ("ON", "dry-run"), record
    sent = runner.cli("compat", "notify-test")
    assert sent.returncode == 1 and "no SMTP server" in sent.stdout, explain(sent)
    record = json.loads((runner.log / "last-notify-test.json").read_text())
    assert (record["exit_code"], record["mail_result"]) == (1, "failed"), record


def test_sources_report_counts_the_backup_paths(ws18: Workspace) -> None:
    _config(ws18)
    done = _ok(ws18.cli("compat", "sources-report"))
    assert f"source {ws18.data}: directory, readable, 20 file(s), 40000 bytes" in done.stdout
    quick = _ok(ws18.cli("compat", "sources-report", "--no-size", "--source",
                         str(ws18.root / "absent")))
    assert "absent: missing, NOT readable" in quick.stdout and "1 error(s)" in quick.stdout
    record = json.loads((ws18.state / "last-sources-report.json").read_text())
    assert (record["job"], record["exit_code"], record["sources_count"], record["errors_count"],
            record["no_size"]) == ("sources-report", 0, "2", "1", "ON"), record
    assert [s["type"] for s in record["sources"]] == ["directory", "missing"], record


def test_locked_run_runs_the_command_or_skips_with_exit_0(tmp_path: Path) -> None:
    lock = tmp_path / "run" / "job.lock"
    marker = tmp_path / "ran"
    done = subprocess.run([RUNNER, "compat", "locked_run", "job", str(lock), "touch",
                           str(marker)], capture_output=True, text=True)
    assert done.returncode == 0 and marker.exists()
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        skipped = subprocess.run([RUNNER, "compat", "locked_run", "job", str(lock), "false"],
                                 capture_output=True, text=True)
    assert skipped.returncode == 0
    assert f"job skipped: previous run still active (lock {lock})" in skipped.stdout
    failing = subprocess.run([RUNNER, "compat", "locked_run", "job", str(lock), "false"],
                             capture_output=True, text=True)
    assert failing.returncode == 1  # the command's own exit code


@pytest.mark.parametrize("name, instead", [
    ("mount-snapshot", "restic-runner restore --include"),
    ("snapshot-export", "restic-runner restore SNAPSHOT --target DIR"),
])
def test_no_equivalent_says_so_in_one_line(name: str, instead: str) -> None:
    done = subprocess.run([RUNNER, "compat", name, "--any", "flag"], capture_output=True,
                          text=True)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name}: no equivalent in restic-runner")
    assert instead in lines[0]


def test_environment_mode_runs_jobs_that_have_no_schedule(ws18: Workspace) -> None:
    """restic-backup-helper's variables with FORGET_CRON, PRUNE_CRON and CHECK_CRON empty: its
    /bin/forget, /bin/prune and /bin/check still run by hand."""
    runner = EnvRunner(ws18.root / "env", ws18.restic, {
        "RESTIC_REPOSITORY": str(ws18.repo), "RESTIC_PASSWORD_FILE": str(ws18.password_file),
        "BACKUP_ROOT_DIR": str(ws18.data), "RESTIC_TAG": "helper", "HOSTNAME": "helper-host",
        "RESTIC_FORGET_ARGS": "--keep-last 1", "FORGET_CRON": "", "PRUNE_CRON": "",
        "CHECK_CRON": "", "RESTIC_CACHE_DIR": str(ws18.root / "cache")})
    runner.root.mkdir()
    for _ in range(2):
        done = runner.cli("compat", "backup")
        assert done.returncode == 0, explain(done)
    for name in ("check", "forget", "prune"):
        done = runner.cli("compat", name)
        assert done.returncode == 0, explain(done)
    assert len(ws18.snapshots()) == 1


def test_environment_mode_disabled_jobs_in_config_check_status_and_workers(
        ws18: Workspace) -> None:
    """A missing replicate job file disables that job alone: its worker says why (exit 1),
    config-check warns, cron-list and status list it; no backup paths is an error."""
    runner = EnvRunner(ws18.root / "env", ws18.restic, {
        "RESTIC_REPOSITORY": str(ws18.repo), "RESTIC_PASSWORD_FILE": str(ws18.password_file),
        "BACKUP_ROOT_DIR": str(ws18.data), "RESTIC_TAG": "helper",
        "REPLICATE_CRON": "0 1 * * *", "REPLICATE_JOB_FILE": str(ws18.root / "absent.txt"),
        "RESTIC_CACHE_DIR": str(ws18.root / "cache")})
    runner.root.mkdir()
    worker = runner.cli("compat", "replicate")
    assert worker.returncode == 1 and "job replicate is disabled" in worker.stderr
    check = runner.cli("compat", "config-check")
    assert check.returncode == 0, explain(check)
    assert "[config-check] WARN: replicate disabled" in check.stderr
    assert "# replicate: disabled" in runner.cli("compat", "cron-list").stdout
    assert "[INFO] replicate: disabled" in runner.cli("compat", "status").stdout
    no_paths = runner.cli("compat", "config-check", "--json", BACKUP_ROOT_DIR="")
    document = json.loads(no_paths.stdout)
    assert no_paths.returncode == 1 and document["errors"] == 1
    assert runner.cli("compat", "status", BACKUP_ROOT_DIR="").returncode == 1


def test_rotate_log_archives_cron_log_past_its_size(ws18: Workspace) -> None:
    """compat_log_dir's cron.log (where runs append their lines, as the helper's cron did):
    archived and emptied at CRON_LOG_MAX_SIZE, MAX_CRON_LOG_ARCHIVES archives kept."""
    logs = ws18.root / "var-log"
    _config(ws18)
    ws18.config_path.write_text(f'compat_log_dir = "{logs}"\n' + ws18.config_path.read_text())
    _ok(ws18.cli("compat", "backup"))
    cron_log = logs / "cron.log"
    assert cron_log.stat().st_size > 0
    ws18.extra_env.update(CRON_LOG_MAX_SIZE="100000000", MAX_CRON_LOG_ARCHIVES="2")
    assert "nothing to do" in _ok(ws18.cli("compat", "rotate_log")).stdout
    ws18.extra_env["CRON_LOG_MAX_SIZE"] = "1"
    for second in range(3):
        cron_log.write_text(f"line {second}\n")
        _ok(ws18.cli("compat", "rotate_log"))
        assert cron_log.read_bytes() == b""
        time.sleep(1.05)  # archives are named by the second
    archives = sorted(logs.glob("cron_log_*.tar.gz"))
    assert len(archives) == 2
    with tarfile.open(archives[-1]) as tar:
        member = tar.extractfile("cron.log")
        assert member is not None and member.read() == b"line 2\n"
    ws18.extra_env["CRON_LOG_MAX_SIZE"] = "lots"
    bad = ws18.cli("compat", "rotate_log")
    assert bad.returncode == 2 and "CRON_LOG_MAX_SIZE must be a positive integer" in bad.stderr


def _rotate_workspace(ws: Workspace) -> Path:
    logs = ws.root / "var-log"
    logs.mkdir()
    _config(ws)
    ws.config_path.write_text(f'compat_log_dir = "{logs}"\n' + ws.config_path.read_text())
    ws.extra_env.update(CRON_LOG_MAX_SIZE="10", MAX_CRON_LOG_ARCHIVES="1")
    return logs


@pytest.mark.parametrize("planted", ["symlink", "hard link", "fifo"])
def test_rotate_log_refuses_a_cron_log_that_is_not_its_own_file(ws18: Workspace,
                                                                planted: str) -> None:
    """Review M1: whoever can write compat_log_dir plants cron.log as a link to a file of
    root's (or a FIFO); rotate_log archives and empties nothing through it."""
    logs = _rotate_workspace(ws18)
    precious = ws18.root / "precious"
    precious.write_bytes(PRECIOUS * 10)
    cron_log = logs / "cron.log"
    if planted == "symlink":
        cron_log.symlink_to(precious)
    elif planted == "hard link":
        cron_log.hardlink_to(precious)
    else:
        os.mkfifo(cron_log)
    done = ws18.cli("compat", "rotate_log", timeout=30)
    assert done.returncode == 1, explain(done)
    reason = {"symlink": "is a symlink", "hard link": "hard links",
              "fifo": "not a regular file"}[planted]
    assert reason in done.stderr and "nothing rotated" in done.stderr
    assert precious.read_bytes() == PRECIOUS * 10
    assert not list(logs.glob("cron_log_*"))


def test_rotate_log_never_writes_an_archive_through_a_planted_symlink(ws18: Workspace) -> None:
    """Review M1: symlinks at the archive names of the coming seconds (and at an old archive's
    name) point at a victim file; the archive is a new file under a free name, the victim
    stays as it was, the link to it is neither counted nor removed."""
    logs = _rotate_workspace(ws18)
    victim = ws18.root / "victim"
    victim.write_bytes(PRECIOUS)
    now = time.time()
    for second in range(-1, 30):
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(now + second))
        (logs / f"cron_log_{stamp}.tar.gz").symlink_to(victim)
    old = logs / "cron_log_19990101_000000.tar.gz"
    old.symlink_to(victim)
    (logs / "cron.log").write_text("a line of the log\n")
    done = ws18.cli("compat", "rotate_log")
    assert done.returncode == 0, explain(done)
    assert victim.read_bytes() == PRECIOUS
    assert (logs / "cron.log").read_bytes() == b""
    [archive] = [p for p in logs.glob("cron_log_*.tar.gz") if not p.is_symlink()]
    assert archive.name.endswith("_1.tar.gz") and archive.name in done.stdout
    with tarfile.open(archive) as tar:
        member = tar.extractfile("cron.log")
        assert member is not None and member.read() == b"a line of the log\n"
    assert old.is_symlink() and "1 archive(s) kept" in done.stdout


def test_restore_test_reports_a_bad_canary_file_line_by_its_number_only(
        ws18: Workspace) -> None:
    """Review L7: the line's text was in a traceback ("internal error"); the file may be any
    file, so only its name and the line number are said (exit 2, nothing runs)."""
    _config(ws18)
    canaries = ws18.root / "canaries.sha256"
    secret = "CANARY-line-of-some-file-0123456789"
    canaries.write_text(f"# sha256sum output\n{'0' * 64}  {ws18.data}/dir0/file000.txt\n"
                        f"{secret}\n")
    done = ws18.cli("compat", "restore-test", "--canary-file", str(canaries))
    assert done.returncode == 2, explain(done)
    assert f"--canary-file {canaries}: line 3 is not a sha256sum line" in done.stderr
    assert secret not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert not (ws18.state / "last-restore-test.json").exists()
    canaries.write_bytes(b"\xff" + secret.encode() + b"\n")
    binary = ws18.cli("compat", "restore-test", "--canary-file", str(canaries))
    assert binary.returncode == 2 and "not UTF-8 text" in binary.stderr, explain(binary)
    assert secret not in binary.stdout + binary.stderr
    missing = ws18.cli("compat", "restore-test", "--canary-file", str(ws18.root / "absent"))
    assert missing.returncode == 2 and "cannot read it" in missing.stderr, explain(missing)


def test_restore_test_through_a_symlinked_target_leaves_nothing_behind(ws18: Workspace) -> None:
    """A --target that is a symlink to an empty directory: the rehearsal restores into the
    directory it names and removes what it restored (cleanup could not remove it through the
    link: the snapshot's files stayed there)."""
    _config(ws18)
    _ok(ws18.cli("compat", "backup"))
    real = ws18.root / "scratch-real"
    real.mkdir()
    link = ws18.root / "scratch-link"
    link.symlink_to(real)
    _ok(ws18.cli("compat", "restore-test", "--target", str(link), "--tag", "docs"))
    assert not real.exists() or not any(real.iterdir())
    assert link.is_symlink()
