"""The examples under examples/ work against a real server."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support.paths import ROOT, RUNNER
from tests.support.service import Server


def _dag_module():
    path = ROOT / "examples" / "airflow" / "restic_runner_dag.py"
    spec = importlib.util.spec_from_file_location("restic_runner_dag", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_airflow_dag_requests(server: Server) -> None:
    dag = _dag_module()
    assert dag.DAG is None  # no Airflow here: only the request shapes (tests/airflow/ runs it)
    assert dag.dag_id_for(dag.JOB) == "restic_runner_nightly"
    request = dag.trigger_request("nightly", "restic_runner_nightly",
                                  "scheduled__2026-11-26T03:00:00+00:00")
    auth = dag.connection_headers(server.token)  # the connection's extra

    def send() -> requests.Response:
        return requests.request(request["method"], server.url + request["endpoint"],
                                headers={**auth, **request["headers"]}, data=request["data"],
                                timeout=30)

    first = send()
    assert first.status_code == 202, first.text
    run_id = dag.run_id_of(first.json())
    assert dag.run_id_of(send().json()) == run_id  # a task retry: the same run
    # the sensor: pokes until 200
    while True:
        response = requests.get(server.url + dag.result_endpoint(run_id), headers=auth,
                                timeout=30)
        if dag.result_is_final(response.status_code, response.text):
            break
        time.sleep(0.2)
    record = response.json()
    assert record["status"] == "succeeded"
    assert record["trigger"]["idempotency_key"] == \
        "airflow:restic_runner_nightly:scheduled__2026-11-26T03:00:00+00:00"
    assert "airflow" in server.ws.snapshots()[0]["tags"]
    # the result was read: the same key (a cleared DAG run) starts a new run
    again = dag.run_id_of(send().json())
    assert again != run_id
    assert server.wait_result(again)["status"] == "succeeded"
    assert len(server.ws.snapshots()) == 2


def test_airflow_dag_checks_fail_in_the_services_words(server: Server) -> None:
    """What the wait task raises: the failed run's error line; 410 for a run the service does
    not know; 401 with the service's detail and never the token that was sent."""
    dag = _dag_module()
    (server.ws.data).rename(server.ws.root / "moved")  # the backup fails: no source left
    posted = server.post("/trigger/nightly", b"{}", server.bearer())
    record = server.wait_result(posted.json()["run_id"])
    assert record["status"] == "failed" and record["error"]
    with pytest.raises(dag.RunNotGood) as failed:
        dag.result_is_final(200, json.dumps(record))
    assert str(failed.value).endswith(f"ended failed (exit 1): {record['error']}")
    assert "do not exist" in str(failed.value)

    unknown = server.get("/runs/00000000-0000-4000-8000-000000000000/result")
    with pytest.raises(dag.RunNotGood, match=r"does not know this run \(410 Unknown run\)"):
        dag.result_is_final(unknown.status_code, unknown.text)

    wrong = "rrt_not-the-token-of-any-client"
    refused = server.get(dag.result_endpoint(record["run_id"]), server.bearer(wrong))
    with pytest.raises(dag.RunNotGood, match=r"refused the token \(401\)") as denied:
        dag.result_is_final(refused.status_code, refused.text)
    assert wrong not in str(denied.value) and refused.json()["detail"] in str(denied.value)

    with pytest.raises(dag.ServiceTrouble, match="503: try again"):  # retried by Airflow
        dag.result_is_final(503, json.dumps({"title": "Unavailable", "detail": "try again"}))
    going = {"status": 404, "title": "Not finished", "run_status": "running"}
    assert dag.result_is_final(404, json.dumps(going)) is False
    with pytest.raises(dag.RunNotGood, match="answered 404"):  # not this API: a wrong host
        dag.result_is_final(404, "<html>Not Found</html>")


def test_curl_example(server: Server, tmp_path: Path) -> None:
    # a shim in front of the real curl records its argv: the token must not be in it
    shim = tmp_path / "bin" / "curl"
    shim.parent.mkdir()
    real = shutil.which("curl")
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {tmp_path}/argv\nexec {real} "$@"\n')
    shim.chmod(0o755)
    token_file = server.ws.root / "cron.token"
    done = subprocess.run(["sh", str(ROOT / "examples" / "curl.sh")], capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "URL": server.url, "TOKEN_FILE": str(token_file),
                               "PATH": f"{shim.parent}:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "argv").read_text()
    assert "-H" in argv and token_file.read_text().strip() not in argv
    run_id = json.loads(done.stdout)["run_id"]
    record = server.wait_result(run_id)
    assert record["status"] == "succeeded" and record["params"] == {"tags": ["manual"]}


def test_crontab_line_runs(server: Server) -> None:
    line = next(line for line in (ROOT / "examples" / "crontab").read_text().splitlines()
                if line.startswith("0 3"))
    argv = line.split()[5:]
    assert argv[:2] == ["restic-runner", "trigger"]
    argv[2] = server.url
    argv[argv.index("--secret-file") + 1] = str(server.ws.root / "airflow.whsec")
    argv[argv.index("--wait") + 1] = "60"
    done = subprocess.run([RUNNER, *argv[1:]], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert "nightly: succeeded (exit 0)" in done.stdout
