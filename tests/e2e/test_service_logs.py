"""Service logs go to stdout, as JSON lines with `[server] log_format = "json"`, masked."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import requests

from tests.support.paths import RUNNER
from tests.support.processes import free_port, wait_until
from tests.support.secrets import secret_file
from tests.support.workspace import Workspace


def test_json_lines_on_stdout(ws18: Workspace) -> None:
    port = free_port()
    token = secret_file(ws18.root / "t.token", "rrt_service-log-token")
    ws18.write_config(f"""
[jobs.nightly]
kind = "check"
schedule = "every 1h"

[[clients]]
name = "c"
token_file = "{token}"
jobs = ["*"]
""", top=f'[server]\nbind = "127.0.0.1:{port}"\nlog_format = "json"\n')
    out, err = ws18.root / "stdout.log", ws18.root / "stderr.log"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([RUNNER, "serve"], env=ws18.env(), stdout=o, stderr=e,
                                cwd=ws18.root)
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(url + "/healthz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(up, timeout=30)
        for _ in range(12):  # failed authentications: a throttled warning
            requests.post(url + "/trigger/nightly",
                          headers={"Authorization": "Bearer rrt_service-log-token-x"}, timeout=5)
        wait_until(lambda: "authentication failed" in out.read_text(), timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    time.sleep(0.2)
    lines = [line for line in out.read_text().splitlines() if line.strip()]
    docs = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "pid", "message"} <= set(docs[0])
    loggers = {d["logger"] for d in docs}
    assert "gunicorn.access" in loggers and "gunicorn.error" in loggers
    assert "restic_runner.scheduler" in loggers
    assert any("authentication failed" in d["message"] for d in docs)
    assert any(d["logger"] == "gunicorn.access" and "/healthz" in d["message"] for d in docs)
    assert "rrt_service-log-token" not in out.read_text()
    assert err.read_text().strip() == ""
