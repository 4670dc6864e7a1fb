"""`make demo` (scripts/demo.sh) end to end, with everything real: restic, `serve`, Debian's
Pushgateway and Prometheus 2.42 on the shipped rules, the webhook receiver checking signatures
with `standardwebhooks`. It must end in a firing ResticRunnerLastRunFailed and verified
webhooks, and leave nothing running or listening: when it succeeds, when it fails, on Ctrl-C.

Each run is started in a session of its own, so "nothing left running" is checked as "no
process left in that session" (the demo's background processes stay in it)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from tests.support.paths import ROOT, VENV_BIN
from tests.support.processes import proc_stats, wait_until

pytestmark = pytest.mark.slow

DEMO = ROOT / "scripts" / "demo.sh"
RECEIVER = ROOT / "scripts" / "demo_webhook_receiver.py"
LISTENING = re.compile(r"demo: listening on 127\.0\.0\.1: API (\d+), Pushgateway (\d+), "
                       r"Prometheus (\d+), webhook receiver (\d+)")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One DEMO_DIR for the module's runs (the demo reuses its data, secrets and repository)."""
    return tmp_path_factory.mktemp("demo")


def session_members(sid: int) -> list[int]:
    return [pid for pid, fields in proc_stats() if int(fields[3]) == sid and fields[0] != "Z"]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


class DemoRun:
    """scripts/demo.sh started as `make demo` starts it, in a new session, its output in a file."""

    def __init__(self, demo_dir: Path, log: Path, **env: str) -> None:
        self.log = log
        self.out = log.open("wb")
        self.proc = subprocess.Popen(
            ["bash", str(DEMO)], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self.out,
            stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "DEMO_DIR": str(demo_dir), **env})

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.out.close()

    def ports(self) -> list[int]:
        found = LISTENING.search(self.output())
        assert found, self.output()
        return [int(p) for p in found.groups()]

    def assert_nothing_left(self) -> None:
        """No process of the demo's session runs, and none of its ports answers."""
        wait_until(lambda: not session_members(self.proc.pid), timeout=10)
        assert not [p for p in self.ports() if listening(p)], self.output()

    def kill_leftovers(self) -> None:
        if self.proc.poll() is None or session_members(self.proc.pid):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def demo_run(demo_dir: Path, tmp_path: Path) -> Iterator[list[DemoRun]]:
    """Start runs with `runs.append(DemoRun(...))`; whatever a failing test leaves is killed."""
    runs: list[DemoRun] = []
    yield runs
    for run in runs:
        run.kill_leftovers()


def secrets_of(demo_dir: Path) -> list[str]:
    found = [(demo_dir / "secrets" / "restic-password").read_text().strip()]
    for name in ("demo-client.whsec", "demo-webhook.whsec"):
        found.append((demo_dir / "secrets" / name).read_text().strip().removeprefix("whsec_"))
    return found


def test_the_demo_ends_in_a_firing_alert_and_verified_webhooks(
        demo_dir: Path, tmp_path: Path, demo_run: list[DemoRun]) -> None:
    run = DemoRun(demo_dir, tmp_path / "demo.out")
    demo_run.append(run)
    assert run.wait(timeout=300) == 0, run.output()
    out = run.output()

    # the alert as Prometheus's /api/v1/alerts reports it
    alert = json.loads(re.search(r"^  (\{\n.*?\n  \})$", out, re.S | re.M).group(1))
    assert alert["state"] == "firing"
    assert alert["labels"] == {"alertname": "ResticRunnerLastRunFailed", "hostname": "demo",
                               "job_name": "broken", "severity": "warning"}
    assert alert["annotations"]["exit_code"] == "1"
    assert "ResticRunnerLastRunFailed{job_name=broken}: firing" in out

    # the failing run through the API, with its error line
    assert re.search(r"^broken: failed \(exit 1\): .*do not exist", out, re.M), out
    # both result webhooks received and verified by standardwebhooks
    assert re.search(r"run\.failed: job broken, run \S+, exit 1 · error: .*do not exist\n"
                     r"    webhook-id msg_\w+: signature verified \(standardwebhooks", out), out
    assert re.search(r"run\.succeeded: job nightly, run \S+, exit 0\n"
                     r"    webhook-id msg_\w+: signature verified", out), out
    assert "NOT verified" not in out
    received = [json.loads(line) for line in
                (demo_dir / "monitoring" / "webhooks.jsonl").read_text().splitlines()]
    assert {(r["type"], r["job"], r["verified"]) for r in received} >= {
        ("run.succeeded", "nightly", True), ("run.failed", "broken", True)}

    # the shipped rules and the documented scrape config, loopback targets substituted
    api, pushgateway, _, _ = run.ports()
    prometheus_yml = (demo_dir / "monitoring" / "prometheus.yml").read_text()
    assert "honor_labels: true" in prometheus_yml
    assert f'"127.0.0.1:{pushgateway}"' in prometheus_yml
    assert f'"127.0.0.1:{api}"' in prometheus_yml
    shipped = (ROOT / "deploy" / "prometheus" / "restic-runner.rules.yml").read_text()
    if "loads the shipped rules unchanged" in out:
        assert (demo_dir / "monitoring" / "restic-runner.rules.yml").read_text() == shipped
    else:
        assert "DEMO COPY of the rules" in out

    assert "nothing listens on ports" in out
    run.assert_nothing_left()
    for secret in secrets_of(demo_dir):
        assert secret not in out


