"""One set of families everywhere: the service's `/metrics`, the Pushgateway and the textfile
output carry the same metrics for the same runs, and every metric the shipped alert rules and
dashboard name for these kinds really exists."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.metrics_contract import CONTRACT_METRICS
from tests.support.processes import free_port
from tests.support.pushgateway import PG_PASSWORD, PG_USER, Pushgateway
from tests.support.secrets import secret_file
from tests.support.service import start_service, token_client
from tests.support.workspace import Workspace


def families(text: str, job_name: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("job_name") == job_name and sample.name.startswith("restic_"):
                out[sample.name] = sample.value
    return out


def test_metrics_pushgateway_and_textfile_agree(ws18: Workspace, pushgateway: Pushgateway,
                                                tmp_path: Path) -> None:
    port = free_port()
    password = secret_file(ws18.root / "pg.password", PG_PASSWORD)
    metrics_dir = tmp_path / "textfile"
    ws18.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws18.data}"]
forget_args = ["--keep-last", "3"]

[jobs.verify]
kind = "check"
max_age = "8d"

[notify]
metrics_dir = "{metrics_dir}"

[notify.pushgateway]
url = "{pushgateway.url}"
username = "{PG_USER}"
password_file = "{password}"
""" + token_client(ws18), top=f'[server]\nbind = "127.0.0.1:{port}"\n')
    assert ws18.run_json("nightly")[0] == 0
    assert ws18.run_json("verify")[0] == 0
    service = start_service(ws18, port)
    try:
        with urllib.request.urlopen(service.url + "/metrics", timeout=5) as response:
            served = response.read().decode()
    finally:
        service.stop()
    pushed = pushgateway.exposition()
    for job in ("nightly", "verify"):
        textfile = (metrics_dir / f"restic_{job}.prom").read_text()
        from_server, from_gateway = families(served, job), families(pushed, job)
        from_textfile = families(textfile, job)
        assert from_server == from_gateway == from_textfile, job
    backup, check = families(served, "nightly"), families(served, "verify")
    assert backup["restic_runner_job_max_age_seconds"] == 26 * 3600
    assert check["restic_runner_job_max_age_seconds"] == 8 * 86400
    assert backup["restic_runner_notifications_pending"] == 0
    assert backup["restic_runner_notification_failures_total"] == 0
    # every contract metric of these two kinds is really exported
    expected = {m for m in CONTRACT_METRICS if m.startswith(("restic_backup_", "restic_check_"))
                and "running_since" not in m and m != "restic_check_last_errors"}
    exported = set(backup) | set(check)
    assert expected <= exported, sorted(expected - exported)
    runner_metrics = {m.removesuffix("_total") for m in CONTRACT_METRICS
                      if m.startswith("restic_runner_")}
    assert runner_metrics <= {m.removesuffix("_total") for m in exported}
    done = subprocess.run(["promtool", "check", "metrics"], input=textfile, text=True,
                          capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((ws18.state / "last-verify.json").read_text())
    assert {n["target"] for n in record["notifications"]} == {"pushgateway", "textfile"}
