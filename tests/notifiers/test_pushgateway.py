"""Pushgateway: the real Debian binary, with basic auth; metrics read back from its API."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.processes import wait_until
from tests.support.pushgateway import PG_PASSWORD, PG_USER, Pushgateway, start_pushgateway
from tests.support.secrets import secret_file
from tests.support.workspace import Workspace

JOBS = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]

[jobs.verify]
kind = "check"

[jobs.broken]
kind = "backup"
paths = ["{data}/does-not-exist"]
"""


def configure(ws: Workspace, gateway: Pushgateway, *, hostname: str = "test-host",
              extra: str = "") -> None:
    password = secret_file(ws.root / "pg.password", PG_PASSWORD)
    ws.write_config(JOBS.format(data=ws.data) + f"""
[notify.pushgateway]
url = "{gateway.url}"
username = "{PG_USER}"
password_file = "{password}"
{extra}""")
    text = ws.config_path.read_text().replace('hostname = "test-host"', f'hostname = "{hostname}"')
    ws.config_path.write_text(text)


def test_backup_metrics_reach_the_gateway(ws18: Workspace, pushgateway: Pushgateway) -> None:
    configure(ws18, pushgateway)
    code, record = ws18.run_json("nightly")
    assert code == 0, record
    labels = {"job": "restic_runner", "hostname": "test-host", "job_name": "nightly"}
    assert pushgateway.value("restic_backup_last_success", **labels) == 1.0
    assert pushgateway.value("restic_backup_last_exit_code", **labels) == 0.0
    assert pushgateway.value("restic_backup_running", **labels) == 0.0
    assert pushgateway.value("restic_backup_last_files_new", **labels) == 20.0
    added = pushgateway.value("restic_backup_last_data_added_bytes", **labels)
    assert added == record["stats"]["data_added"] > 0
    assert pushgateway.value("restic_backup_last_success_timestamp", **labels) is not None
    notes = {n["target"]: n for n in record["notifications"]}
    assert notes["pushgateway"]["status"] == "delivered"


