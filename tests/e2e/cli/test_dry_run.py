"""Dry runs (issue 13, items 4 and 5), through the real CLI with real restic repositories.

A job may pin `dry_run = true`: every run of it passes --dry-run and no trigger turns that off
(a retention preview never removes a snapshot). A dry run is recorded and reported as one
(`dry_run: true` in the record and the webhook payload, `/log` pings to healthchecks, a
`[DRY RUN …]` mail subject, `restic_<kind>_last_dry_run_*` metrics), and never counts as the
job's last run or last success: metrics, healthchecks and `last-<job>.json`'s `last_success`
stay where the last real run left them. (The trigger param that cannot turn a pinned dry run
off, and bad settings: tests/runner/engine/test_dry_run.py.)
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.receivers import Receiver
from tests.support.secrets import secret_file
from tests.support.workspace import Workspace, job_metrics

PREVIEW = """
[jobs.preview]
kind = "forget"
args = ["--keep-last", "3"]
dry_run = true
"""


def _metrics(ws: Workspace, job: str) -> dict[str, float]:
    return job_metrics(ws, job)


def _last_file(ws: Workspace, job: str) -> dict[str, Any]:
    return json.loads((ws.state / f"last-{job}.json").read_text())


# --- item 4: a pinned dry run ---------------------------------------------------------------------

def test_a_pinned_preview_keeps_all_seven_snapshots(ws: Workspace) -> None:
    ws.snapshots_by_restic(7)
    ws.write_config(PREVIEW)
    code, record = ws.run_json("preview")
    assert code == 0 and record["status"] == "succeeded", record
    assert record["dry_run"] is True
    assert record["stats"]["snapshots_kept"] == 3
    assert record["stats"]["snapshots_removed"] == 4  # what a real forget would remove
    assert len(ws.snapshots()) == 7  # and nothing was removed
    log = (ws.state / "logs" / "preview" / f"{record['run_id']}.log").read_text()
    assert "forget --json --dry-run --keep-last 3" in log


def test_a_pinned_backup_writes_no_snapshot(ws: Workspace) -> None:
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
forget_args = ["--keep-last", "1"]
dry_run = true
""")
    code, record = ws.run_json("nightly")
    assert code == 0 and record["dry_run"] is True
    assert ws.snapshots() == []


def test_config_check_refuses_a_dry_run_check_job_with_exit_2(ws: Workspace) -> None:
    ws.write_config('[jobs.verify]\nkind = "check"\ndry_run = true\n')
    done = ws.cli("config", "check")
    assert done.returncode == 2
    assert "jobs.verify.dry_run" in done.stderr + done.stdout


# --- item 5: a dry run is never the last success -----------------------------------------------

BACKUP = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]
params = ["dry_run"]
"""


def test_a_dry_run_after_a_success_moves_no_success_field(ws: Workspace) -> None:
    ws.write_config(BACKUP.format(data=ws.data))
    code, real = ws.run_json("nightly")
    assert code == 0 and real["dry_run"] is False
    before = _metrics(ws, "nightly")
    (ws.data / "new-file.txt").write_text("only a dry run sees me")
    dry = ws.run_in_process("nightly", {"dry_run": True})
    assert dry["status"] == "succeeded" and dry["dry_run"] is True
    assert len(ws.snapshots()) == 1
    after = _metrics(ws, "nightly")
    for name in ("restic_backup_last_success_timestamp", "restic_backup_last_success",
                 "restic_backup_last_finished_timestamp", "restic_backup_last_exit_code",
                 "restic_backup_last_files_new"):
        assert after[name] == before[name], name
    assert after["restic_backup_last_dry_run_exit_code"] == 0
    assert after["restic_backup_last_dry_run_timestamp"] > before[
        "restic_backup_last_finished_timestamp"]
    last = _last_file(ws, "nightly")
    assert last["run_id"] == dry["run_id"] and last["dry_run"] is True
    assert last["last_success"] == {"run_id": real["run_id"],
                                    "finished_at": real["finished_at"]}


def test_a_failed_real_run_stays_the_last_run_after_a_dry_run(ws: Workspace) -> None:
    """A client allowed dry_run cannot clear `ResticRunnerLastRunFailed` with a dry run."""
    ws.write_config(BACKUP.format(data=ws.root / "missing"))
    code, failed = ws.run_json("nightly")
    assert code != 0 and failed["status"] == "failed"
    ws.write_config(BACKUP.format(data=ws.data))
    assert ws.run_in_process("nightly", {"dry_run": True})["status"] == "succeeded"
    values = _metrics(ws, "nightly")
    assert values["restic_backup_last_success"] == 0
    assert values["restic_backup_last_exit_code"] == failed["exit_code"]


def test_a_dry_run_as_the_first_run_leaves_no_last_success(ws: Workspace) -> None:
    ws.write_config(BACKUP.format(data=ws.data))
    dry = ws.run_in_process("nightly", {"dry_run": True})
    assert dry["status"] == "succeeded" and dry["dry_run"] is True
    assert ws.snapshots() == []
    values = _metrics(ws, "nightly")
    for name in ("restic_backup_last_success_timestamp", "restic_backup_last_success",
                 "restic_backup_last_exit_code"):
        assert name not in values, name
    assert values["restic_backup_last_dry_run_exit_code"] == 0
    assert values["restic_runner_job_max_age_seconds"] == 26 * 3600  # the alert still waits
    assert _last_file(ws, "nightly")["last_success"] is None
    status = json.loads(ws.cli("status", "--json", check=True).stdout)["jobs"][0]
    assert status["last"]["dry_run"] is True and status["last_success_at"] is None


def test_a_pinned_preview_exports_no_max_age(ws: Workspace) -> None:
    """It never succeeds for real: no `ResticRunnerNeverSucceeded` for a preview job."""
    ws.write_config(PREVIEW)
    assert ws.run_json("preview")[0] == 0
    values = _metrics(ws, "preview")
    assert "restic_runner_job_max_age_seconds" not in values
    assert "restic_forget_last_success_timestamp" not in values
    assert values["restic_forget_last_dry_run_exit_code"] == 0


def test_a_dry_run_is_reported_as_one_to_every_target(ws: Workspace, receiver: Receiver,
                                                      hc_receiver: Receiver) -> None:
    hooks, pings = receiver, hc_receiver
    hc_url = secret_file(ws.root / "hc.url", f"{pings.url}/check-uuid")
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
dry_run = true

[notify.webhooks.ops]
url = "{hooks.url}/hooks"
on = ["start", "success", "warning", "failure"]

[notify.healthchecks.nightly]
url_file = "{hc_url}"
""")
    code, record = ws.run_json("nightly")
    assert code == 0 and record["dry_run"] is True
    rid = record["run_id"]
    start, end = pings.wait_for(2)
    # never /start (a started check that never completes goes down) nor /0 (a success)
    assert [start.path, end.path] == [f"/check-uuid/log?rid={rid}"] * 2
    assert b"dry run" in end.body
    payloads = [r.json() for r in hooks.wait_for(2)]
    assert [p["type"] for p in payloads] == ["run.started", "run.succeeded"]
    assert all(p["data"]["dry_run"] is True for p in payloads)


def test_a_dry_run_mail_subject_says_so(ws: Workspace) -> None:
    from notifiers.mail import subject

    ws.write_config(PREVIEW)
    _, record = ws.run_json("preview")
    assert subject(record).startswith("[DRY RUN OK] Forget preview test-host · ")
    assert subject(dict(record, status="failed", exit_code=1)).startswith("[DRY RUN FAIL 1] ")
    assert subject(dict(record, dry_run=False)).startswith("[OK] Forget preview ")
