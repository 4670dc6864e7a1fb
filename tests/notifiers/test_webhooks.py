"""Webhooks: Standard Webhooks signatures (`v1` verified by the `standardwebhooks` library, `v1a`
by cryptography against `/keys`), retries with backoff, Retry-After, 410, restarts, filters."""

from __future__ import annotations

import base64
import itertools
import json
import time
import urllib.request
from pathlib import Path

from standardwebhooks import Webhook

from tests.support.openapi import nullable
from tests.support.paths import RUNNER
from tests.support.processes import free_port, wait_until
from tests.support.receivers import Receiver
from tests.support.secrets import secret_file
from tests.support.service import start_service, token_client
from tests.support.workspace import Workspace

JOBS = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]

[jobs.broken]
kind = "backup"
paths = ["{data}/does-not-exist"]
"""
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
AUTH = "Bearer receiver-token/@:%-canary"


def configure(ws: Workspace, receiver: Receiver, *, webhook: str = "", notify: str = "",
              top: str = "") -> None:
    whsec = secret_file(ws.root / "ops.whsec", WHSEC)
    auth = secret_file(ws.root / "ops.auth", AUTH)
    ws.write_config(JOBS.format(data=ws.data) + f"""
[notify]
retry_initial = "0.2s"
{notify}
[notify.webhooks.ops]
url = "{receiver.url}/hooks/backup"
secret_file = "{whsec}"
auth_header_file = "{auth}"
{webhook}
""", top=top)


def test_v1_signature_verifies_with_standardwebhooks(ws18: Workspace, receiver: Receiver) -> None:
    configure(ws18, receiver)
    code, record = ws18.run_json("nightly")
    assert code == 0
    [request] = receiver.wait_for(1)
    assert request.path == "/hooks/backup"
    payload = Webhook(WHSEC).verify(request.body, request.headers)
    assert payload["type"] == "run.succeeded"
    assert payload["data"]["run_id"] == record["run_id"]
    assert payload["data"]["schema"] == "restic-runner.run/1"
    assert payload["data"]["stats"]["files_new"] == 20
    assert request.headers["Authorization"] == AUTH
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["webhook-id"].startswith("msg_")
    [note] = [n for n in record["notifications"] if n["target"] == "webhook:ops"]
    [attempt] = note["attempt_log"]
    assert attempt["delivered"] is True and attempt["response"] == "HTTP 200"
    assert note == {"target": "webhook:ops", "event": "run.succeeded", "status": "delivered",
                    "attempts": 1, "last_attempt_at": attempt["at"], "response": "HTTP 200",
                    "attempt_log": [attempt]}
    last = json.loads((ws18.state / "last-nightly.json").read_text())
    assert last["notifications"] == record["notifications"]


def test_a_tampered_body_does_not_verify(ws18: Workspace, receiver: Receiver) -> None:
    configure(ws18, receiver)
    ws18.run_json("nightly")
    [request] = receiver.wait_for(1)
    import pytest
    from standardwebhooks.webhooks import WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        Webhook(WHSEC).verify(request.body.replace(b"succeeded", b"failed"), request.headers)


def test_500_500_200_is_delivered_on_the_third_attempt(ws18: Workspace,
                                                      receiver: Receiver) -> None:
    receiver.script = [(500, {}), (500, {})]
    configure(ws18, receiver)
    code, record = ws18.run_json("nightly")
    assert code == 0
    requests = receiver.wait_for(3)
    time.sleep(1.0)
    assert len(receiver.requests) == 3  # exactly once more after the failures
    assert len({r.headers["webhook-id"] for r in requests}) == 1  # one message, three attempts
    for r in requests:
        Webhook(WHSEC).verify(r.body, r.headers)
    [note] = [n for n in record["notifications"] if n["target"] == "webhook:ops"]
    assert note["status"] == "delivered" and note["attempts"] == 3
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    assert gaps[1] > gaps[0] * 1.2  # backoff grows (0.2 s, 0.4 s, ±20 % jitter)


def test_retry_after_is_honoured(ws18: Workspace, receiver: Receiver) -> None:
    receiver.script = [(503, {"Retry-After": "2"})]
    configure(ws18, receiver)
    assert ws18.run_json("nightly")[0] == 0
    first, second = receiver.wait_for(2)
    assert second.at - first.at >= 1.9


def test_410_gone_disables_the_target_until_its_config_changes(ws18: Workspace,
                                                             receiver: Receiver) -> None:
    receiver.script = [(410, {})]
    configure(ws18, receiver)
    code, record = ws18.run_json("nightly")
    assert code == 0
    [note] = [n for n in record["notifications"] if n["target"] == "webhook:ops"]
    assert note["status"] == "disabled" and note["response"] == "HTTP 410"
    code, record = ws18.run_json("nightly")
    assert code == 0
    [note] = [n for n in record["notifications"] if n["target"] == "webhook:ops"]
    assert note["status"] == "disabled" and note["attempts"] == 0
    assert "410" in note["error"]
    assert len(receiver.requests) == 1
    configure(ws18, receiver, webhook='timeout = "5s"')  # the operator fixed the target
    code, record = ws18.run_json("nightly")
    [note] = [n for n in record["notifications"] if n["target"] == "webhook:ops"]
    assert note["status"] == "delivered"
    assert len(receiver.requests) == 2


def test_redirects_are_not_followed(ws18: Workspace, receiver: Receiver) -> None:
    elsewhere = Receiver(free_port()).start()
    try:
        receiver.default = (302, {"Location": f"{elsewhere.url}/stolen"})
        configure(ws18, receiver, notify="cli_wait = 0")
        code, record = ws18.run_json("nightly")
        assert code == 0
        [note] = [n for n in record["notifications"] if n["target"] == "webhook:ops"]
        assert note["status"] == "pending" and note["response"] == "HTTP 302"
        time.sleep(0.5)
        assert elsewhere.requests == []
    finally:
        elsewhere.stop()


def test_on_and_jobs_filters(ws18: Workspace, receiver: Receiver) -> None:
    configure(ws18, receiver, webhook='on = ["start", "failure"]\njobs = ["broken"]')
    assert ws18.run_json("nightly")[0] == 0  # not this job
    code, record = ws18.run_json("broken")
    assert code != 0
    # both events were queued for the target (`on` names them); `broken` fails within
    # milliseconds, so its start, unless sent before the end was queued, is superseded
    # (docs/notifications.md, Order), never sent after the end
    events = {n["event"]: n["status"] for n in record["notifications"]}
    assert events == {"run.started": events["run.started"], "run.failed": "delivered"}
    assert events["run.started"] in ("delivered", "superseded")
    requests = receiver.wait_for(1)
    types = [r.json()["type"] for r in requests]
    assert types == (["run.started", "run.failed"] if events["run.started"] == "delivered"
                     else ["run.failed"])
    assert {r.json()["data"]["job"] for r in requests} == {"broken"}
    assert requests[-1].json()["data"]["exit_code"] == code


def test_a_failed_delivery_changes_no_status_or_exit_code(ws18: Workspace) -> None:
    down = Receiver(free_port())  # never started: connection refused
    configure(ws18, down, notify="cli_wait = 0")
    code, record = ws18.run_json("nightly")
    assert code == 0 and record["status"] == "succeeded"
    [note] = [n for n in record["notifications"] if n["target"] == "webhook:ops"]
    assert note["status"] == "pending" and "refused" in note["error"].lower()
    assert note["error"].startswith("http://127.0.0.1:")  # scheme://host/..., nothing more
    assert "/hooks/backup" not in note["error"]
    code, record = ws18.run_json("broken")
    assert record["status"] == "failed" and code == record["exit_code"] != 0


def test_a_refusing_receivers_words_go_to_the_log_not_to_the_record(ws18: Workspace,
                                                                   receiver: Receiver) -> None:
    """Every API client of the job reads a delivery's error: a receiver's page quoted there,
    masked, would tell a receiver that echoes guesses which guess was a secret. The operator
    still sees what it said, in the log of the process that tried (here the CLI's stderr)."""
    receiver.default = (500, {})  # its body is "OK"
    configure(ws18, receiver, notify="cli_wait = 0")
    done = ws18.cli("run", "nightly", "--json")
    record = json.loads(done.stdout)
    [note] = [n for n in record["notifications"] if n["target"] == "webhook:ops"
              and n["event"] == "run.succeeded"]
    assert note["error"].endswith("answered HTTP 500"), note
    assert "it said: OK" in done.stderr
    # a run's supervisor has no log: doctor keeps the last refusal for the operator
    doctor = json.loads(ws18.cli("doctor", "--json").stdout)
    [line] = [c["message"] for c in doctor["checks"] if "last refused" in c["message"]]
    assert line.startswith("webhook:ops: last refused at ") and line.endswith(
        "(HTTP 500); it said: OK"), line
    receiver.default = (200, {})  # it accepts again: what it said is no longer the news
    assert ws18.run_json("nightly")[0] == 0
    doctor = json.loads(ws18.cli("doctor", "--json").stdout)
    assert not [c for c in doctor["checks"] if "last refused" in c["message"]]


def test_a_receiver_down_during_the_run_gets_the_event_after_a_restart(
        ws18: Workspace) -> None:
    hook_port, api_port = free_port(), free_port()
    receiver = Receiver(hook_port)  # down while the run happens
    # retries at most 1 s apart: doubling from 0.2 s, a first service that lived ~15 s (a
    # loaded machine) would schedule the next attempt later than this test waits
    configure(ws18, receiver, top=f'[server]\nbind = "127.0.0.1:{api_port}"\n',
              notify='retry_max_interval = "1s"')
    with open(ws18.config_path, "a") as f:
        f.write(token_client(ws18))
    service = start_service(ws18, api_port)
    try:
        request = urllib.request.Request(f"{service.url}/trigger/nightly?wait=20", data=b"",
                                         method="POST",
                                         headers={"Authorization": "Bearer "
                                                  "rrt_a-token-for-this-test"})
        with urllib.request.urlopen(request, timeout=30) as response:
            run = json.loads(response.read())
        assert run["status"] == "succeeded"
    finally:
        service.stop()
    receiver.start()  # the receiver comes up while the runner is down
    try:
        time.sleep(0.5)
        assert receiver.requests == []
        service = start_service(ws18, api_port)
        try:
            [request] = receiver.wait_for(1, timeout=20)
            payload = Webhook(WHSEC).verify(request.body, request.headers)
            assert payload["type"] == "run.succeeded"
            assert payload["data"]["run_id"] == run["run_id"]

            def delivered() -> bool:
                req = urllib.request.Request(
                    f"{service.url}/runs/{run['run_id']}",
                    headers={"Authorization": "Bearer rrt_a-token-for-this-test"})
                with urllib.request.urlopen(req, timeout=5) as response:
                    notes = json.loads(response.read())["notifications"]
                return any(n["status"] == "delivered" and n["attempts"] >= 2 for n in notes)

            wait_until(delivered, 15, 0.02)
        finally:
            service.stop()
    finally:
        receiver.stop()


def test_v1a_signature_verifies_against_keys(ws18: Workspace, receiver: Receiver,
                                            tmp_path: Path) -> None:
    import subprocess

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = tmp_path / "runner.whsk"
    subprocess.run([RUNNER, "keys", "generate", "ed25519", "--out", str(key)], check=True,
                   capture_output=True)
    api_port = free_port()
    configure(ws18, receiver, top=f'[server]\nbind = "127.0.0.1:{api_port}"\n'
                                f'[signing]\nkey_file = "{key}"\n')
    service = start_service(ws18, api_port)
    try:
        with urllib.request.urlopen(service.url + "/keys", timeout=5) as response:
            [public] = json.loads(response.read())["keys"]
    finally:
        service.stop()
    code, _ = ws18.run_json("nightly")
    assert code == 0
    [request] = receiver.wait_for(1)
    signatures = dict(s.split(",", 1) for s in request.headers["webhook-signature"].split())
    assert set(signatures) == {"v1", "v1a"}
    signed = (f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}."
              .encode() + request.body)
    verifier = Ed25519PublicKey.from_public_bytes(base64.b64decode(public.removeprefix("whpk_")))
    verifier.verify(base64.b64decode(signatures["v1a"]), signed)  # raises if wrong
    Webhook(WHSEC).verify(request.body, request.headers)  # and v1 still verifies


