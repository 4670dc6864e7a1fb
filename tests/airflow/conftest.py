"""Fixtures for the Airflow tests: Apache Airflow 3.3.2 from .tools/airflow-venv (made by
scripts/airflow-venv.sh, which `make test` runs; never in the project's .venv), and a real
`serve` for it to call.

- `airflow_db`: an Airflow metadata database (SQLite) migrated once per session (per xdist
  worker); each test copies it, so tests never see each other's DAG runs.
- `airflow_service`: `restic-runner serve` on restic 0.18 with the jobs the DAG copies use
  (`nightly`, `slow`, `broken`, `flaky`) and one bearer-token client `airflow`.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.processes import free_port, stop_process
from tests.support.secrets import secret_file
from tests.support.service import Service, start_serve
from tests.support.workspace import Workspace

AIRFLOW = ROOT / ".tools" / "airflow-venv" / "bin" / "airflow"


@pytest.fixture(scope="session")
def airflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not AIRFLOW.exists():
        pytest.fail(f"{AIRFLOW} missing: run scripts/airflow-venv.sh (`make test` does)")
    home = tmp_path_factory.mktemp("airflow-template")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db")
    done = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return home / "airflow.db"


AIRFLOW_JOBS = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]
params = ["tags"]
allowed_tags = ["airflow"]

[jobs.slow]
kind = "backup"
paths = ["{big}"]
args = ["--limit-upload", "150"]
params = ["tags"]
allowed_tags = ["airflow"]

[jobs.broken]
kind = "backup"
paths = ["{root}/never-there"]
params = ["tags"]
allowed_tags = ["airflow"]

[jobs.flaky]
kind = "backup"
paths = ["{root}/flaky"]
params = ["tags"]
allowed_tags = ["airflow"]

[[clients]]
name = "airflow"
token_file = "{token_file}"
jobs = ["*"]
"""


@pytest.fixture
def airflow_service(ws18: Workspace) -> Iterator[tuple[Service, str]]:
    """(the service, the bearer token of its client `airflow`). `max_wait` is 2 s, so the
    deferrable wait goes round more than once while `slow` runs."""
    token = "rrt_" + base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
    big = ws18.root / "big"
    big.mkdir()
    (big / "random.bin").write_bytes(os.urandom(1536 * 1024))
    port = free_port()
    ws18.write_config(AIRFLOW_JOBS.format(data=ws18.data, big=big, root=ws18.root,
                                          token_file=secret_file(ws18.root / "af.token", token)),
                      top=f'[server]\nbind = "127.0.0.1:{port}"\nworkers = 2\nmax_wait = "2s"\n')
    url = f"http://127.0.0.1:{port}"
    log = ws18.root / "serve.log"
    service = Service(url, start_serve(ws18.env(), ws18.root, url, log), log)
    yield service, token
    stop_process(service.process)
