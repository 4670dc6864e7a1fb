"""Notification targets failing while a run reports: the Pushgateway down then up, a webhook
answering 500, answering too late, or 410 Gone, a healthchecks server down through a short
failed run, or answering 404 for a deleted check, an SMTP server down, deferring (4xx) or
refusing (5xx). The run's own status and exit code never change; deliveries are retried (short
retry settings below) and arrive once the receiver is back, except where the docs say they stop
(410, and a healthchecks 404: the target is disabled until its configuration changes; SMTP
5xx: given up at once; a start still undelivered when the run's end is queued: superseded).

Each run is a cron-style `restic-runner run`, which waits up to `cli_wait` for its deliveries:
the fault is cleared while it waits. Real receivers on loopback: Debian's prometheus-pushgateway,
an HTTP receiver, aiosmtpd.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from notifiers.base import STARTED
from runner.engine.history import History
from tests.support.faults import (
    DUPLICATED,
    JOB_LOCK,
    LOST,
    MESSAGE,
    REPO_LOCK,
    FaultCheck,
    assert_clear_message,
    assert_equal,
    assert_job_lock_free,
    assert_no_repo_lock,
    assert_no_run_lost,
    assert_not_duplicated,
    attempts_of,
    read_deliveries,
)
from tests.support.processes import free_port, kill, wait_until
from tests.support.pushgateway import start_pushgateway_on
from tests.support.receivers import Receiver
from tests.support.smtp import ScriptedSmtp
from tests.support.workspace import Workspace

JOB = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]

[notify]
retry_initial = "0.3s"
retry_max_interval = "0.6s"
cli_wait = "{wait}"
"""


def configure(ws: Workspace, target: str, *, wait: str = "30s") -> None:
    ws.write_config(JOB.format(data=ws.data, wait=wait) + target)


