"""A forget job triggered with `dry_run`: a retention preview over the API — what would be
removed, in the run's stats, and nothing removed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.support.processes import free_port
from tests.support.secrets import secret_file
from tests.support.service import start_service
from tests.support.workspace import Workspace


def test_forget_dry_run_previews_retention(ws18: Workspace) -> None:
    port = free_port()
    token = secret_file(ws18.root / "t.token", "rrt_preview-token")
    ws18.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws18.data}"]

[jobs.retention]
kind = "forget"
args = ["--keep-last", "1"]
params = ["dry_run"]

[[clients]]
name = "airflow"
token_file = "{token}"
jobs = ["*"]
""", top=f'[server]\nbind = "127.0.0.1:{port}"\nmax_wait = "60s"\n')
    for i in range(3):
        (ws18.data / f"extra-{i}.txt").write_text(str(i))
        assert ws18.run_json("nightly")[0] == 0
    service = start_service(ws18, port)
    try:
        request = urllib.request.Request(
            f"{service.url}/trigger/retention?wait=60", method="POST",
            data=json.dumps({"params": {"dry_run": True}}).encode(),
            headers={"Authorization": "Bearer rrt_preview-token",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=90) as response:
            record = json.loads(response.read())
    finally:
        service.stop()
    assert record["status"] == "succeeded", record["error"]
    assert record["params"] == {"dry_run": True}
    assert record["stats"]["snapshots_kept"] == 1
    assert record["stats"]["snapshots_removed"] == 2  # what a real forget would remove
    assert len(ws18.snapshots()) == 3  # and nothing was removed


def test_a_pinned_preview_triggered_with_an_empty_body_removes_nothing(ws18: Workspace) -> None:
    """The issue-13 case: `{}` to a preview job ran a real forget (7 snapshots became 4). A job
    that pins `dry_run = true` runs dry whatever the trigger says, and refuses to be turned off."""
    import subprocess

    port = free_port()
    token = secret_file(ws18.root / "t.token", "rrt_preview-token")
    ws18.write_config(f"""
[jobs.preview]
kind = "forget"
args = ["--keep-last", "3"]
dry_run = true
params = ["dry_run"]

[[clients]]
name = "airflow"
token_file = "{token}"
jobs = ["*"]
""", top=f'[server]\nbind = "127.0.0.1:{port}"\nmax_wait = "60s"\n')
    for i in range(7):
        (ws18.data / f"extra-{i}.txt").write_text(str(i))
        subprocess.run([ws18.restic, "backup", "--quiet", str(ws18.data)], env=ws18.restic_env(),
                       check=True, capture_output=True)
    service = start_service(ws18, port)

    def trigger(body: bytes) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{service.url}/trigger/preview?wait=60", method="POST", data=body,
            headers={"Authorization": "Bearer rrt_preview-token",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=90) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read())

    try:
        status, record = trigger(b"{}")
        refused_status, problem = trigger(b'{"params": {"dry_run": false}}')
    finally:
        service.stop()
    assert status == 200 and record["status"] == "succeeded", record
    assert record["dry_run"] is True
    assert record["stats"]["snapshots_removed"] == 4  # what a real forget would remove
    assert len(ws18.snapshots()) == 7
    assert refused_status == 400 and "params.dry_run" in problem["detail"]
