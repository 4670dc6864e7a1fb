"""Load, for correctness only (the numbers are bench/bench_load.py's): a thousand simultaneous
triggers of one job start exactly one run and get no 5xx; twenty jobs on twenty repositories
running at once with verbose output lose no log line and mix none up."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from tests.support.processes import free_port, wait_until
from tests.support.secrets import secret_file
from tests.support.service import Service, start_service
from tests.support.workspace import Workspace

TOKEN = "rrt_load-test-token-0123456789abcdef"


def _serve(ws: Workspace, jobs: str, *, threads: int = 8) -> Service:
    token = secret_file(ws.root / "load.token", TOKEN)
    port = free_port()
    ws.write_config(jobs + f"""
[[clients]]
name = "load"
token_file = "{token}"
jobs = ["*"]
""", top=f'[server]\nbind = "127.0.0.1:{port}"\nworkers = 2\nthreads = {threads}\n')
    return start_service(ws, port)


@pytest.fixture
def service_factory(ws18: Workspace) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


def _get(url: str) -> requests.Response:
    return requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)


def _trigger_all_at_once(port: int, job: str, count: int) -> Counter[int | str]:
    """`count` connections opened first, then one request each released together."""
    barrier = threading.Barrier(count)
    statuses: Counter[int | str] = Counter()
    lock = threading.Lock()

    def one() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.connect()
            barrier.wait(timeout=60)
            connection.request("POST", f"/trigger/{job}",
                               headers={"Authorization": f"Bearer {TOKEN}"})
            response = connection.getresponse()
            response.read()
            outcome: int | str = response.status
        except OSError as exc:
            outcome = type(exc).__name__
        finally:
            connection.close()
        with lock:
            statuses[outcome] += 1

    workers = [threading.Thread(target=one) for _ in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return statuses


def test_a_thousand_simultaneous_triggers_start_exactly_one_run(
        ws18: Workspace, service_factory: list[Service]) -> None:
    slow = ws18.root / "slow"
    slow.mkdir()
    (slow / "blob.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    service = _serve(ws18, f"""
[jobs.nightly]
kind = "backup"
paths = ["{slow}"]
args = ["--limit-upload=1024"]  # KiB/s: the run outlasts the burst
""")
    service_factory.append(service)
    port = int(service.url.rsplit(":", 1)[1])

    statuses = _trigger_all_at_once(port, "nightly", 1000)

    assert sum(statuses.values()) == 1000
    assert statuses[202] == 1, statuses
    assert statuses[409] == 999, statuses  # "job is running", with the running run's id
    runs = _get(service.url + "/runs?job=nightly").json()
    assert len(runs["runs"]) == 1, runs  # a 409 records no skipped run
    run_id = runs["runs"][0]["run_id"]
    requests.post(f"{service.url}/runs/{run_id}/cancel",
                  headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    wait_until(lambda: _get(f"{service.url}/runs/{run_id}/result").status_code == 200,
               timeout=60)
    assert "Traceback" not in service.log.read_text()


def test_twenty_jobs_on_twenty_repositories_lose_no_log_line(
        ws18: Workspace, service_factory: list[Service]) -> None:
    files_per_job = 150
    jobs = []
    for n in range(20):
        repo = ws18.root / f"repo{n:02d}"
        shutil.copytree(ws18.repo, repo)
        data = ws18.root / f"data{n:02d}"
        data.mkdir()
        for i in range(files_per_job):
            (data / f"job{n:02d}-file{i:03d}.txt").write_text(f"{n} {i}\n" * 50)
        jobs.append(f"""
[jobs.j{n:02d}]
kind = "backup"
repository = "{repo}"
paths = ["{data}"]
args = ["--verbose=2"]
""")
    service = _serve(ws18, "".join(jobs))
    service_factory.append(service)

    run_ids = {}
    for n in range(20):
        response = requests.post(f"{service.url}/trigger/j{n:02d}",
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert response.status_code == 202, response.text
        run_ids[n] = response.json()["run_id"]

    def all_ended() -> bool:
        return all(_get(f"{service.url}/runs/{r}/result").status_code == 200
                   for r in run_ids.values())

    wait_until(all_ended, timeout=240, interval=0.5)
    for n, run_id in run_ids.items():
        record = _get(f"{service.url}/runs/{run_id}/result").json()
        assert record["status"] == "succeeded", record
        assert record["stats"]["files_new"] == files_per_job
        log = _get(f"{service.url}/runs/{run_id}/log").text
        items = Counter(json.loads(line)["item"] for line in log.splitlines()
                        if line.startswith('{"message_type":"verbose_status"'))
        mine = {f"{ws18.root}/data{n:02d}/job{n:02d}-file{i:03d}.txt"
                for i in range(files_per_job)}
        file_items = {item for item in items if item.endswith(".txt")}
        assert file_items == mine, f"job {n}: lost {len(mine - file_items)}, " \
                                   f"foreign {sorted(file_items - mine)[:3]}"
        assert all(items[item] == 1 for item in mine), f"job {n}: duplicated lines"
        # restic's summary appears once, as restic's own text (docs/runs.md: the run log)
        assert len(re.findall(r"^snapshot [0-9a-f]{8} saved$", log, re.M)) == 1
