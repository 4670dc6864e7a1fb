"""doctor, status, auto_unlock and retry_lock, a missing binary, a damaged history, through the
real CLI (a job's old run logs pruned to `keep_logs`: tests/runner/engine/test_engine.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from tests.support.paths import ROOT
from tests.support.processes import processes_with_cmdline
from tests.support.workspace import Workspace

BACKUP = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]
"""


def test_doctor_reports_a_healthy_setup(ws: Workspace) -> None:
    ws.write_config(BACKUP.format(data=ws.data))
    done = ws.cli("doctor", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0, report
    by_section = {}
    for check in report["checks"]:
        by_section.setdefault(check["section"], []).append(check)
    assert {"config", "binaries", "secrets", "repository", "state"} <= set(by_section)
    restic = [c for c in by_section["binaries"] if str(ws.restic) in c["message"]]
    assert restic and f"restic {ws.restic_version}" in restic[0]["message"]
    assert by_section["repository"][0]["status"] == "ok"
    text = ws.cli("doctor")
    assert text.returncode == 0 and "0 failure(s)" in text.stdout


def test_doctor_says_no_repository_and_never_inits(ws: Workspace) -> None:
    ws.repo = ws.root / "nowhere"
    ws.write_config(BACKUP.format(data=ws.data))
    done = ws.cli("doctor", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    repo = next(c for c in report["checks"] if c["section"] == "repository")
    assert repo["status"] == "fail" and "no repository at this location" in repo["message"]
    assert not ws.repo.exists()


def test_doctor_flags_secret_file_modes(ws: Workspace) -> None:
    ws.write_config(BACKUP.format(data=ws.data))
    ws.password_file.chmod(0o640)
    report = json.loads(ws.cli("doctor", "--json").stdout)
    secret = next(c for c in report["checks"] if c["section"] == "secrets")
    assert secret["status"] == "warn" and "group-readable" in secret["message"]
    ws.password_file.chmod(0o644)
    done = ws.cli("doctor", "--json")
    assert done.returncode == 1
    statuses = {c["status"] for c in json.loads(done.stdout)["checks"]
                if c["section"] == "secrets"}
    assert statuses == {"fail"}


def test_doctor_with_a_broken_config_fails_cleanly(ws: Workspace) -> None:
    ws.write_config('[jobs.x]\nkind = "nope"\n')
    done = ws.cli("doctor")
    assert done.returncode == 1 and "jobs.x.kind" in done.stdout
    assert "Traceback" not in done.stderr


def test_status_table_lists_every_job(ws: Workspace) -> None:
    ws.write_config(BACKUP.format(data=ws.data) + '[jobs.check]\nkind = "check"\n')
    ws.cli("run", "nightly", check=True)
    table = ws.cli("status", check=True).stdout.splitlines()
    assert table[0].split()[:4] == ["JOB", "KIND", "LAST", "EXIT"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["nightly"][1:4] == ["backup", "succeeded", "0"]
    assert rows["check"][1:3] == ["check", "never"]


def test_status_shows_the_last_success_beside_the_last_failure(ws: Workspace) -> None:
    """After a success then a failure: when the job last succeeded (and how long ago), the
    failure with its error line, and the next scheduled run."""
    ws.write_config(BACKUP.format(data=ws.data) + 'schedule = "0 3 * * *"\n')
    ws.cli("run", "nightly", check=True)
    shutil.rmtree(ws.data)  # restic: all target directories/files do not exist
    assert ws.cli("run", "nightly").returncode == 1
    report = json.loads(ws.cli("status", "--json", check=True).stdout)
    [job] = report["jobs"]
    assert job["last"]["status"] == "failed"
    assert job["last_success"]["age_seconds"] >= 0 and job["last_success"]["run_id"]
    failure = job["last_failure"]
    assert failure["status"] == "failed" and "do not exist" in failure["error"]
    assert job["next_run"]
    table = ws.cli("status", check=True).stdout
    header, row = table.splitlines()[:2]
    assert "LAST SUCCESS" in header and "NEXT" in header
    assert " ago)" in row and job["next_run"] in row
    [failure_line] = [line for line in table.splitlines() if line.startswith("  nightly:")]
    assert "failed (exit 1)" in failure_line and "do not exist" in failure_line


def test_python_dash_m_runner(ws: Workspace) -> None:
    done = subprocess.run([sys.executable, "-m", "runner", "--version"], capture_output=True,
                          text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "restic-runner 0.1.0"


def _readable_lock(ws: Workspace) -> bool:
    """A lock file restic itself can read (one still being written counts for nothing)."""
    for lock in (ws.repo / "locks").iterdir():
        done = subprocess.run([ws.restic, "cat", "lock", lock.name, "--no-lock"],
                              env=ws.restic_env(), capture_output=True)
        if done.returncode == 0:
            return True
    return False


def _stale_lock(ws: Workspace) -> None:
    """A restic backup killed with SIGKILL leaves its lock in the repository."""
    big = ws.root / "big"
    big.mkdir()
    (big / "r.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    proc = subprocess.Popen([ws.restic, "backup", "--limit-upload", "100", str(big)],
                            env=ws.restic_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not _readable_lock(ws):  # a lock file caught half-written is ignored by restic
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list((ws.repo / "locks").iterdir())


def test_auto_unlock_removes_a_stale_lock_after_a_lock_failure(ws: Workspace) -> None:
    _stale_lock(ws)
    ws.write_config('[jobs.prune]\nkind = "prune"\n')
    code, record = ws.run_json("prune")
    assert code == (1 if ws.restic_version == "0.14" else 11)
    assert [s["name"] for s in record["steps"]] == ["prune"]  # off by default: lock stays
    assert list((ws.repo / "locks").iterdir())
    ws.write_config('[jobs.prune]\nkind = "prune"\nauto_unlock = true\n')
    code, record = ws.run_json("prune")
    assert record["status"] == "failed"
    assert [s["name"] for s in record["steps"]] == ["prune", "unlock"]
    assert record["steps"][1]["exit_code"] == 0
    assert not list((ws.repo / "locks").iterdir())
    assert "locked" in record["error"]
    code, record = ws.run_json("prune")
    assert code == 0 and record["status"] == "succeeded"


def test_retry_lock_waits_where_restic_supports_it(ws: Workspace) -> None:
    _stale_lock(ws)
    ws.write_config('[jobs.prune]\nkind = "prune"\nretry_lock = "2s"\n')
    code, record = ws.run_json("prune")
    assert record["status"] == "failed"
    log = next((ws.state / "logs" / "prune").glob("*.log")).read_text()
    [command] = [line for line in log.splitlines() if "$ " in line and " prune " in line]
    if ws.restic_version == "0.14":  # no --retry-lock before 0.16: said, and not passed
        assert "--retry-lock" not in command
        assert "this restic has no --retry-lock" in log
        assert code == 1
    else:
        assert command.endswith("restic prune --json --retry-lock=2s")
        assert record["steps"][0]["duration_seconds"] >= 2.0  # it waited for the lock
        assert code == 11


def test_missing_restic_binary_fails_with_127(ws: Workspace) -> None:
    ws.write_config(f'[jobs.check]\nkind = "check"\nbinary = "{ws.root}/no-restic"\n')
    code, record = ws.run_json("check")
    assert code == 127 and record["status"] == "failed"
    assert "cannot start" in record["error"]
    assert not processes_with_cmdline(str(ws.root / "no-restic"))


def test_a_damaged_history_is_a_clear_error(ws: Workspace) -> None:
    ws.write_config(BACKUP.format(data=ws.data))
    ws.state.mkdir()
    (ws.state / "history.db").write_bytes(b"this is not a database" * 100)
    done = ws.cli("run", "nightly")
    assert done.returncode == 2
    assert "history.db cannot be used" in done.stderr and "move it aside" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_locked_forget_does_not_change_the_backups_outcome(ws: Workspace) -> None:
    """The multi-host case: forget cannot get its exclusive lock (exit 11 in 0.18, 1 in 0.14);
    the backup's snapshot is made and the run stays succeeded."""
    _stale_lock(ws)
    ws.write_config(BACKUP.format(data=ws.data) + 'forget_args = ["--keep-last", "1"]\n')
    code, record = ws.run_json("nightly")
    assert code == 0 and record["status"] == "succeeded"
    assert [(s["name"], s["exit_code"]) for s in record["steps"]] == [
        ("backup", 0), ("forget", 1 if ws.restic_version == "0.14" else 11)]
    assert record["error"] is None
    assert any(ws.data.as_posix() in s["paths"][0] for s in ws.snapshots())


def test_doctor_checks_the_api_clients_secret_files(ws: Workspace) -> None:
    token = ws.root / "cron.token"
    token.write_text("t0ken-for-cron-1234\n")
    token.chmod(0o644)  # serve refuses it: doctor must say so before a restart does
    ws.write_config(BACKUP.format(data=ws.data) + f"""
[[clients]]
name = "cron"
token_file = "{token}"
jobs = ["*"]
""")
    done = ws.cli("doctor", "--json")
    assert done.returncode == 1
    failed = [c["message"] for c in json.loads(done.stdout)["checks"]
              if c["section"] == "secrets" and c["status"] == "fail"]
    assert failed and failed[0].startswith("clients[0].token_file (cron): ")
    token.chmod(0o600)
    report = json.loads(ws.cli("doctor", "--json").stdout)
    assert any(c["message"].startswith("clients[0].token_file (cron)") and c["status"] == "ok"
               for c in report["checks"])
