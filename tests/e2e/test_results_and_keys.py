"""What a client sees at the end of a run: `/runs/<id>/result` (`?wait=` long-polls; `410` for a
run the service does not know), the failed run's error line in `trigger --wait`, and an
Idempotency-Key that is spent once the client has read the run's final record (docs/api.md,
"Idempotency")."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import requests

from tests.support.paths import RUNNER
from tests.support.service import Server, problem

UNKNOWN = "0b6c3f7e-5d1a-4c2b-9e8f-2a1b3c4d5e6f"  # well-formed, never issued here


def _signed_get(server: Server, path: str) -> requests.Response:
    """A GET by client `airflow`, the client that `server.post` triggers as."""
    return server.get(path, headers=server.sign(b""))


def _ended(server: Server, run_id: str) -> dict:
    """Waits for the end through `/runs/<id>`, which does not spend a key (only the final
    record's answer does)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        record = server.get(f"/runs/{run_id}").json()
        if record["status"] not in ("running",):
            return record
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not end")


def test_result_of_a_run_the_service_does_not_know_is_410(server: Server) -> None:
    doc = problem(server.get(f"/runs/{UNKNOWN}/result"), 410)
    assert doc["title"] == "Unknown run" and "run_status" not in doc
    assert UNKNOWN not in doc["detail"]  # the answer does not quote what was asked
    # a run of a job this client may not see answers exactly as one that does not exist
    run_id = server.post("/trigger/nightly").json()["run_id"]
    server.wait_result(run_id)
    limited = server.bearer(server.limited_token)
    assert server.get(f"/runs/{run_id}/result", limited).text == \
        server.get(f"/runs/{UNKNOWN}/result", limited).text
    problem(server.get(f"/runs/{UNKNOWN}"), 404)  # the run itself: still plain 404


def test_result_long_polls_until_the_run_ends(server: Server) -> None:
    run_id = server.post("/trigger/slow").json()["run_id"]
    not_yet = problem(server.get(f"/runs/{run_id}/result"), 404)
    assert not_yet["run_status"] == "running"
    response = server.get(f"/runs/{run_id}/result?wait=20")  # one request, the whole run
    assert response.status_code == 200, response.text
    assert response.json()["run_id"] == run_id and response.json()["status"] == "succeeded"
    problem(server.get(f"/runs/{run_id}/result?wait=soon"), 400)


def test_trigger_wait_prints_the_error_line_and_takes_config(server: Server) -> None:
    shutil.rmtree(server.ws.data)  # restic: all target directories/files do not exist
    token = server.ws.root / "cron.token"
    token.write_text(server.token + "\n")
    token.chmod(0o600)
    for placement in (["--config", str(server.ws.config_path), "trigger"],
                      ["trigger", "--config", str(server.ws.config_path)]):
        done = subprocess.run(
            [RUNNER, *placement, server.url, "nightly", "--token-file", str(token),
             "--wait", "60"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, (done.stdout, done.stderr)
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith("nightly: failed (exit 1): "), line
        assert "do not exist" in line, line
    record = server.get("/runs?job=nightly").json()["runs"][0]
    assert record["error"] and record["error"] in line


def test_a_key_is_spent_once_its_final_record_was_read(server: Server) -> None:
    key = {"Idempotency-Key": "airflow:restic_runner_nightly:scheduled__2026-12-06"}
    first = server.post("/trigger/nightly", b"{}", {**server.sign(b"{}"), **key})
    assert first.status_code == 202, first.text
    run_a = first.json()["run_id"]
    _ended(server, run_a)
    # a retry of a lost request, after the run ended: nobody read its result -> the same run
    again = server.post("/trigger/nightly", b"{}", {**server.sign(b"{}"), **key})
    assert again.json()["run_id"] == run_a
    # another client reading the result does not spend this client's key
    assert server.get(f"/runs/{run_a}/result").status_code == 200
    again = server.post("/trigger/nightly", b"{}", {**server.sign(b"{}"), **key})
    assert again.json()["run_id"] == run_a
    # this client read it (a sensor's last poke): the same key now starts a new run
    assert _signed_get(server, f"/runs/{run_a}/result").status_code == 200
    rerun = server.post("/trigger/nightly", b"{}", {**server.sign(b"{}"), **key})
    assert rerun.status_code == 202, rerun.text
    run_b = rerun.json()["run_id"]
    assert run_b != run_a
    retry = server.post("/trigger/nightly", b"{}", {**server.sign(b"{}"), **key})
    assert retry.json()["run_id"] == run_b  # and that run is the key's until it is read
    other = b'{"params": {"tags": ["x"]}}'
    problem(server.post("/trigger/nightly", other, {**server.sign(other), **key}), 422)
    # a trigger that waited and got the final record has read it too
    waited = server.post("/trigger/check?wait=20", b"{}",
                         {**server.sign(b"{}"), "Idempotency-Key": "cron-check-1"})
    assert waited.status_code == 200, waited.text
    fresh = server.post("/trigger/check", b"{}",
                        {**server.sign(b"{}"), "Idempotency-Key": "cron-check-1"})
    assert fresh.status_code == 202 and fresh.json()["run_id"] != waited.json()["run_id"]
    assert len(server.get("/runs?job=nightly").json()["runs"]) == 2


def test_refusals_say_when_to_ask_again(server: Server) -> None:
    """A client looping on 401/403 (Airflow's deferrable sensor does, without sleeping) is told
    to wait; asking again at once will not help."""
    unauthorized = server.post("/trigger/nightly", b"{}", server.bearer("rrt_wrong"))
    problem(unauthorized, 401)
    assert int(unauthorized.headers["Retry-After"]) >= 30
    forbidden = server.post("/trigger/nightly", b"", server.bearer(server.limited_token))
    problem(forbidden, 403)
    assert int(forbidden.headers["Retry-After"]) >= 30


def test_an_answer_nobody_received_spends_no_key(server: Server) -> None:
    """A client that gave up during its long-poll (killed, timed out: its side closed) never
    read the final record the service then answers: its retry must find the same run."""
    key = {"Idempotency-Key": "cronjob-nightly-29433780"}
    for number, poll in enumerate(("/runs/{run_id}/result?wait=20", "/trigger/slow?wait=20")):
        # new data: slow uploads at 150 KiB/s, so the run outlasts the client's second
        (server.ws.root / "big" / f"more-{number}.bin").write_bytes(os.urandom(1536 * 1024))
        run_id = server.post("/trigger/slow", b"{}", {**server.sign(b"{}"), **key}).json()[
            "run_id"]
        body = b"{}" if poll.startswith("/trigger") else b""
        headers = {**server.sign(body), **key, "Content-Length": str(len(body))}
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        method = "POST" if body else "GET"
        with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as conn:
            conn.sendall(f"{method} {poll.format(run_id=run_id)} HTTP/1.1\r\nHost: x\r\n"
                         f"{head}\r\n".encode() + body)
            time.sleep(1)  # the long-poll is held; then the client goes away
        _ended(server, run_id)
        time.sleep(0.5)  # the service has answered the gone client by now
        retry = server.post("/trigger/slow", b"{}", {**server.sign(b"{}"), **key})
        assert retry.json()["run_id"] == run_id, poll
        assert _signed_get(server, f"/runs/{run_id}/result").status_code == 200  # read: spent
