"""The examples under examples/ work against a real server."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

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
