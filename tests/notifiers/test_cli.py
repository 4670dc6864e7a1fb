"""`notify-test`, `doctor`'s target checks, `config check`'s targets, and the notification of a
run found interrupted."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.support.processes import free_port, wait_until
from tests.support.pushgateway import PG_PASSWORD, PG_USER, Pushgateway
from tests.support.receivers import Receiver
from tests.support.secrets import secret_file
from tests.support.smtp import SMTP_PASSWORD, SMTP_USER, SmtpServer
from tests.support.workspace import Workspace


def configure(ws: Workspace, *, receiver: Receiver, hc: Receiver, smtp: SmtpServer,
              gateway: Pushgateway, extra_job: str = "") -> None:
    pg = secret_file(ws.root / "pg.pw", PG_PASSWORD)
    smtp_pw = secret_file(ws.root / "smtp.pw", SMTP_PASSWORD)
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
{extra_job}

[notify]
retry_initial = "0.2s"
metrics_dir = "{ws.root / 'textfiles'}"

[notify.pushgateway]
url = "{gateway.url}"
username = "{PG_USER}"
password_file = "{pg}"

[notify.webhooks.ops]
url = "{receiver.url}/hook"
on = ["failure"]

[notify.healthchecks.nightly]
url = "{hc.url}/check-uuid"
jobs = ["nightly"]

[notify.mail]
host = "127.0.0.1"
port = {smtp.port}
starttls = true
cafile = "{smtp.cafile}"
username = "{SMTP_USER}"
password_file = "{smtp_pw}"
from = "backup@example.org"
to = ["ops@example.org"]
on = ["failure"]
""")


