"""examples/airflow/restic_runner_dag.py under a real Apache Airflow 3.3.2 with
apache-airflow-providers-http 6.3.0 (`airflow dags test`, `airflow tasks test`, `airflow tasks
clear`), against a real `serve` and real restic: success, failure with the run's error line,
a task retry and a cleared DAG run, a run id the service does not know. Each scenario in both
waits: the sensor in reschedule mode and the deferrable variant (`DEFERRABLE = True`).

The DAG files are copies of the example with only its constants changed, as a user would:
`JOB`, `DEFERRABLE`, and shorter pauses (`POKE_SECONDS`, `MIN_ROUND_SECONDS`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.paths import ROOT
from tests.support.secrets import encodings
from tests.support.service import Service
from tests.support.workspace import Workspace

AIRFLOW = ROOT / ".tools" / "airflow-venv" / "bin" / "airflow"
EXAMPLE = ROOT / "examples" / "airflow" / "restic_runner_dag.py"
VARIANTS = ["reschedule", "deferrable"]


def _set(text: str, name: str, value: str) -> str:
    """The example with one constant changed (fails when the example no longer has it)."""
    changed, count = re.subn(rf"^{name} = .*$", f"{name} = {value}", text, flags=re.M)
    assert count == 1, f"{EXAMPLE} has no single `{name} = ...` line"
    return changed


@dataclass
class Airflow:
    """Airflow's CLI on a home of its own: a copy of the migrated database, a DAG folder, the
    connection `restic_runner` as AIRFLOW_CONN_RESTIC_RUNNER in the JSON form, the token in
    its extra as the Authorization header (docs/airflow-and-cron.md)."""

    home: Path
    service: Service
    token: str
    outputs: list[str] = field(default_factory=list)

    @property
    def dags(self) -> Path:
        return self.home / "dags"

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        connection = {"conn_type": "http", "host": self.service.url,
                      "extra": {"Authorization": f"Bearer {self.token}"}}
        env.update(AIRFLOW_HOME=str(self.home), AIRFLOW__CORE__DAGS_FOLDER=str(self.dags),
                   AIRFLOW__CORE__LOAD_EXAMPLES="False",
                   AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{self.home}/airflow.db",
                   AIRFLOW_CONN_RESTIC_RUNNER=json.dumps(connection))
        return env

    def add_dag(self, job: str, variant: str = "reschedule") -> str:
        """A copy of the example for `job`; its dag_id."""
        text = _set(EXAMPLE.read_text(), "JOB", json.dumps(job))
        text = _set(text, "DEFERRABLE", str(variant == "deferrable"))
        text = _set(_set(text, "POKE_SECONDS", "1"), "MIN_ROUND_SECONDS", "2")
        (self.dags / f"restic_runner_{job}.py").write_text(text)
        return f"restic_runner_{job}"

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([AIRFLOW, *args], env=self.env(), cwd=self.home, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        self.outputs.append(done.stdout)
        return done

    def dags_test(self, dag_id: str, date: str, *options: str) -> subprocess.CompletedProcess[str]:
        return self.run("dags", "test", dag_id, date, *options)

    def tasks_test(self, dag_id: str, task_id: str,
                   run_id: str) -> subprocess.CompletedProcess[str]:
        return self.run("tasks", "test", dag_id, task_id, run_id)

    def dag_run_id(self, dag_id: str, date: str) -> str:
        """Airflow's run_id of the DAG run at logical date `date` (YYYY-MM-DD)."""
        done = self.run("dags", "list-runs", dag_id, "-o", "json")
        runs = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("[")))
        return next(r["run_id"] for r in runs if r["logical_date"].startswith(date))

    def assert_token_nowhere(self) -> None:
        """The bearer token is in no output of Airflow and in no file it wrote: its logs, its
        database (task arguments, rendered fields, stored triggers, XCom)."""
        written = b"".join(p.read_bytes() for p in self.home.rglob("*") if p.is_file())
        for form in encodings(self.token):
            assert all(form.decode(errors="replace") not in out for out in self.outputs)
            assert form not in written


