"""The trigger API end to end: real gunicorn, real restic, real signatures."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.support.paths import RUNNER
from tests.support.processes import free_port, wait_until
from tests.support.service import Server, problem


def _runs(server: Server) -> list[dict]:
    return server.get("/runs").json()["runs"]


def test_bad_credentials_are_401_and_start_nothing(server: Server) -> None:
    body = b"{}"
    # made when sent: a stamp taken once, up front, drifts into the 300 s window on a slow run
    cases: dict[str, Callable[[], dict[str, str]]] = {
        "unsigned": lambda: {"Content-Type": "application/json"},
        "bad signature": lambda: server.sign(body, key=os.urandom(24)),
        "expired": lambda: server.sign(body, stamp=int(time.time()) - 330),
        "future": lambda: server.sign(body, stamp=int(time.time()) + 330),
        "wrong token": lambda: server.bearer("rrt_not-the-token"),
        "malformed signature": lambda: {**server.sign(body), "webhook-signature": "v1,%%%"},
    }
    for name, headers in cases.items():
        response = server.post("/trigger/nightly", body, headers())
        doc = problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), name
        assert doc["detail"] == "missing or invalid credentials", name  # says nothing more
    replayed = server.sign(body)
    assert server.post("/trigger/nightly", body, replayed).status_code == 202
    doc = problem(server.post("/trigger/nightly", body, replayed), 401)
    assert doc["detail"] == "missing or invalid credentials"
    assert len(_runs(server)) == 1  # only the one good request started a run


def test_forbidden_unknown_oversized_malformed(server: Server) -> None:
    limited = server.bearer(server.limited_token)
    problem(server.post("/trigger/nightly", b"", limited), 403)
    problem(server.post("/trigger/nope", b"{}"), 404)
    problem(server.post("/trigger/nope", b"", limited), 403)  # no hint that it does not exist
    problem(server.post("/trigger/nightly", b"x" * 5000), 413)
    doc = problem(server.post("/trigger/nightly", b""), 400)  # signed: a JSON object at least
    assert doc["detail"] == "a signed POST must carry a JSON object body ({} at least)"
    problem(server.post("/trigger/nightly", b"{not json"), 400)
    doc = problem(server.post("/trigger/nightly", b'{"params": {"exclude": ["/"]}}'), 400)
    assert "does not allow" in doc["detail"] and "exclude" not in doc["detail"]
    doc = problem(server.post("/trigger/nightly", b'{"params": {"tags": ["a b"]}}'), 400)
    assert "tags" in doc["detail"]
    problem(server.post("/trigger/check", b'{"params": {"dry_run": true}}'), 400)
    problem(server.get("/runs/does-not-exist"), 404)
    problem(server.get("/nowhere"), 404)
    assert _runs(server) == []


def test_trigger_wait_and_result(server: Server) -> None:
    body = json.dumps({"params": {"tags": ["weekly"]}}).encode()
    response = server.post("/trigger/nightly?wait=20", body)
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["status"] == "succeeded" and record["exit_code"] == 0
    assert record["trigger"]["source"] == "api" and record["trigger"]["client"] == "airflow"
    assert record["params"] == {"tags": ["weekly"]}
    snap = server.ws.snapshots()[0]
    assert "weekly" in snap["tags"]
    assert server.get(f"/runs/{record['run_id']}/result").json() == record
    log = server.get(f"/runs/{record['run_id']}/log")
    assert log.headers["Content-Type"].startswith("text/plain")
    assert "finished: succeeded" in log.text
    jobs = {j["job"]: j for j in server.get("/jobs").json()["jobs"]}
    assert jobs["nightly"]["last_run"]["run_id"] == record["run_id"]
    limited_jobs = server.get("/jobs", server.bearer(server.limited_token)).json()["jobs"]
    assert [j["job"] for j in limited_jobs] == ["check"]
    problem(server.get(f"/runs/{record['run_id']}", server.bearer(server.limited_token)), 404)


def test_result_is_404_while_running_and_cancel_releases_the_lock(server: Server) -> None:
    response = server.post("/trigger/slow")
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    assert response.headers["Location"] == f"/runs/{run_id}"
    doc = problem(server.get(f"/runs/{run_id}/result"), 404)
    assert doc["run_status"] == "running"
    deadline = time.monotonic() + 30
    while not (server.get(f"/runs/{run_id}").json().get("progress") or {}).get("bytes_done"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    busy = server.post("/trigger/slow")
    doc = problem(busy, 409)
    assert doc["run_id"] == run_id and busy.headers["Retry-After"]
    assert server.post(f"/runs/{run_id}/cancel").status_code == 202
    record = server.wait_result(run_id)
    assert record["status"] == "cancelled" and record["exit_code"] == 130
    assert list((server.ws.repo / "locks").iterdir()) == []
    problem(server.post(f"/runs/{run_id}/cancel"), 409)


def test_fifty_simultaneous_triggers_make_one_run(server: Server) -> None:
    def fire(_: int) -> requests.Response:
        return server.post("/trigger/slow", b"", server.bearer())

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(fire, range(50)))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(202) == 1 and codes.count(409) == 49, codes
    run_id = next(r.json()["run_id"] for r in answers if r.status_code == 202)
    assert {r.json()["run_id"] for r in answers if r.status_code == 409} == {run_id}
    server.post(f"/runs/{run_id}/cancel")
    server.wait_result(run_id)
    assert len(_runs(server)) == 1


def test_idempotency_key(server: Server) -> None:
    body = b'{"params": {"dry_run": true}}'
    headers = server.sign(body) | {"Idempotency-Key": "dag-run-2026-11-26"}
    first = server.post("/trigger/nightly", body, headers)
    assert first.status_code == 202, first.text
    retry = server.post("/trigger/nightly", body,
                        server.sign(body) | {"Idempotency-Key": "dag-run-2026-11-26"})
    assert retry.status_code in (200, 202)
    assert retry.json()["run_id"] == first.json()["run_id"]
    other = server.post("/trigger/nightly", b"{}",
                        server.sign(b"{}") | {"Idempotency-Key": "dag-run-2026-11-26"})
    problem(other, 422)
    server.wait_result(first.json()["run_id"])
    assert len(_runs(server)) == 1


def test_a_run_outlives_the_worker_that_accepted_it(server: Server) -> None:
    response = server.post("/trigger/slow", b"", server.bearer())
    run_id = response.json()["run_id"]
    for worker in server.workers():
        os.kill(worker, signal.SIGKILL)
    time.sleep(1)
    record = server.get(f"/runs/{run_id}").json()
    assert record["status"] == "running"
    server.post(f"/runs/{run_id}/cancel", b"", server.bearer())
    assert server.wait_result(run_id)["status"] == "cancelled"


def test_a_run_triggered_just_before_shutdown_is_recorded(server: Server) -> None:
    """SIGTERM right after a trigger: the run is never lost. It ends `succeeded` when restic
    finished first, else `cancelled` (serve stops running jobs on SIGTERM, test_shutdown.py);
    either way its record and last-<job>.json are final once the server has exited."""
    run_id = server.post("/trigger/nightly?wait=0").json()["run_id"]
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=60)
    last = json.loads((server.ws.state / "last-nightly.json").read_text())
    assert last["run_id"] == run_id
    assert (last["status"], last["exit_code"]) in {("succeeded", 0), ("cancelled", 130)}


def test_standardwebhooks_library_signatures_are_accepted(server: Server) -> None:
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook

    secret = (server.ws.root / "airflow.whsec").read_text().strip()
    body = b'{"params": {"dry_run": true}}'
    msg_id = "msg_from_the_library"
    now = datetime.now(tz=UTC)
    signature = Webhook(secret).sign(msg_id, now, body.decode())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": f"v1,bogus {signature}", "Content-Type": "application/json"}
    response = server.post("/trigger/nightly?wait=20", body, headers)
    assert response.status_code == 200, response.text


def test_open_endpoints(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    log = server.log.read_text()
    # one start-up line names the address and the master's pid; gunicorn's own "Listening
    # at:" (empty with reuse_port) is not written
    assert f"serving on http://127.0.0.1:{port} with 2 workers (pid {server.proc.pid})" in log
    assert "Listening at" not in log
    assert requests.get(server.url + "/healthz", timeout=5).json()["status"] == "ok"
    ready = requests.get(server.url + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert {c["name"] for c in ready.json()["checks"]} >= {"config", "state_dir"}
    assert requests.get(server.url + "/keys", timeout=5).json() == {"keys": []}
    problem(requests.get(server.url + "/runs", timeout=5), 401)


def test_trigger_cli(server: Server) -> None:
    secret = str(server.ws.root / "airflow.whsec")
    done = subprocess.run([RUNNER, "trigger", server.url, "nightly", "--secret-file", secret,
                           "--wait", "60", "--tag", "cli"], capture_output=True, text=True,
                          timeout=90)
    assert done.returncode == 0, done.stderr
    assert "nightly: succeeded (exit 0)" in done.stdout
    token = str(server.ws.root / "cron.token")
    done = subprocess.run([RUNNER, "trigger", server.url, "nightly", "--token-file", token],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and len(done.stdout.strip()) == 36  # the run id
    limited = str(server.ws.root / "limited.token")
    done = subprocess.run([RUNNER, "trigger", server.url, "nightly", "--token-file", limited],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "HTTP 403" in done.stderr


def test_failed_attempts_are_rate_limited_but_good_clients_pass(server: Server) -> None:
    bad = server.bearer("rrt_guess")
    codes = [server.post("/trigger/nightly", b"", bad).status_code for _ in range(13)]
    assert codes == [401] * 11 + [429, 429]  # more than 10 failures a minute: blocked
    limited = server.post("/trigger/nightly", b"", bad)
    doc = problem(limited, 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert "credential" not in doc["detail"]
    # the same address with a valid credential is not locked out
    assert server.get("/runs").status_code == 200
    assert server.post("/trigger/nightly?wait=20").status_code == 200


def test_no_secret_reaches_the_service_log(server: Server) -> None:
    import base64

    server.post("/trigger/nightly?wait=20")
    server.post("/trigger/nightly", b"", server.bearer("rrt_wrong"))
    # the refusal is logged once its answer has been sent (as gunicorn's access line was)
    wait_until(lambda: b"authentication failed (bad-token)" in server.log.read_bytes(),
               timeout=10)
    text = server.log.read_bytes()
    for secret in (server.token.encode(), server.limited_token.encode(),
                   base64.b64encode(server.key)):
        assert secret not in text


def test_runs_are_listed_newest_first_with_paging_and_filters(server: Server) -> None:
    ids = [server.post("/trigger/check?wait=20", b"", server.bearer()).json()["run_id"]
           for _ in range(3)]
    page = server.get("/runs?limit=2").json()
    assert [r["run_id"] for r in page["runs"]] == ids[::-1][:2]
    rest = server.get(page["next"]).json()
    assert [r["run_id"] for r in rest["runs"]] == ids[:1]
    assert "next" not in rest
    assert server.get("/runs?job=nightly").json()["runs"] == []
    assert len(server.get("/runs?status=succeeded&job=check").json()["runs"]) == 3
    problem(server.get("/runs?limit=0"), 400)
    problem(server.get("/runs?limit=x"), 400)
    limited = server.bearer(server.limited_token)
    assert len(server.get("/runs", limited).json()["runs"]) == 3  # "check" is its job
    problem(server.get("/runs?job=nightly", limited), 403)


def test_ended_supervisors_are_reaped_by_the_launcher(server: Server) -> None:
    """The launcher is a child subreaper: a run's supervisor is reparented to it (not to PID 1,
    which in a container without an init never reaps), and reaped when the run ends."""
    run_id = server.post("/trigger/slow", b"", server.bearer()).json()["run_id"]
    holder = json.loads((server.ws.state / "locks" / "slow.lock").read_text())
    assert holder["run_id"] == run_id
    supervisor = holder["pid"]
    with open(f"/proc/{supervisor}/stat") as f:
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    children = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True,
                              text=True).stdout.split()
    assert str(parent) in children  # a child of gunicorn's master: the launcher
    with open(f"/proc/{parent}/cmdline", "rb") as f:
        assert b"restic-runner" in f.read()
    server.post(f"/runs/{run_id}/cancel", b"", server.bearer())
    server.wait_result(run_id)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{supervisor}"):  # a zombie still has a /proc entry
        assert time.monotonic() < deadline, "the ended supervisor was not reaped"
        time.sleep(0.1)


def test_a_second_serve_on_the_same_state_dir_is_refused(server: Server) -> None:
    """It would take over the first one's launcher socket."""

    second = subprocess.run([RUNNER, "serve", "--bind", f"127.0.0.1:{free_port()}"],
                            env=server.ws.env(), capture_output=True, text=True, timeout=60,
                            cwd=server.ws.root)
    assert second.returncode == 2, second.stderr
    assert f"another restic-runner serve (pid {server.proc.pid}) uses state_dir" in second.stderr
    assert "Traceback" not in second.stderr
    accepted = server.post("/trigger/nightly?wait=20")
    assert accepted.status_code == 200 and accepted.json()["status"] == "succeeded"


