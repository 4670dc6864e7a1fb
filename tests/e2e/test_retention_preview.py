"""A forget job triggered with `dry_run`: a retention preview over the API — what would be
removed, in the run's stats, and nothing removed."""

from __future__ import annotations

import json
import urllib.request

from tests.conftest import Workspace
from tests.e2e.conftest import free_port, secret_file
from tests.notifiers.conftest import start_service


def test_forget_dry_run_previews_retention(ws: Workspace) -> None:
    port = free_port()
    token = secret_file(ws.root / "t.token", "rrt_preview-token")
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]

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
        (ws.data / f"extra-{i}.txt").write_text(str(i))
        assert ws.run_json("nightly")[0] == 0
    service = start_service(ws, port)
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
    assert len(ws.snapshots()) == 3  # and nothing was removed
