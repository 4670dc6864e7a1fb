"""Airflow DAG: start a restic-runner job, then wait for its result.

- HttpOperator POSTs /trigger/<job> with an Idempotency-Key built from the DAG run, so a retried
  task returns the same run instead of starting a second backup.
- HttpSensor polls /runs/<run_id>/result: 404 until the run has ended (the sensor keeps
  poking), then 200 with the run record. `mode="reschedule"` frees the worker slot between
  pokes. (The HTTP provider ignores `deferrable=True` on a sensor with a `response_check`:
  docs/airflow-and-cron.md shows the deferrable variant.)
- The Airflow connection `restic_runner` holds the base URL (host) and, in its password field,
  a bearer token of a [[clients]] entry that may run the job.

The request shapes are plain functions above the DAG, so they can be tested without Airflow
(tests/e2e/test_examples.py runs them against a real server).
"""

from __future__ import annotations

import json
from typing import Any

JOB = "nightly"
CONNECTION_ID = "restic_runner"


def trigger_request(job: str, dag_id: str, run_id: str, token: str) -> dict[str, Any]:
    """What the trigger task sends."""
    return {
        "method": "POST",
        "endpoint": f"/trigger/{job}",
        "headers": {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                    "Idempotency-Key": f"airflow:{dag_id}:{run_id}"},
        "data": json.dumps({"params": {"tags": ["airflow"]}}),
    }


def run_id_of(response_json: dict[str, Any]) -> str:
    """The trigger task's XCom value."""
    return response_json["run_id"]


def result_endpoint(run_id: str) -> str:
    return f"/runs/{run_id}/result"


def result_is_final(status_code: int, body: dict[str, Any]) -> bool:
    """The sensor's check: done on 200; fail the task when the run did not succeed."""
    if status_code == 404:
        return False
    if body.get("status") not in ("succeeded", "warning"):
        raise RuntimeError(f"restic-runner run {body.get('run_id')} ended {body.get('status')} "
                           f"(exit {body.get('exit_code')})")
    return True


try:  # the DAG itself, when Airflow is installed
    import pendulum
    from airflow import DAG
    from airflow.providers.http.operators.http import HttpOperator
    from airflow.providers.http.sensors.http import HttpSensor
except ImportError:  # pragma: no cover - CI has no Airflow
    DAG = None

if DAG is not None:  # pragma: no cover
    with DAG(dag_id="restic_runner_nightly", schedule="0 3 * * *",
             start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as dag:
        token = "{{ conn.restic_runner.password }}"
        request = trigger_request(JOB, "{{ dag.dag_id }}", "{{ run_id }}", token)
        trigger = HttpOperator(
            task_id="trigger", http_conn_id=CONNECTION_ID, method=request["method"],
            endpoint=request["endpoint"], headers=request["headers"], data=request["data"],
            response_filter=lambda response: run_id_of(response.json()),
            retries=3,  # safe: the Idempotency-Key makes a retry return the same run
        )
        wait = HttpSensor(
            task_id="wait_for_result", http_conn_id=CONNECTION_ID, method="GET",
            endpoint=result_endpoint("{{ ti.xcom_pull(task_ids='trigger') }}"),
            headers={"Authorization": f"Bearer {token}"},
            response_check=lambda response: result_is_final(response.status_code,
                                                             response.json()),
            poke_interval=60, timeout=8 * 3600, mode="reschedule",
        )
        trigger >> wait
