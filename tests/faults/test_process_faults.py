"""Processes killed mid-backup, against restic 0.14 and 0.18: restic itself with SIGKILL (as the
OOM killer does), and the supervising `restic-runner run` with SIGKILL.

A backup is slow on purpose: restic's own `--limit-upload` on 600 KB of random data (restic
0.18 finishes uploading the pack in flight when it gets SIGINT: more data only makes the test
slower). The data then shrinks to a few KB for the run that proves the job lock is free (same
job, same config), so that run takes a second.
"""

from __future__ import annotations

import json
import os
import signal

from tests.support.faults import (
    DUPLICATED,
    JOB_LOCK,
    LOST,
    MESSAGE,
    REPO_LOCK,
    SLOW_JOB,
    FaultCheck,
    assert_clear_message,
    assert_equal,
    assert_job_lock_free,
    assert_no_repo_lock,
    assert_no_run_lost,
    assert_not_duplicated,
    big_data,
    repo_locks,
    restic_pids,
    shrink,
    wait_uploading,
)
from tests.support.processes import kill, wait_until
from tests.support.receivers import Receiver
from tests.support.workspace import Workspace

SLOW = SLOW_JOB + """
[jobs.unlock]
kind = "unlock"
"""


def configure(ws: Workspace, notify: str = "") -> None:
    ws.write_config(SLOW.format(big=ws.root / "big") + notify)


def test_restic_killed_with_sigkill_mid_backup(ws: Workspace) -> None:
    """restic cannot remove its repository lock when SIGKILLed. Expected: the run is `failed`
    with exit 137 and an error that names the kill; the lock stays (`auto_unlock` is off by
    default, and a failed *backup* is no lock failure anyway); the next backup still works
    (restic's backup lock is shared); the `unlock` job removes the stale lock (its process is
    gone on this host), as docs/troubleshooting.md says."""
    big_data(ws)
    configure(ws)
    run = ws.popen("run", "slow", "--json")
    try:
        running = wait_uploading(ws)
        [pid] = restic_pids(ws)
        os.kill(pid, signal.SIGKILL)
        out, err = run.communicate(timeout=60)
    finally:
        kill(run)
    record = json.loads(out)
    assert (run.returncode, record["status"], record["exit_code"]) == (137, "failed", 137)
    assert record["run_id"] == running["run_id"]
    left = repo_locks(ws)
    assert len(left) == 1, f"restic could not clean up, one lock expected: {left}"
    shrink(ws)
    with FaultCheck(f"restic {ws.restic_version} SIGKILL mid-backup") as check:
        check(LOST, assert_no_run_lost, ws, {record["run_id"]: "failed"})
        check(DUPLICATED, assert_not_duplicated, ws, runs=1, snapshots=0)
        check(MESSAGE, assert_clear_message, record["error"], r"SIGKILL|signal 9",
              where="the run's error")
        log = (ws.state / "logs" / "slow" / f"{record['run_id']}.log").read_text()
        check(MESSAGE, assert_clear_message, log + err, r"backup exited 137",
              where="the run log")
        new = check(JOB_LOCK, assert_job_lock_free, ws, "slow")
        if new:  # a backup works beside the stale lock; it removes nothing
            check(REPO_LOCK, assert_equal, repo_locks(ws), left)
        unlock = check(JOB_LOCK, assert_job_lock_free, ws, "unlock")
        check(REPO_LOCK, assert_no_repo_lock, ws)
        if new and unlock:
            check(DUPLICATED, assert_not_duplicated, ws, runs=3, snapshots=1)


def test_supervisor_killed_with_sigkill_mid_backup(ws: Workspace,
                                                   hook: Receiver) -> None:
    """The `run` process dies; the kernel frees its job lock and sends restic SIGINT
    (PR_SET_PDEATHSIG), so restic removes its repository lock. The next command marks the run
    `interrupted`; the next `run` sends its `run.interrupted` event."""
    hook.start()
    big_data(ws)
    notify = f"""
[notify]
retry_initial = "0.3s"
cli_wait = "10s"

[notify.webhooks.ops]
url = "{hook.url}"
on = ["start", "success", "failure"]
timeout = "2s"
"""
    configure(ws, notify)
    run = ws.popen("run", "slow")
    try:
        running = wait_uploading(ws)
        run.kill()
        run.wait(10)
    finally:
        kill(run)
    wait_until(lambda: not restic_pids(ws), timeout=30)  # restic got SIGINT and is gone
    run_id = running["run_id"]
    shrink(ws)
    with FaultCheck(f"supervisor SIGKILL (restic {ws.restic_version})") as check:
        runs = check(LOST, assert_no_run_lost, ws, {run_id: "interrupted"})
        check(DUPLICATED, assert_not_duplicated, ws, runs=1, snapshots=0)
        check(REPO_LOCK, assert_no_repo_lock, ws)
        if runs:
            check(MESSAGE, assert_clear_message, runs[run_id]["error"],
                  r"supervising process died", where="the run's error")
        log = (ws.state / "logs" / "slow" / f"{run_id}.log").read_text()
        check(MESSAGE, assert_clear_message, log, r"interrupted: the process supervising",
              where="the run log")
        new = check(JOB_LOCK, assert_job_lock_free, ws, "slow")
        if new:  # that run also delivered the interrupted run's event
            check(LOST, assert_no_run_lost, ws, {run_id: "interrupted", new["run_id"]:
                                                 "succeeded"},
                  delivered={run_id: [("webhook:ops", "run.started"),
                                      ("webhook:ops", "run.interrupted")],
                             new["run_id"]: [("webhook:ops", "run.succeeded")]})
            check(DUPLICATED, assert_not_duplicated, ws, runs=2, snapshots=1, hooks=hook.requests,
                  events={(run_id, "run.started"), (run_id, "run.interrupted"),
                          (new["run_id"], "run.started"), (new["run_id"], "run.succeeded")})
