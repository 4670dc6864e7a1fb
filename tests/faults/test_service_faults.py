"""The service's processes failing mid-run, under a real `restic-runner serve` (gunicorn) on
loopback: the gunicorn master gets SIGTERM (a deploy, a container stop), and a run's
supervisor (forked by the launcher, runner/service/launcher.py) is killed with SIGKILL.

A backup is slow on purpose (restic's `--limit-upload` on 600 KB of random data: restic 0.18
finishes the pack in flight after SIGINT, so more data only makes the test slower); the data then
shrinks to a few KB so the run that proves the job lock is free takes a second.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from tests.support.faults import (
    DUPLICATED,
    JOB_LOCK,
    LOST,
    MESSAGE,
    REPO_LOCK,
    SLOW_JOB,
    FaultCheck,
    api,
    assert_clear_message,
    assert_equal,
    assert_job_lock_free_api,
    assert_no_repo_lock,
    assert_no_run_lost,
    assert_not_duplicated,
    big_data,
    read_deliveries,
    read_runs,
    restic_pids,
    server_top,
    shrink,
    wait_uploading,
    with_client,
)
from tests.support.processes import free_port, wait_until
from tests.support.receivers import Receiver
from tests.support.service import start_service
from tests.support.workspace import Workspace

SLOW = SLOW_JOB


def configure(ws: Workspace, port: int, notify: str = "") -> None:
    big_data(ws)
    ws.write_config(SLOW.format(big=ws.root / "big") + notify, top=server_top(port))
    with_client(ws)


def trigger(url: str, job: str) -> str:
    response = api(url, "POST", f"/trigger/{job}")
    assert response.status_code == 202, (response.status_code, response.text)
    return str(response.json()["run_id"])


def test_gunicorn_master_sigterm_mid_run(ws18: Workspace, hook: Receiver) -> None:
    """SIGTERM to `serve`: the run's supervisor passes SIGINT to restic, which removes its
    repository lock; the run ends `cancelled` and its events go out (the supervisor's own
    attempt, or the deliveries worker after the restart)."""
    hook.start()
    port = free_port()
    configure(ws18, port, notify=f"""
[notify]
retry_initial = "0.3s"
retry_max_interval = "0.6s"

[notify.webhooks.ops]
url = "{hook.url}"
on = ["start", "success", "failure"]
timeout = "2s"
""")
    service = start_service(ws18, port)
    try:
        run_id = trigger(service.url, "slow")
        wait_uploading(ws18)
        service.process.send_signal(signal.SIGTERM)
        exit_code = service.process.wait(60)
    finally:
        service.stop()
    assert exit_code == 0
    assert restic_pids(ws18) == []
    log = service.log.read_text()
    shrink(ws18)
    service = start_service(ws18, port)  # the fault clears: the service is back
    try:
        wait_until(lambda: all(d.state != "pending" for d in read_deliveries(ws18, run_id)),
                   timeout=30)
        with FaultCheck("gunicorn master SIGTERM mid-run") as check:
            runs = check(LOST, assert_no_run_lost, ws18, {run_id: "cancelled"},
                         delivered={run_id: [("webhook:ops", "run.started"),
                                             ("webhook:ops", "run.cancelled")]})
            check(DUPLICATED, assert_not_duplicated, ws18, runs=1, snapshots=0, hooks=hook.requests,
                  events={(run_id, "run.started"), (run_id, "run.cancelled")})
            check(REPO_LOCK, assert_no_repo_lock, ws18)
            if runs:
                check(MESSAGE, assert_clear_message, runs[run_id]["error"],
                      r"cancelled \(SIGTERM\)", where="the run's error")
            check(MESSAGE, assert_clear_message, log, r"Handling signal: term",
                  where="the service log")
            check(JOB_LOCK, assert_job_lock_free_api, ws18, service.url, "slow")
    finally:
        service.stop()


def _kill_the_supervisor_of_a_slow_run(ws: Workspace, url: str) -> str:
    """Trigger `slow`, SIGKILL its supervisor (the job lock's holder) mid-upload, wait until it
    is reaped; returns the run's id."""
    run_id = trigger(url, "slow")
    wait_uploading(ws)
    holder: dict[str, Any] = json.loads((ws.state / "locks" / "slow.lock").read_text())
    assert holder["run_id"] == run_id
    os.kill(holder["pid"], signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{holder['pid']}").exists(), timeout=30)  # reaped
    return run_id


def test_run_supervisor_killed_under_serve(ws18: Workspace) -> None:
    """SIGKILL to the supervisor of an API-started run. Its job lock dies with it; restic gets
    SIGINT from the kernel and removes its lock. The next trigger of the job must start a run
    (not 409), and the dead run must not stay `running` next to it: an API read marks it
    `interrupted` (docs/troubleshooting.md), and so should the start of the next run."""
    port = free_port()
    configure(ws18, port)
    service = start_service(ws18, port)
    try:
        run_id = _kill_the_supervisor_of_a_slow_run(ws18, service.url)
        wait_until(lambda: not restic_pids(ws18), timeout=30)
        shrink(ws18)
        with FaultCheck("supervisor SIGKILL under serve") as check:
            new = check(JOB_LOCK, assert_job_lock_free_api, ws18, service.url, "slow")
            # the store as it is now, not as an API read of the dead run would leave it
            check(LOST, assert_equal, read_runs(ws18)[run_id]["status"], "interrupted")
            jobs = api(service.url, "GET", "/jobs").json()["jobs"]
            check(LOST, assert_equal, jobs[0]["running_run_id"], None)
            response = api(service.url, "GET", f"/runs/{run_id}")
            record = response.json()
            check(LOST, assert_equal, (response.status_code, record["status"]),
                  (200, "interrupted"))
            expected = {run_id: "interrupted"}
            if new:
                expected[new["run_id"]] = "succeeded"
            check(LOST, assert_no_run_lost, ws18, expected)
            check(DUPLICATED, assert_not_duplicated, ws18, runs=2 if new else 1,
                  snapshots=1 if new else 0)
            check(REPO_LOCK, assert_no_repo_lock, ws18)
            check(MESSAGE, assert_clear_message, record.get("error"),
                  r"supervising process died", where="the run's error")
            log = api(service.url, "GET", f"/runs/{run_id}/log").text
            check(MESSAGE, assert_clear_message, log, r"interrupted: the process supervising",
                  where="the run log")
            check(MESSAGE, assert_clear_message, service.log.read_text(), r"Booting worker",
                  where="the service log")
    finally:
        service.stop()


def test_an_api_read_finds_a_run_whose_supervisor_died(ws18: Workspace) -> None:
    """With no new trigger: `GET /runs/<id>` of a run whose supervisor was killed answers
    `interrupted` (its job's lock is free), and `/jobs` no longer shows it running."""
    port = free_port()
    configure(ws18, port)
    service = start_service(ws18, port)
    try:
        run_id = _kill_the_supervisor_of_a_slow_run(ws18, service.url)
        record = api(service.url, "GET", f"/runs/{run_id}").json()
        assert (record["status"], record["finished_at"] is not None) == ("interrupted", True)
        assert read_runs(ws18)[run_id]["status"] == "interrupted"  # recorded, not only shown
        jobs = api(service.url, "GET", "/jobs").json()["jobs"]
        assert [j["running_run_id"] for j in jobs if j["job"] == "slow"] == [None]
        wait_until(lambda: not restic_pids(ws18), timeout=30)
        assert_no_repo_lock(ws18)
    finally:
        service.stop()