def finish(run: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    out, err = run.communicate(timeout=90)
    assert out.strip(), f"run printed no record (exit {run.returncode}): {err}"
    return run.returncode, json.loads(out), err


def note(record: dict[str, Any], target: str, event: str) -> dict[str, Any]:
    """The run record's one delivery of `event` to `target`."""
    found = [n for n in record["notifications"] if n["target"] == target and n["event"] == event]
    assert len(found) == 1, f"{len(found)} deliveries of {event} to {target}: " \
                            f"{record['notifications']}"
    return found[0]


def attempt_errors(delivery: dict[str, Any]) -> str:
    return "\n".join(a.get("error") or a["response"] for a in delivery.get("attempt_log", []))


def test_pushgateway_down_then_up(ws18: Workspace, tmp_path: Path) -> None:
    port = free_port()
    configure(ws18, f'[notify.pushgateway]\nurl = "http://127.0.0.1:{port}"\ntimeout = "2s"\n')
    run = ws18.popen("run", "nightly", "--json")
    gateway = None
    try:
        # the end push was refused at least once (nothing listens on the port)
        wait_until(lambda: attempts_of(ws18, "pushgateway", "run.succeeded") >= 1, timeout=30)
        gateway = start_pushgateway_on(tmp_path, port)
        code, record, err = finish(run)
        assert code == 0 and record["status"] == "succeeded"  # delivery never changes these
        run_id = record["run_id"]
        labels = {"hostname": "test-host", "job_name": "nightly"}
        end = note(record, "pushgateway", "run.succeeded")
        with FaultCheck("pushgateway down, then up") as check:
            check(LOST, assert_no_run_lost, ws18, {run_id: "succeeded"},
                  delivered={run_id: [("pushgateway", "run.succeeded")]})
            pushed = (gateway.value("restic_backup_last_success", **labels),
                      gateway.value("restic_backup_running", **labels))
            check(LOST, assert_equal, pushed, (1.0, 0.0))
            check(DUPLICATED, assert_not_duplicated, ws18, runs=1, snapshots=1)
            groups = [g for g in gateway.groups() if g["labels"].get("job_name") == "nightly"]
            check(DUPLICATED, assert_equal, len(groups), 1)
            check(REPO_LOCK, assert_no_repo_lock, ws18)
            check(MESSAGE, assert_clear_message, attempt_errors(end) + err,
                  r"127\.0\.0\.1:\d+.*refused", where="the push's attempt log")
            new = check(JOB_LOCK, assert_job_lock_free, ws18, "nightly")
            if new:
                check(LOST, lambda: assert_equal(
                    note(new, "pushgateway", "run.succeeded")["status"], "delivered"))
    finally:
        kill(run)
        if gateway:
            gateway.process.terminate()
            gateway.process.wait(10)


WEBHOOK = """
[notify.webhooks.ops]
url = "{url}"
on = [{on}]
timeout = "{timeout}"
"""


def webhook(hook: Receiver, *, on: str = '"start", "success", "failure"',
            timeout: str = "2s") -> str:
    return WEBHOOK.format(url=hook.url, on=on, timeout=timeout)


def hits_of(hook: Receiver, event: str) -> int:
    return sum(1 for h in hook.requests if h.json()["type"] == event)


def test_webhook_answering_500_until_it_recovers(ws18: Workspace, hook: Receiver) -> None:
    hook.default = (500, {})
    hook.start()
    configure(ws18, webhook(hook))
    run = ws18.popen("run", "nightly", "--json")
    try:
        wait_until(lambda: hits_of(hook, "run.succeeded") >= 2, timeout=30)
        hook.default = (200, {})
        code, record, err = finish(run)
    finally:
        kill(run)
    assert code == 0 and record["status"] == "succeeded"
    run_id = record["run_id"]
    end = note(record, "webhook:ops", "run.succeeded")
    with FaultCheck("webhook 500, then 200") as check:
        check(LOST, assert_no_run_lost, ws18, {run_id: "succeeded"},
              delivered={run_id: [("webhook:ops", "run.succeeded")]})
        # the start event failed too and was still waiting when the run ended: dropped on
        # purpose (`superseded`), so that it never arrives after the end
        check(LOST, lambda: assert_equal(
            note(record, "webhook:ops", "run.started")["status"] in ("delivered", "superseded"),
            True))
        check(DUPLICATED, assert_not_duplicated, ws18, runs=1, snapshots=1, hooks=hook.requests,
              events={(run_id, "run.started"), (run_id, "run.succeeded")})
        # every attempt arrived, each once
        check(DUPLICATED, assert_equal, hits_of(hook, "run.succeeded"), end["attempts"])
        check(REPO_LOCK, assert_no_repo_lock, ws18)
        check(MESSAGE, assert_clear_message, attempt_errors(end) + err,
              r"answered HTTP 500", where="the webhook's attempt log")
        new = check(JOB_LOCK, assert_job_lock_free, ws18, "nightly")
        if new:
            check(DUPLICATED, assert_not_duplicated, ws18, runs=2, snapshots=2, hooks=hook.requests,
                  events={(run_id, "run.started"), (run_id, "run.succeeded"),
                          (new["run_id"], "run.started"), (new["run_id"], "run.succeeded")})


def test_webhook_answering_too_late(ws18: Workspace, hook: Receiver) -> None:
    """The receiver takes 1.5 s to answer the first two attempts; the client gives up after
    0.5 s. The receiver did get those requests: the third attempt brings the same event again,
    under the same webhook-id, so a receiver that de-duplicates acts on it once."""
    hook.script = [(200, {}, 1.5), (200, {}, 1.5)]
    hook.start()
    configure(ws18, webhook(hook, on='"success", "failure"', timeout="0.5s"))
    code, record = ws18.run_json("nightly")
    assert code == 0 and record["status"] == "succeeded"
    run_id = record["run_id"]
    end = note(record, "webhook:ops", "run.succeeded")
    with FaultCheck("webhook timeout") as check:
        check(LOST, assert_no_run_lost, ws18, {run_id: "succeeded"},
              delivered={run_id: [("webhook:ops", "run.succeeded")]})
        check(DUPLICATED, assert_not_duplicated, ws18, runs=1, snapshots=1, hooks=hook.requests,
              events={(run_id, "run.succeeded")})
        check(DUPLICATED, assert_equal, (len(hook.requests), end["attempts"]), (3, 3))
        check(REPO_LOCK, assert_no_repo_lock, ws18)
        check(MESSAGE, assert_clear_message, attempt_errors(end), r"timed out",
              where="the webhook's attempt log")
        new = check(JOB_LOCK, assert_job_lock_free, ws18, "nightly")
        if new:
            check(LOST, lambda: assert_equal(
                note(new, "webhook:ops", "run.succeeded")["attempts"], 1))


def test_a_run_killed_while_its_webhook_waits_is_delivered_by_the_next_run_at_once(
        ws18: Workspace, hook: Receiver) -> None:
    """The run's process is SIGKILLed while the receiver holds its end event unanswered, so the
    delivery stays leased (120 s) to a dead process. The next `run` sees that the lease's holder
    is gone (its flock under state_dir/leases/ was freed by the kernel) and delivers the event
    within its own wait; the receiver gets it twice under one webhook-id (at least once)."""
    hook.script = [(200, {}, 60.0)]  # the first request is never answered in time
    hook.start()
    configure(ws18, webhook(hook, on='"success", "failure"', timeout="60s"), wait="20s")
    first = ws18.popen("run", "nightly", "--json")
    try:
        wait_until(lambda: len(hook.requests) == 1, timeout=60)
    finally:
        first.kill()
        first.communicate(timeout=10)
    killed_at = time.time()
    first_id = hook.requests[0].json()["data"]["run_id"]
    code, record = ws18.run_json("nightly")
    assert code == 0 and record["status"] == "succeeded"
    second_id = record["run_id"]
    again = [h for h in hook.requests[1:] if h.json()["data"]["run_id"] == first_id]
    with FaultCheck("a run killed mid-delivery") as check:
        check(LOST, assert_no_run_lost, ws18, {first_id: "succeeded", second_id: "succeeded"},
              delivered={first_id: [("webhook:ops", "run.succeeded")],
                         second_id: [("webhook:ops", "run.succeeded")]})
        check(LOST, assert_equal, len(again), 1)
        # within the next run's wait, not when the dead process's lease runs out
        check(LOST, assert_equal, bool(again) and again[0].at - killed_at < 60, True)
        check(DUPLICATED, assert_not_duplicated, ws18, runs=2, snapshots=2, hooks=hook.requests,
              events={(first_id, "run.succeeded"), (second_id, "run.succeeded")})
        check(REPO_LOCK, assert_no_repo_lock, ws18)
        history = History(ws18.state)
        try:
            delivered = (history.get(first_id) or {}).get("notifications")
        finally:
            history.close()
        check(MESSAGE, assert_clear_message, json.dumps(delivered),
              r'"status": "delivered"', r'"response": "HTTP 200"',
              where="the killed run's notifications")
        check(JOB_LOCK, assert_job_lock_free, ws18, "nightly")


def test_webhook_410_gone_disables_the_target_until_its_config_changes(
        ws18: Workspace, hook: Receiver) -> None:
    hook.script = [(410, {}, 0.0)]
    hook.start()
    configure(ws18, webhook(hook, on='"success", "failure"'))
    code_a, first = ws18.run_json("nightly")
    code_b, second = ws18.run_json("nightly")  # the target is disabled: nothing is sent
    assert (code_a, code_b) == (0, 0)
    gone = note(first, "webhook:ops", "run.succeeded")
    skipped = note(second, "webhook:ops", "run.succeeded")
    with FaultCheck("webhook 410 Gone") as check:
        check(LOST, assert_no_run_lost, ws18,
              {first["run_id"]: "succeeded", second["run_id"]: "succeeded"})
        # by design (docs/notifications.md): events of a disabled target are recorded
        # `disabled`, never sent later, even after the target is enabled again
        check(LOST, assert_equal, [(d.state, d.attempts) for d in read_deliveries(ws18)],
              [("disabled", 1), ("disabled", 0)])
        check(DUPLICATED, assert_not_duplicated, ws18, runs=2, snapshots=2, hooks=hook.requests,
              events={(first["run_id"], "run.succeeded")})
        check(REPO_LOCK, assert_no_repo_lock, ws18)
        check(MESSAGE, assert_clear_message, attempt_errors(gone), r"answered HTTP 410",
              where="the webhook's attempt log")
        check(MESSAGE, assert_clear_message, skipped.get("error"),
              r"target disabled.*HTTP 410.*change its configuration",
              where="the disabled delivery's error")
        # the fault clears: the operator changes the target's table
        configure(ws18, webhook(hook, on='"success", "failure"', timeout="3s"))
        new = check(JOB_LOCK, assert_job_lock_free, ws18, "nightly")
        if new:
            check(LOST, lambda: assert_equal(
                note(new, "webhook:ops", "run.succeeded")["status"], "delivered"))
            check(DUPLICATED, assert_not_duplicated, ws18, runs=3, snapshots=3, hooks=hook.requests,
                  events={(first["run_id"], "run.succeeded"),
                          (new["run_id"], "run.succeeded")})


HEALTHCHECKS = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]

