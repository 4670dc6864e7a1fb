"""The examples under examples/ work against a real server."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time

import requests

from tests.conftest import ROOT, RUNNER
from tests.e2e.conftest import Server


def _dag_module():
    path = ROOT / "examples" / "airflow" / "restic_runner_dag.py"
    spec = importlib.util.spec_from_file_location("restic_runner_dag", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_airflow_dag_requests(server: Server) -> None:
    dag = _dag_module()
    assert dag.DAG is None  # no Airflow in CI: only the request shapes are exercised
    request = dag.trigger_request("nightly", "restic_runner_nightly",
                                  "scheduled__2026-11-26T03:00:00+00:00", server.token)

    def send() -> requests.Response:
        return requests.request(request["method"], server.url + request["endpoint"],
                                headers=request["headers"], data=request["data"], timeout=30)

    first = send()
    assert first.status_code == 202, first.text
    run_id = dag.run_id_of(first.json())
    assert dag.run_id_of(send().json()) == run_id  # a task retry: the same run
    # the sensor: pokes until 200
    while True:
        response = requests.get(server.url + dag.result_endpoint(run_id),
                                headers={"Authorization": f"Bearer {server.token}"}, timeout=30)
        if dag.result_is_final(response.status_code, response.json()):
            break
        time.sleep(0.2)
    assert response.json()["status"] == "succeeded"
    assert "airflow" in server.ws.snapshots()[0]["tags"]


def test_curl_example(server: Server) -> None:
    done = subprocess.run(["sh", str(ROOT / "examples" / "curl.sh")], capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "URL": server.url,
                               "TOKEN_FILE": str(server.ws.root / "cron.token")})
    assert done.returncode == 0, done.stderr
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