def test_exposition_is_promtool_clean(ws18: Workspace, pushgateway: Pushgateway) -> None:
    configure(ws18, pushgateway)
    assert ws18.run_json("nightly")[0] == 0
    assert ws18.run_json("verify")[0] == 0
    text = pushgateway.exposition()
    ours = "\n".join(line for line in text.splitlines()
                     if line.removeprefix("# HELP ").removeprefix("# TYPE ").startswith("restic_"))
    assert "restic_backup_last_files_new" in ours
    done = subprocess.run(["promtool", "check", "metrics"], input=ours + "\n", text=True,
                          capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'restic_check_last_success{hostname="test-host",instance="",job="restic_runner",' \
           'job_name="verify"} 1' in text


SUCCESS_STATS = {"files_new": "files_new", "files_changed": "files_changed",
                 "data_added": "data_added_bytes", "total_files_processed": "files_processed"}


def test_failure_keeps_the_last_success_time_and_stats(ws18: Workspace,
                                                       pushgateway: Pushgateway) -> None:
    """A failed run after a success: the group says the last run failed, and still shows when
    the last backup succeeded and what it did (`restic_backup_last_success_*`)."""
    configure(ws18, pushgateway)
    code, ok = ws18.run_json("nightly")
    assert code == 0
    labels = {"hostname": "test-host", "job_name": "nightly"}
    success_at = pushgateway.value("restic_backup_last_success_timestamp", **labels)
    for stat, suffix in SUCCESS_STATS.items():
        assert pushgateway.value(f"restic_backup_last_success_{suffix}", **labels) == \
            pushgateway.value(f"restic_backup_last_{suffix}", **labels) == ok["stats"][stat]
    assert ok["stats"]["data_added"] > 0 and ok["stats"]["files_new"] == 20
    # the same job now fails: its paths vanish
    (ws18.data).rename(ws18.root / "moved-away")
    code, failed = ws18.run_json("nightly")
    assert code != 0 and failed["status"] == "failed"
    assert pushgateway.value("restic_backup_last_success", **labels) == 0.0
    assert pushgateway.value("restic_backup_last_exit_code", **labels) == float(code)
    assert pushgateway.value("restic_backup_last_success_timestamp", **labels) == success_at
    for stat, suffix in SUCCESS_STATS.items():
        # the failed run reported none: its own stats are gone, the success's stay
        assert pushgateway.value(f"restic_backup_last_{suffix}", **labels) is None
        assert pushgateway.value(f"restic_backup_last_success_{suffix}", **labels) == \
            ok["stats"][stat]


def test_jobs_and_hosts_never_overwrite_each_other(ws18: Workspace, tmp_path: Path,
                                                   pushgateway: Pushgateway) -> None:
    configure(ws18, pushgateway, hostname="host-a")
    assert ws18.run_json("nightly")[0] == 0
    assert ws18.run_json("verify")[0] == 0
    configure(ws18, pushgateway, hostname="host-b")
    ws18.config_path.write_text(ws18.config_path.read_text().replace(
        f'state_dir = "{ws18.state}"', f'state_dir = "{tmp_path / "state-b"}"'))
    (ws18.data).rename(ws18.root / "gone")  # host-b's backup fails
    assert ws18.run_json("nightly")[0] != 0
    groups = {(g["labels"]["hostname"], g["labels"]["job_name"]) for g in pushgateway.groups()}
    assert groups == {("host-a", "nightly"), ("host-a", "verify"), ("host-b", "nightly")}
    assert pushgateway.value("restic_backup_last_success", hostname="host-a",
                             job_name="nightly") == 1.0
    assert pushgateway.value("restic_backup_last_success", hostname="host-b",
                             job_name="nightly") == 0.0
    assert pushgateway.value("restic_check_last_success", hostname="host-a",
                             job_name="verify") == 1.0


def test_metrics_prune_deletes_groups_of_unconfigured_jobs(ws18: Workspace,
                                                           pushgateway: Pushgateway) -> None:
    configure(ws18, pushgateway)
    assert ws18.run_json("nightly")[0] == 0
    assert ws18.run_json("verify")[0] == 0
    # `verify` leaves the configuration
    ws18.config_path.write_text(ws18.config_path.read_text().replace(
        '[jobs.verify]\nkind = "check"\n', ""))
    done = ws18.cli("metrics", "prune", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["deleted"] == [{"hostname": "test-host", "job_name": "verify"}]
    groups = {g["labels"]["job_name"] for g in pushgateway.groups()}
    assert groups == {"nightly"}


def test_wrong_password_is_a_failed_delivery_not_a_failed_run(
        ws18: Workspace, tmp_path: Path) -> None:
    (tmp_path / "pg2").mkdir()
    gateway = start_pushgateway(tmp_path / "pg2", password="the-right-one")
    try:
        configure(ws18, gateway, extra="[notify]\ncli_wait = 0\n")
        code, record = ws18.run_json("verify")
        assert code == 0 and record["status"] == "succeeded"
        note = next(n for n in record["notifications"]
                    if n["target"] == "pushgateway" and n["event"] == "run.succeeded")
        # tried once before `run` exited; left in the outbox for the service or the next run
        assert note["status"] == "pending" and note["attempts"] == 1
        assert note["response"] == "HTTP 401"
        assert PG_PASSWORD not in json.dumps(record)
    finally:
        gateway.process.terminate()
        gateway.process.wait(10)


def test_start_push_sets_running(ws18: Workspace, pushgateway: Pushgateway) -> None:
    slow = ws18.root / "slow-hook.sh"
    slow.write_text("#!/bin/sh\nsleep 2\n")
    slow.chmod(0o755)
    configure(ws18, pushgateway)
    ws18.config_path.write_text(ws18.config_path.read_text().replace(
        '[jobs.verify]\nkind = "check"\n',
        f'[jobs.verify]\nkind = "check"\npre_hook = ["{slow}"]\n'))
    proc = ws18.popen("run", "verify")

    wait_until(lambda: pushgateway.value("restic_check_running", job_name="verify") == 1.0,
               15, 0.02)
    since = pushgateway.value("restic_check_running_since_timestamp", job_name="verify")
    assert since is not None
    assert proc.wait(60) == 0
    assert pushgateway.value("restic_check_running", job_name="verify") == 0.0
    assert pushgateway.value("restic_check_running_since_timestamp", job_name="verify") is None


def test_metrics_announce_pushes_jobs_that_never_ran(ws18: Workspace,
                                                     pushgateway: Pushgateway) -> None:
    """Where only cron runs `restic-runner run` (no serve or schedule to announce at start-up),
    `metrics announce` gives every job its group now: the never-ran alert can fire."""
    configure(ws18, pushgateway, extra='jobs = ["nightly", "verify"]')
    done = ws18.cli("metrics", "announce")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["nightly: delivered", "verify: delivered"]
    groups = {g["labels"]["job_name"] for g in pushgateway.groups()}
    assert groups == {"nightly", "verify"}
    max_age = pushgateway.value("restic_runner_job_max_age_seconds", job_name="verify")
    assert max_age is not None and max_age > 0  # what the never-ran alert needs
    pushgateway.stop()  # down: the attempt fails, the delivery waits for the next run
    done = ws18.cli("metrics", "announce")
    assert done.returncode == 1
    assert "nightly: pending: " in done.stderr and "refused" in done.stderr.lower()