def test_notify_test_reaches_every_target_whatever_its_filters(
        ws18: Workspace, receiver: Receiver, hc_receiver: Receiver, smtp_server: SmtpServer,
        pushgateway: Pushgateway) -> None:
    configure(ws18, receiver=receiver, hc=hc_receiver, smtp=smtp_server, gateway=pushgateway)
    done = ws18.cli("notify-test", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    results = {r["target"]: r for r in json.loads(done.stdout)["targets"]}
    assert set(results) == {"pushgateway", "webhook:ops", "healthchecks:nightly", "mail",
                            "textfile"}
    assert all(r["result"] == "delivered" for r in results.values()), results
    assert list((ws18.root / "textfiles").iterdir()) == []  # written, then removed
    [hook] = receiver.wait_for(1)
    assert hook.json()["type"] == "run.test"
    [ping] = hc_receiver.wait_for(1)
    assert ping.path.startswith("/check-uuid/log?rid=")  # a test changes no check's state
    [mail] = smtp_server.wait_for(1)
    assert mail["Subject"].startswith("[TEST] Notify test test-host")
    assert pushgateway.groups() == []  # the test group was pushed and deleted again


def test_notify_test_dry_run_sends_nothing(ws18: Workspace, receiver: Receiver,
                                           hc_receiver: Receiver, smtp_server: SmtpServer,
                                           pushgateway: Pushgateway) -> None:
    configure(ws18, receiver=receiver, hc=hc_receiver, smtp=smtp_server, gateway=pushgateway)
    done = ws18.cli("notify-test", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    results = {r["target"]: r for r in json.loads(done.stdout)["targets"]}
    assert {r["result"] for r in results.values()} == {"dry-run"}
    assert results["webhook:ops"]["url"] == f"http://127.0.0.1:{receiver.port}/..."
    assert results["mail"]["subject"].startswith("[TEST] Notify test")
    time.sleep(0.3)
    assert receiver.requests == hc_receiver.requests == smtp_server.messages == []
    assert pushgateway.groups() == []


def test_notify_test_exits_1_when_a_target_fails(ws18: Workspace, hc_receiver: Receiver,
                                                smtp_server: SmtpServer,
                                                pushgateway: Pushgateway) -> None:
    down = Receiver(free_port())
    configure(ws18, receiver=down, hc=hc_receiver, smtp=smtp_server, gateway=pushgateway)
    done = ws18.cli("notify-test")
    assert done.returncode == 1
    assert "webhook:ops: failed" in done.stdout
    assert "mail: delivered" in done.stdout


def test_doctor_checks_targets_without_sending(ws18: Workspace, receiver: Receiver,
                                              hc_receiver: Receiver, smtp_server: SmtpServer,
                                              pushgateway: Pushgateway) -> None:
    configure(ws18, receiver=receiver, hc=hc_receiver, smtp=smtp_server, gateway=pushgateway)
    report = json.loads(ws18.cli("doctor", "--json").stdout)
    notify = [c for c in report["checks"] if c["section"] == "notify"]
    assert {c["message"].split(":")[0] for c in notify if c["status"] == "ok"} == {
        "pushgateway", "webhook", "healthchecks", "mail", "textfile"}
    assert receiver.requests == hc_receiver.requests == smtp_server.messages == []
    secret_file(ws18.root / "pg.pw", "wrong")
    receiver.stop()
    report = json.loads(ws18.cli("doctor", "--json").stdout)
    failed = {c["message"].split(": ")[0] for c in report["checks"] if c["status"] == "fail"}
    assert failed == {"pushgateway", "webhook:ops"}
    assert report["ok"] is False


def test_config_check_lists_targets_masked(ws18: Workspace, receiver: Receiver,
                                          hc_receiver: Receiver, smtp_server: SmtpServer,
                                          pushgateway: Pushgateway) -> None:
    configure(ws18, receiver=receiver, hc=hc_receiver, smtp=smtp_server, gateway=pushgateway)
    summary = json.loads(ws18.cli("config", "check", "--json").stdout)
    targets = summary["notify"]["targets"]
    assert targets["healthchecks:nightly"] == f"http://127.0.0.1:{hc_receiver.port}/..."
    assert "check-uuid" not in json.dumps(summary)


def test_an_interrupted_run_is_notified_by_the_next_command(
        ws18: Workspace, receiver: Receiver, hc_receiver: Receiver, smtp_server: SmtpServer,
        pushgateway: Pushgateway) -> None:
    slow = ws18.root / "slow.sh"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    configure(ws18, receiver=receiver, hc=hc_receiver, smtp=smtp_server, gateway=pushgateway,
              extra_job=f'pre_hook = ["{slow}"]')
    proc = ws18.popen("run", "nightly")
    wait_until(lambda: len(hc_receiver.requests) >= 1, 15, 0.02)  # /start: the run is on
    os.kill(proc.pid, signal.SIGKILL)  # the runner dies under its run
    proc.wait(10)
    ws18.config_path.write_text(ws18.config_path.read_text().replace(f'pre_hook = ["{slow}"]', ""))
    assert ws18.run_json("nightly")[0] == 0  # the next command finds it and tells everyone
    [hook] = receiver.wait_for(1)  # on = ["failure"]: interrupted is one
    assert hook.json()["type"] == "run.interrupted"
    interrupted = hook.json()["data"]
    assert interrupted["status"] == "interrupted"
    [mail] = smtp_server.wait_for(1)
    assert mail["Subject"].startswith("[FAIL interrupted] Backup nightly test-host")
    paths = [r.path for r in hc_receiver.wait_for(4)]
    assert f"/check-uuid/fail?rid={interrupted['run_id']}" in paths


def test_doctor_sends_a_test_event_only_when_asked(ws18: Workspace, receiver: Receiver,
                                                  hc_receiver: Receiver,
                                                  smtp_server: SmtpServer,
                                                  pushgateway: Pushgateway) -> None:
    configure(ws18, receiver=receiver, hc=hc_receiver, smtp=smtp_server, gateway=pushgateway)
    ws18.config_path.write_text(ws18.config_path.read_text().replace(
        f'url = "{receiver.url}/hook"', f'url = "http://hook:pa55-w0rd@127.0.0.1:{receiver.port}/hook"'))
    report = json.loads(ws18.cli("doctor", "--json").stdout)
    assert receiver.requests == []
    warnings = [c["message"] for c in report["checks"] if c["status"] == "warn"]
    assert any(m.startswith("notify.webhooks.ops.url: the URL carries a password inline")
               for m in warnings)
    assert any(m.startswith("notify.healthchecks.nightly: the ping URL is inline")
               for m in warnings)
    assert "pa55-w0rd" not in json.dumps(report)
    report = json.loads(ws18.cli("doctor", "--json", "--send-test").stdout)
    sent = [c for c in report["checks"] if "test event" in c["message"]]
    assert len(sent) == 5 and all(c["status"] == "ok" for c in sent), sent
    [hook] = receiver.wait_for(1)
    assert hook.json()["type"] == "run.test"
    assert "Authorization" not in hook.headers  # userinfo is not turned into a header