@pytest.fixture
def airflow(airflow_db: Path, airflow_service: tuple[Service, str], tmp_path: Path) -> Airflow:
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    shutil.copy(airflow_db, home / "airflow.db")
    service, token = airflow_service
    return Airflow(home, service, token)


# --- the service's side --------------------------------------------------------------------------

def runs_of(airflow: Airflow, job: str) -> list[dict[str, Any]]:
    """The job's run records, oldest first (GET /runs/<id> never spends an Idempotency-Key)."""
    response = requests.get(f"{airflow.service.url}/runs", params={"job": job}, timeout=30,
                            headers={"Authorization": f"Bearer {airflow.token}"})
    assert response.status_code == 200, response.text
    return sorted(response.json()["runs"], key=lambda run: run["started_at"])


def ended(airflow: Airflow, job: str, count: int) -> list[dict[str, Any]]:
    """The job's `count` runs once all have ended."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = runs_of(airflow, job)
        if len(runs) == count and all(run["status"] != "running" for run in runs):
            return runs
        time.sleep(0.2)
    raise AssertionError(f"{job}: not {count} ended runs: {runs_of(airflow, job)}")


def requests_for(airflow: Airflow, path: str) -> int:
    """How many requests for `path` (query string aside) the service's access log shows."""
    pattern = rf'"GET {re.escape(path)}(\?[^ ]*)? HTTP'
    return len(re.findall(pattern, airflow.service.log.read_text()))


# --- the scenarios -------------------------------------------------------------------------------

def test_copies_for_two_jobs_load_side_by_side(airflow: Airflow) -> None:
    """Item 6: the dag_id comes from JOB, so a copy for a second job is no duplicate."""
    shutil.copy(EXAMPLE, airflow.dags / "restic_runner_dag.py")  # unchanged: job nightly
    airflow.add_dag("slow")
    assert airflow.run("dags", "reserialize").returncode == 0
    errors = airflow.run("dags", "list-import-errors", "-o", "json").stdout
    assert errors.splitlines()[-1] == "[]", errors  # AirflowDagDuplicatedIdException was one
    listed = airflow.run("dags", "list", "-o", "json").stdout
    assert '"restic_runner_nightly"' in listed and '"restic_runner_slow"' in listed


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_run_that_succeeds(airflow: Airflow, ws18: Workspace, variant: str) -> None:
    """`slow` runs a few seconds: the wait says "not yet" several times, each time without an
    ERROR line (item 11), then the DAG run succeeds with one snapshot."""
    dag_id = airflow.add_dag("slow", variant)
    done = airflow.dags_test(dag_id, "2026-11-26")
    assert done.returncode == 0, done.stdout[-5000:]
    [run] = ended(airflow, "slow", 1)
    assert run["status"] == "succeeded" and run["params"] == {"tags": ["airflow"]}
    key = f"airflow:{dag_id}:{airflow.dag_run_id(dag_id, '2026-11-26')}"
    assert run["trigger"]["idempotency_key"] == key
    assert [s["tags"] for s in ws18.snapshots()] == [["airflow"]]
    not_yet = requests_for(airflow, f"/runs/{run['run_id']}/result") - 1
    assert not_yet >= 1, "the run ended before the first question: nothing was tested"
    if variant == "reschedule":
        assert done.stdout.count("Poking: ") == not_yet + 1
    assert "[error" not in done.stdout and "HTTP error" not in done.stdout
    airflow.assert_token_nowhere()


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_failed_run_fails_the_dag_run_with_its_error_line(airflow: Airflow,
                                                            variant: str) -> None:
    dag_id = airflow.add_dag("broken", variant)
    done = airflow.dags_test(dag_id, "2026-11-26")
    assert done.returncode != 0
    [run] = ended(airflow, "broken", 1)
    assert run["status"] == "failed" and "do not exist" in run["error"]
    assert (f"AirflowFailException: restic-runner run {run['run_id']} of job broken ended "
            f"failed (exit 1): {run['error']}") in done.stdout
    assert requests_for(airflow, f"/runs/{run['run_id']}/result") <= 2  # no retries
    airflow.assert_token_nowhere()


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_run_the_service_does_not_know_ends_the_wait_at_once(airflow: Airflow,
                                                               variant: str) -> None:
    """Item 9: the trigger task marked done without running leaves no run id (a lost one):
    the service answers 410 and the wait fails with its words after one question, instead of
    poking for 8 h (or, deferred on the provider's HttpSensorTrigger, spinning)."""
    dag_id = airflow.add_dag("nightly", variant)
    done = airflow.dags_test(dag_id, "2026-11-26", "--mark-success-pattern", "^trigger$")
    assert done.returncode != 0
    assert ("AirflowFailException: restic-runner does not know this run (410 Unknown run): "
            "this service has no record of the run") in done.stdout
    # one question: a 410 is logged as a refusal, up to 5 lines a minute per worker
    assert airflow.service.log.read_text().count("refused 410 from") == 1
    assert runs_of(airflow, "nightly") == []


