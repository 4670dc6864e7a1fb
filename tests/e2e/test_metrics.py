"""/metrics: the same numbers from every worker, explicit names with units, lint-clean."""

from __future__ import annotations

import shutil
import subprocess

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.service import Server


def _samples(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "restic_runner_history_bytes":  # the service's, not a job's
                assert set(sample.labels) == {"hostname"}, sample
                continue
            assert set(sample.labels) == {"hostname", "job_name"}, sample
            out[(sample.name, sample.labels["job_name"])] = sample.value
    return out


def test_metrics_after_a_success_and_a_failure(server: Server) -> None:
    ok = server.post("/trigger/nightly?wait=20").json()
    assert ok["status"] == "succeeded"
    scrapes = {requests.get(server.url + "/metrics", timeout=10).text for _ in range(8)}
    assert len(scrapes) == 1  # whichever worker answered
    text = scrapes.pop()
    samples = _samples(text)
    assert samples[("restic_backup_last_exit_code", "nightly")] == 0
    assert samples[("restic_backup_last_success", "nightly")] == 1
    assert samples[("restic_backup_last_data_added_bytes", "nightly")] == \
        ok["stats"]["data_added"]
    assert samples[("restic_backup_last_files_new", "nightly")] == ok["stats"]["files_new"]
    assert samples[("restic_backup_running", "nightly")] == 0
    assert samples[("restic_backup_last_success_files_new", "nightly")] == \
        ok["stats"]["files_new"]
    success_at = samples[("restic_backup_last_success_timestamp", "nightly")]
    assert ("restic_backup_last_exit_code", "check") not in samples  # never ran
    assert "snapshot" not in text and str(server.ws.repo) not in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/bootstrap.sh)"
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    # a failure keeps the last success time
    server.ws.password_file.write_text("wrong\n")
    failed = server.post("/trigger/nightly?wait=20").json()
    assert failed["status"] == "failed"
    samples = _samples(requests.get(server.url + "/metrics", timeout=10).text)
    assert samples[("restic_backup_last_success", "nightly")] == 0
    assert samples[("restic_backup_last_exit_code", "nightly")] == failed["exit_code"]
    assert samples[("restic_backup_last_success_timestamp", "nightly")] == success_at
    # and what the last successful backup did, beside the failure
    assert samples[("restic_backup_last_success_data_added_bytes", "nightly")] == \
        ok["stats"]["data_added"]
    assert samples[("restic_backup_last_success_files_new", "nightly")] == \
        ok["stats"]["files_new"]