def test_serve_on_a_taken_port_exits_at_once(server: Server, tmp_path: Path) -> None:
    """Workers bind their own sockets (reuse_port): on a taken port each one failed and gunicorn
    started new ones forever. Taken by another service (which listens with SO_REUSEPORT too)
    or by any other program: refused before anything starts."""
    other = tmp_path / "other.toml"
    other.write_text(server.ws.config_path.read_text().replace(
        str(server.ws.state), str(tmp_path / "second-state")))
    env = {**server.ws.env(), "RESTIC_RUNNER_CONFIG": str(other)}
    taken = server.url.removeprefix("http://")
    with socket.create_server(("127.0.0.1", 0)) as plain:
        for address in (taken, f"127.0.0.1:{plain.getsockname()[1]}"):
            second = subprocess.run([RUNNER, "serve", "--bind", address], env=env,
                                    capture_output=True, text=True, timeout=60, cwd=tmp_path)
            assert second.returncode == 2, second.stderr
            assert f"server.bind: cannot listen on {address}" in second.stderr
            assert "Traceback" not in second.stderr
    assert server.post("/trigger/nightly?wait=20").status_code == 200


SQUATTER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError as exc:
    print("refused", exc.errno, flush=True)
    sys.exit(0)
print("bound", flush=True)
time.sleep(60)
"""


def test_a_local_user_cannot_take_the_port_from_under_serve(server: Server,
                                                            tmp_path: Path) -> None:
    """A local user binding the port with SO_REUSEADDR without listening passed the start-up
    check, then listened once the service ran: its workers failed to bind, forever, and the
    squatter got the clients' bearer tokens. The master now holds the port (bound, never
    listening): nobody else can bind it while the service runs, and one bound before is found."""
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
              "-c", SQUATTER]
    port = server.url.rsplit(":", 1)[1]
    late = subprocess.run([*nobody, port], capture_output=True, text=True, timeout=30)
    assert late.stdout.split()[0] == "refused", late.stdout + late.stderr
    assert server.post("/trigger/nightly?wait=20").status_code == 200
    free = str(free_port())
    early = subprocess.Popen([*nobody, free], stdout=subprocess.PIPE, text=True)
    try:
        assert early.stdout is not None and early.stdout.readline().strip() == "bound"
        other = tmp_path / "other.toml"
        other.write_text(server.ws.config_path.read_text().replace(
            str(server.ws.state), str(tmp_path / "second-state")))
        second = subprocess.run([RUNNER, "serve", "--bind", f"127.0.0.1:{free}"],
                                env={**server.ws.env(), "RESTIC_RUNNER_CONFIG": str(other)},
                                capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert second.returncode == 2, second.stderr
        assert f"server.bind: cannot listen on 127.0.0.1:{free}" in second.stderr
        assert "Booting worker" not in second.stdout + second.stderr
    finally:
        early.kill()
        early.wait()