def test_a_retry_follows_the_same_run_and_a_cleared_dag_run_runs_again(
        airflow: Airflow, ws18: Workspace) -> None:
    """Item 7 with the real Airflow. The trigger task run again before anyone read the result
    (a retry) gets the same run; once the wait task has read the failed result, clearing the
    DAG run (`airflow tasks clear`) and running its tasks again (`airflow tasks test` on the
    same DAG run: what the scheduler would do) starts a new run under the same key, and a
    second clear a third run: a second snapshot."""
    dag_id = airflow.add_dag("flaky")
    date = "2026-11-27"
    first = airflow.dags_test(dag_id, date, "--mark-success-pattern", "^wait_for_result$")
    assert first.returncode == 0, first.stdout[-5000:]
    dag_run = airflow.dag_run_id(dag_id, date)
    key = f"airflow:{dag_id}:{dag_run}"
    [failed] = ended(airflow, "flaky", 1)  # its source directory does not exist yet

    retry = airflow.tasks_test(dag_id, "trigger", dag_run)
    assert "Task failed" not in retry.stdout, retry.stdout[-5000:]
    assert ended(airflow, "flaky", 1) == [failed]  # the same run, no second one

    read = airflow.tasks_test(dag_id, "wait_for_result", dag_run)  # exits 0 on failure too
    assert f"ended failed (exit 1): {failed['error']}" in read.stdout, read.stdout[-5000:]

    (ws18.root / "flaky").mkdir()
    (ws18.root / "flaky" / "file.txt").write_text("now there\n")
    for count in (2, 3):
        cleared = airflow.run("tasks", "clear", dag_id, "-s", date, "-e", date, "-y")
        assert cleared.returncode == 0, cleared.stdout[-5000:]
        again = airflow.tasks_test(dag_id, "trigger", dag_run)
        assert "Task failed" not in again.stdout, again.stdout[-5000:]
        runs = ended(airflow, "flaky", count)
        waited = airflow.tasks_test(dag_id, "wait_for_result", dag_run)
        assert "Success criteria met" in waited.stdout, waited.stdout[-5000:]
    assert [run["status"] for run in runs] == ["failed", "succeeded", "succeeded"]
    assert {run["trigger"]["idempotency_key"] for run in runs} == {key}
    assert len(ws18.snapshots()) == 2
    airflow.assert_token_nowhere()