def test_ctrl_c_stops_everything_the_demo_started(
        demo_dir: Path, tmp_path: Path, demo_run: list[DemoRun]) -> None:
    run = DemoRun(demo_dir, tmp_path / "demo.out")
    demo_run.append(run)
    wait_until(lambda: LISTENING.search(run.output()), timeout=240, interval=0.1)
    assert all(listening(p) for p in run.ports())
    os.killpg(run.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
    assert run.wait(timeout=60) != 0
    assert "stopped what it started (4 processes)" in run.output()
    run.assert_nothing_left()


def test_a_failing_demo_stops_everything_it_started(
        tmp_path: Path, demo_run: list[DemoRun]) -> None:
    """The last thing it starts fails: the webhook secret file holds no whsec_ secret, so
    `serve` refuses its config (the receiver's library takes it as it is). The demo fails there,
    and stops the Pushgateway, Prometheus and the receiver it had started already."""
    demo_dir = tmp_path / "demo"
    (demo_dir / "secrets").mkdir(parents=True, mode=0o700)
    (demo_dir / "secrets" / "demo-webhook.whsec").write_text("not-a-whsec-canary\n")
    run = DemoRun(demo_dir, tmp_path / "demo.out")
    demo_run.append(run)
    assert run.wait(timeout=240) != 0
    out = run.output()
    assert "demo: restic-runner serve did not start" in out, out
    assert "demo: FAILED" in out and "not-a-whsec-canary" not in out
    assert "stopped what it started (4 processes)" in out, out
    started = {int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", out)}
    assert len(started) == 4 and not [p for p in started if listening(p)], out
    assert not session_members(run.proc.pid)


def test_a_taken_demo_port_is_refused_before_anything_starts(
        demo_dir: Path, tmp_path: Path, demo_run: list[DemoRun]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = DemoRun(demo_dir, tmp_path / "demo.out", DEMO_PORT=str(port))
        demo_run.append(run)
        assert run.wait(timeout=120) == 1
    out = run.output()
    assert f"demo: DEMO_PORT={port}: 127.0.0.1:{port} is in use" in out, out
    assert "Starting" not in out and "stopped what it started" not in out
    assert not session_members(run.proc.pid)


def test_the_receiver_refuses_a_webhook_whose_signature_does_not_verify(tmp_path: Path) -> None:
    """What the demo prints as verified went through standardwebhooks' check: a signed body is
    accepted (204), the same body with one byte changed is refused (401) and recorded so."""
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    (tmp_path / "whsec").write_text(secret + "\n")
    port_file, events = tmp_path / "port", tmp_path / "events.jsonl"
    proc = subprocess.Popen([str(VENV_BIN / "python"), str(RECEIVER), str(tmp_path / "whsec"),
                             str(port_file), str(events)])
    try:
        wait_until(lambda: port_file.exists(), timeout=15)
        url = f"http://127.0.0.1:{port_file.read_text().strip()}/"
        body = json.dumps({"type": "run.failed", "timestamp": "2026-01-01T00:00:00Z",
                           "data": {"job": "broken", "run_id": "r1", "status": "failed",
                                    "exit_code": 1, "error": "Fatal: boom"}}).encode()
        now = int(time.time())
        signature = Webhook(secret).sign("msg_1", datetime.fromtimestamp(now, UTC), body)
        headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now),
                   "webhook-signature": signature, "Content-Type": "application/json"}

        def post(data: bytes) -> int:
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as error:
                return error.code

        assert post(body) == 204
        assert post(body.replace(b"boom", b"bo0m")) == 401
    finally:
        proc.terminate()
        proc.wait(10)
    first, second = (json.loads(line) for line in events.read_text().splitlines())
    assert first == {"verified": True, "type": "run.failed", "job": "broken", "run_id": "r1",
                     "status": "failed", "exit_code": 1, "error": "Fatal: boom",
                     "webhook_id": "msg_1"}
    assert second["verified"] is False and second["webhook_id"] == "msg_1"