[jobs.broken]
kind = "backup"
paths = ["{data}/missing"]
{pre_hook}

[notify]
retry_initial = "{retry}"
retry_max_interval = "{retry}"
cli_wait = "{wait}"

[notify.healthchecks.nightly]
url = "{url}/{check}"
timeout = "2s"
"""
CHECK = "5f3a9e52-3c1b-4f7e-9d2a-6b8c0e1f2a3b"


def healthchecks(ws: Workspace, server: Receiver, *, pre_hook: str = "", retry: str = "0.3s",
                 wait: str = "30s", check: str = CHECK) -> None:
    """A healthchecks target for `nightly` and `broken` (a job that fails at once: its path is
    missing), on a receiver that answers as healthchecks does (a Ping-Body-Limit)."""
    server.default = (200, {"Ping-Body-Limit": "10000"})
    ws.write_config(HEALTHCHECKS.format(data=ws.data, url=server.url, check=check,
                                        pre_hook=pre_hook, retry=retry, wait=wait))


def test_healthchecks_down_through_a_short_failed_run_then_up(ws18: Workspace,
                                                             hook: Receiver) -> None:
    """The server is down when the run starts and when it fails. Its start ping, never
    delivered, is superseded when the failure is queued: the server, back, gets the failure
    alone (it never times the run from a start sent late), and at once."""
    healthchecks(ws18, hook)
    run = ws18.popen("run", "broken", "--json")
    try:
        wait_until(lambda: attempts_of(ws18, "healthchecks:nightly", "run.failed") >= 1,
                   timeout=30)
        hook.start()
        code, record, err = finish(run)
    finally:
        kill(run)
    assert code != 0 and record["status"] == "failed"  # delivery never changes these
    run_id = record["run_id"]
    start = note(record, "healthchecks:nightly", "run.started")
    end = note(record, "healthchecks:nightly", "run.failed")
    with FaultCheck("healthchecks down through a short failed run, then up") as check:
        check(LOST, assert_no_run_lost, ws18, {run_id: "failed"},
              delivered={run_id: [("healthchecks:nightly", "run.failed")]})
        check(LOST, assert_equal, (start["status"], start["error"]),
              ("superseded", "the run ended before it was delivered"))
        # the server got the failure, once, and no start before or after it
        check(DUPLICATED, assert_equal, [r.path for r in hook.requests],
              [f"/{CHECK}/{code}?rid={run_id}"])
        check(DUPLICATED, assert_not_duplicated, ws18, runs=1, snapshots=0)
        check(REPO_LOCK, assert_no_repo_lock, ws18)
        check(MESSAGE, assert_clear_message, attempt_errors(end) + err,
              r"127\.0\.0\.1:\d+.*refused", where="the failure ping's attempt log")
        check(MESSAGE, assert_clear_message, hook.requests[0].body.decode(),
              r"all (source|target) directories/files do not exist", r"finished: failed",
              where="the failure ping's body")
        new = check(JOB_LOCK, assert_job_lock_free, ws18, "nightly")
        if new:
            check(LOST, lambda: assert_equal(
                note(new, "healthchecks:nightly", "run.succeeded")["status"], "delivered"))


def test_a_failed_start_ping_does_not_hold_the_end_behind_its_backoff(
        ws18: Workspace, hook: Receiver, tmp_path: Path) -> None:
    """The start ping is refused (the server is down) and would be retried a minute later;
    the server is back before the run ends. The end goes out when the run ends, within the
    run's 20 s wait, not after the start's retry; the start is dropped."""
    release = tmp_path / "release"
    hold = tmp_path / "hold.sh"
    hold.write_text(f"#!/bin/sh\nwhile [ ! -e {release} ]; do sleep 0.05; done\n")
    hold.chmod(0o755)
    healthchecks(ws18, hook, pre_hook=f'pre_hook = ["{hold}"]', retry="60s", wait="20s")
    run = ws18.popen("run", "broken", "--json")
    try:
        wait_until(lambda: attempts_of(ws18, "healthchecks:nightly", "run.started") >= 1,
                   timeout=30)
        hook.start()
        release.touch()
        code, record, err = finish(run)
    finally:
        kill(run)
    assert code != 0 and record["status"] == "failed"
    run_id = record["run_id"]
    start = note(record, "healthchecks:nightly", "run.started")
    end = note(record, "healthchecks:nightly", "run.failed")
    with FaultCheck("a start ping refused, the server back before the run ends") as check:
        check(LOST, assert_no_run_lost, ws18, {run_id: "failed"},
              delivered={run_id: [("healthchecks:nightly", "run.failed")]})
        check(LOST, assert_equal, (start["status"], start["attempts"], end["attempts"]),
              ("superseded", 1, 1))
        check(DUPLICATED, assert_equal, [r.path for r in hook.requests],
              [f"/{CHECK}/{code}?rid={run_id}"])
        check(DUPLICATED, assert_not_duplicated, ws18, runs=1, snapshots=0)
        check(REPO_LOCK, assert_no_repo_lock, ws18)
        check(MESSAGE, assert_clear_message, attempt_errors(start) + err,
              r"127\.0\.0\.1:\d+.*refused", where="the start ping's attempt log")
        new = check(JOB_LOCK, assert_job_lock_free, ws18, "nightly")
        if new:
            check(LOST, lambda: assert_equal(
                note(new, "healthchecks:nightly", "run.succeeded")["status"], "delivered"))


def test_healthchecks_404_for_a_deleted_check_stops_the_target_until_its_config_changes(
        ws18: Workspace, hook: Receiver) -> None:
    """A check deleted on the server answers 404 to every ping: the first one stops the target
    (as a 410 does) instead of 24 hours of retries; doctor says so; a new URL enables it."""
    healthchecks(ws18, hook)
    hook.default = (404, {})
    hook.start()
    code_a, first = ws18.run_json("nightly")
    code_b, second = ws18.run_json("nightly")  # the target is stopped: nothing is sent
    assert (code_a, code_b) == (0, 0)
    [refused] = [n for n in first["notifications"] if n["attempts"]]  # the start, normally
    skipped = note(second, "healthchecks:nightly", "run.succeeded")
    doctor = json.loads(ws18.cli("doctor", "--json").stdout)
    stopped = [c for c in doctor["checks"] if "stopped" in c["message"]]
    status = ws18.cli("status").stdout
    status_json = json.loads(ws18.cli("status", "--json").stdout)
    with FaultCheck("healthchecks 404: the check was deleted") as check:
        check(LOST, assert_no_run_lost, ws18,
              {first["run_id"]: "succeeded", second["run_id"]: "succeeded"})
        # by design (docs/notifications.md): one attempt, then every delivery `disabled` (the
        # first run's start is attempted, unless the run ended before it could be: superseded)
        check(LOST, assert_equal, [(d.state, d.attempts) for d in read_deliveries(ws18)
                                   if (d.event, d.state) != ("run.started", "superseded")],
              [("disabled", 1)] + [("disabled", 0)] * (2 + (refused["event"] == STARTED)))
        check(DUPLICATED, assert_equal, len(hook.requests), 1)
        check(DUPLICATED, assert_not_duplicated, ws18, runs=2, snapshots=2)
        check(REPO_LOCK, assert_no_repo_lock, ws18)
        check(MESSAGE, assert_clear_message, attempt_errors(refused),
              r"http://127\.0\.0\.1:\d+/\.\.\. answered HTTP 404",
              r"no check with this UUID \(deleted, or a wrong URL\)",
              where="the refused ping's attempt log")
        check(MESSAGE, assert_clear_message, skipped.get("error"),
              r"target disabled.*HTTP 404.*change its configuration",
              where="the stopped delivery's error")
        check(MESSAGE, assert_equal, [(c["status"], c["message"].split(":")[0]) for c in stopped],
              [("fail", "healthchecks")])
        check(MESSAGE, assert_clear_message, json.dumps(stopped),
              r"stopped, nothing is sent to it.*HTTP 404.*change its configuration",
              where="doctor")
        check(MESSAGE, assert_clear_message, status,
              r"notifications to healthchecks:nightly are stopped: .*HTTP 404.*change its "
              r"configuration", where="status")
        check(MESSAGE, assert_equal, list(status_json["targets_stopped"]),
              ["healthchecks:nightly"])
        check(MESSAGE, assert_equal, CHECK in json.dumps(doctor) + json.dumps(first) + status
              + json.dumps(status_json), False)
        # the fault clears: the operator points the target at a check that exists
        healthchecks(ws18, hook, check="0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f")
        new = check(JOB_LOCK, assert_job_lock_free, ws18, "nightly")
        if new:
            check(LOST, lambda: assert_equal(
                note(new, "healthchecks:nightly", "run.succeeded")["status"], "delivered"))


MAIL = """
[notify.mail]
host = "127.0.0.1"
port = {port}
from = "backup@test-host.example"
to = ["ops@example.org"]
timeout = "2s"
"""


def mails_of(smtp: ScriptedSmtp, run_id: str) -> int:
    return sum(1 for m in smtp.messages if m["X-Restic-Runner-Run-Id"] == run_id)


def test_smtp_down_then_deferring_then_accepting(ws18: Workspace, smtp: ScriptedSmtp) -> None:
    smtp.replies = ["451 4.3.0 mailbox busy, try again later"]
    configure(ws18, MAIL.format(port=smtp.port))
    run = ws18.popen("run", "nightly", "--json")
    try:
        # refused at least once: nothing listens on the port yet
        wait_until(lambda: attempts_of(ws18, "mail", "run.succeeded") >= 1, timeout=30)
        smtp.start()
        code, record, err = finish(run)
    finally:
        kill(run)
    assert code == 0 and record["status"] == "succeeded"
    run_id = record["run_id"]
    mail = note(record, "mail", "run.succeeded")
    with FaultCheck("SMTP down, then 451, then accepting") as check:
        check(LOST, assert_no_run_lost, ws18, {run_id: "succeeded"},
              delivered={run_id: [("mail", "run.succeeded")]})
        check(DUPLICATED, assert_not_duplicated, ws18, runs=1, snapshots=1)
        check(DUPLICATED, assert_equal, (mails_of(smtp, run_id), len(smtp.refused)), (1, 1))
        check(REPO_LOCK, assert_no_repo_lock, ws18)
        check(MESSAGE, assert_clear_message, attempt_errors(mail) + err,
              r"refused", r"451 4\.3\.0 mailbox busy", where="the mail's attempt log")
        new = check(JOB_LOCK, assert_job_lock_free, ws18, "nightly")
        if new:
            check(LOST, assert_equal, mails_of(smtp, new["run_id"]), 1)


def test_smtp_5xx_refusal_is_final_and_the_next_run_mails_again(
        ws18: Workspace, smtp: ScriptedSmtp) -> None:
    smtp.replies = ["550 5.7.1 relaying denied"]
    smtp.start()
    configure(ws18, MAIL.format(port=smtp.port))
    code, record = ws18.run_json("nightly")
    assert code == 0 and record["status"] == "succeeded"
    run_id = record["run_id"]
    mail = note(record, "mail", "run.succeeded")
    with FaultCheck("SMTP 550") as check:
        # by design: a 5xx reply is not retried (the server would say the same tomorrow)
        check(LOST, assert_no_run_lost, ws18, {run_id: "succeeded"})
        check(LOST, assert_equal, (mail["status"], mail["attempts"]), ("failed", 1))
        check(DUPLICATED, assert_not_duplicated, ws18, runs=1, snapshots=1)
        check(DUPLICATED, assert_equal, (len(smtp.refused), len(smtp.messages)), (1, 0))
        check(REPO_LOCK, assert_no_repo_lock, ws18)
        check(MESSAGE, assert_clear_message, attempt_errors(mail),
              r"550 5\.7\.1 relaying denied", where="the mail's attempt log")
        new = check(JOB_LOCK, assert_job_lock_free, ws18, "nightly")
        if new:
            check(LOST, assert_equal, mails_of(smtp, new["run_id"]), 1)