def test_a_non_ascii_auth_header_is_a_config_error(ws18: Workspace, receiver: Receiver) -> None:
    """Refused when the config is loaded (it could never be sent), not found by the first
    delivery after the run (tests/security/test_secret_validation.py has the other commands)."""
    configure(ws18, receiver)
    secret_file(ws18.root / "ops.auth", "Bearer tøken-🔑")
    done = ws18.cli("run", "nightly")
    assert done.returncode == 2
    assert ("notify.webhooks.ops.auth_header_file: secret file" in done.stderr
            and "must be one line of printable ASCII" in done.stderr)
    assert "tøken" not in done.stdout + done.stderr
    assert receiver.requests == [] and ws18.snapshots() == []


def test_the_retry_budget_is_bounded(ws18: Workspace, receiver: Receiver) -> None:
    receiver.default = (500, {})
    configure(ws18, receiver, notify='retry_give_up_after = "1s"')
    code, record = ws18.run_json("nightly")
    assert code == 0
    [note] = [n for n in record["notifications"] if n["target"] == "webhook:ops"]
    assert note["status"] == "failed"  # given up: the next wait would end past the budget
    assert 2 <= note["attempts"] <= 4
    assert len(receiver.requests) == note["attempts"]


def test_the_next_command_delivers_what_a_run_left_behind(ws18: Workspace) -> None:
    receiver = Receiver(free_port())  # down during the first run
    configure(ws18, receiver, notify="cli_wait = 0")
    code, first = ws18.run_json("nightly")
    assert code == 0
    assert [n["status"] for n in first["notifications"]] == ["pending"]
    receiver.start()
    try:
        configure(ws18, receiver)  # cli_wait back to its default
        code, second = ws18.run_json("nightly")
        assert code == 0
        delivered = {r.json()["data"]["run_id"] for r in receiver.wait_for(2)}
        assert delivered == {first["run_id"], second["run_id"]}
        last = json.loads(ws18.cli("status", "--json").stdout)
        assert last["deliveries_pending"] == 0
    finally:
        receiver.stop()


def test_a_slow_receiver_never_holds_the_job_lock(ws18: Workspace) -> None:
    import http.server
    import threading

    arrived = threading.Event()

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            arrived.set()
            time.sleep(4)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        configure(ws18, Receiver(port))
        first = ws18.popen("run", "nightly", "--json")
        assert arrived.wait(60)  # the first run ended and is delivering its event
        code, second = ws18.run_json("nightly")
        assert second["status"] == "succeeded" and code == 0  # not "skipped": the lock is free
        assert first.wait(60) == 0
    finally:
        server.shutdown()
        server.server_close()


def test_records_with_notifications_match_the_openapi_schema(ws18: Workspace,
                                                             receiver: Receiver) -> None:
    import jsonschema_rs

    from runner.service.openapi import RUN_RECORD

    receiver.script = [(500, {})]
    configure(ws18, receiver, webhook='on = ["start", "success"]')
    code, record = ws18.run_json("nightly")
    assert code == 0
    assert {n["status"] for n in record["notifications"]} == {"delivered"}
    assert any(len(n["attempt_log"]) == 2 for n in record["notifications"])
    jsonschema_rs.validator_for(nullable(RUN_RECORD)).validate(record)
