"""A run that fails before its tool starts is recorded and logged with its reason, whichever way
it was started (the CLI's case: tests/e2e/cli/test_config.py). Before, a scheduled job whose
password file had been made readable by every local user exited 1 with no run recorded and
nothing logged but "started nightly"; the service answered the trigger and recorded nothing."""

from __future__ import annotations

import json
import signal
from typing import Any

from tests.support.processes import stop_process, wait_until
from tests.support.service import problem, start_api_server
from tests.support.workspace import Workspace

REASON = "readable by every local user"


def last_run(ws: Workspace, job: str) -> dict[str, Any] | None:
    path = ws.state / f"last-{job}.json"
    return json.loads(path.read_text()) if path.exists() else None


def assert_recorded_failed(ws: Workspace, job: str) -> dict[str, Any]:
    record = last_run(ws, job)
    assert record is not None
    assert (record["status"], record["exit_code"], record["steps"]) == ("failed", 2, [])
    assert REASON in record["error"]
    assert ws.snapshots() == []  # restic never ran
    log = ws.state / "logs" / job / f"{record['run_id']}.log"
    assert REASON in log.read_text()
    return record


def test_the_scheduler_records_and_logs_a_run_that_cannot_start(ws18: Workspace) -> None:
    ws18.write_config(f'[jobs.nightly]\nkind = "backup"\npaths = ["{ws18.data}"]\n'
                      'schedule = "every 1s"\n')
    ws18.password_file.chmod(0o644)
    proc = ws18.popen("schedule")
    try:
        wait_until(lambda: last_run(ws18, "nightly"), timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert_recorded_failed(ws18, "nightly")
    assert f"scheduler: nightly: jobs.nightly: password_file: secret file " \
           f"{ws18.password_file}" in out + err
    assert REASON in out + err


def test_the_service_records_and_logs_a_run_that_cannot_start(ws18: Workspace) -> None:
    server = start_api_server(ws18)  # serve itself refuses a loose secret file: loosen it now
    try:
        ws18.password_file.chmod(0o644)
        answer = server.post("/trigger/nightly")
        body = problem(answer, 503)
        assert body["title"] == "Cannot start the run"
        record = assert_recorded_failed(ws18, "nightly")
        runs = server.get("/runs?job=nightly").json()
        assert record["run_id"] in json.dumps(runs)
    finally:
        stop_process(server.proc)
    assert "run of nightly could not start: jobs.nightly: password_file: secret file " \
           f"{ws18.password_file}" in server.log.read_text()