def test_the_connection_wants_the_json_form(airflow: Airflow) -> None:
    """Item 10: the URI form `https://:TOKEN@host:443` gives the HTTP hook a plain http://
    base URL (the scheme becomes conn_type; the hook's scheme is the empty schema); the JSON
    form with `"host": "https://…"` keeps https."""
    probe = (
        "from airflow.providers.http.hooks.http import HttpHook\n"
        "for conn_id in ('uri_form', 'json_form'):\n"
        "    hook = HttpHook(method='GET', http_conn_id=conn_id)\n"
        "    hook.get_conn()\n"
        "    print(conn_id, hook.base_url)\n")
    env = airflow.env()
    env["AIRFLOW_CONN_URI_FORM"] = "https://:rrt_x@backup.example.org:443"
    env["AIRFLOW_CONN_JSON_FORM"] = json.dumps(
        {"conn_type": "http", "host": "https://backup.example.org", "password": "rrt_x"})
    done = subprocess.run([AIRFLOW.parent / "python", "-c", probe], env=env, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "uri_form http://backup.example.org:443\n" in done.stdout
    assert "json_form https://backup.example.org\n" in done.stdout


# The deferrable wait's decisions, one by one, with Airflow's own classes and the service's
# real answers. `airflow dags test` resumes a deferred task without the kwargs it deferred with
# (Airflow 3.3.2), so the "answered at once: pause" branch that needs `asked_at` runs here.
LONG_POLL_PROBE = """
import importlib.util, json, sys, time
import requests
from airflow.providers.http.triggers.http import HttpResponseSerializer
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

spec = importlib.util.spec_from_file_location("restic_runner_dag", sys.argv[1])
dag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dag)
url, token = sys.argv[2], sys.argv[3]
auth = dag.connection_headers(token)
run_id = requests.post(url + "/trigger/slow", headers=auth, timeout=30).json()["run_id"]
going = requests.get(url + dag.result_endpoint(run_id), headers=auth, timeout=30)
unknown = requests.get(url + dag.result_endpoint("no-such-run"), headers=auth, timeout=30)
wait = dag.LongPollResult(task_id="wait", http_conn_id="restic_runner",
                          endpoint=dag.result_endpoint(run_id, dag.LONG_POLL_SECONDS))

def decide(response, asked_at=None, event=None):
    event = event or {"status": "success", "response": HttpResponseSerializer.serialize(response)}
    try:
        return {"returned": wait.answered({}, event, asked_at)}
    except TaskDeferred as deferred:
        return {"defers_on": type(deferred.trigger).__name__, "then": deferred.method_name,
                "asked_at": (deferred.kwargs or {}).get("asked_at") is not None}
    except AirflowFailException as failure:
        return {"fails_for_good": str(failure)}
    except Exception as error:
        return {"fails_this_try": f"{type(error).__name__}: {error}"}

print(json.dumps({
    "status": going.status_code,
    "not_yet_at_once": decide(going, asked_at=time.time()),
    "not_yet_after_a_long_poll": decide(going, asked_at=time.time() - dag.MIN_ROUND_SECONDS),
    "not_yet_unknown_when_asked": decide(going),
    "unknown_run": decide(unknown, asked_at=time.time()),
    "not_reached": decide(None, time.time(), {"status": "error", "message": "connect refused"}),
}))
"""


def test_the_deferrable_wait_pauses_asks_again_or_ends(airflow: Airflow) -> None:
    done = subprocess.run([AIRFLOW.parent / "python", "-c", LONG_POLL_PROBE, str(EXAMPLE),
                           airflow.service.url, airflow.token], env=airflow.env(), text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-5000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["status"] == 404  # `slow` is still running
    pause = {"defers_on": "TimeDeltaTrigger", "then": "paused", "asked_at": False}
    assert seen["not_yet_at_once"] == pause  # the service did not hold the request: no spin
    assert seen["not_yet_unknown_when_asked"] == pause
    assert seen["not_yet_after_a_long_poll"] == {"defers_on": "HttpTrigger", "then": "answered",
                                                 "asked_at": True}
    assert seen["unknown_run"]["fails_for_good"].startswith(
        "restic-runner does not know this run (410 Unknown run)")
    assert seen["not_reached"] == {
        "fails_this_try": "AirflowException: restic-runner not reached: connect refused"}
