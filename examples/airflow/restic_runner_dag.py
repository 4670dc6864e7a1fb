"""Airflow DAG: start a restic-runner job, then wait for its result (docs/airflow-and-cron.md).

Copy this file once per job and change `JOB`: the dag_id is derived from it
(`restic_runner_<job>`), so two copies never collide. Tested with Apache Airflow 3.3.2 and
apache-airflow-providers-http 6.3.0 (tests/airflow/ runs it with `airflow dags test`).

- `trigger`: HttpOperator POSTs /trigger/<job> with `Idempotency-Key: airflow:<dag_id>:<run_id>`.
  A retried task (a lost answer, a worker lost) gets the same run back; once the run's result has
  been read, the key is spent, so clearing the DAG run to try again starts a new run.
- `wait_for_result`: HttpSensor on /runs/<run_id>/result in `mode="reschedule"` (the worker slot
  is free between pokes). `404` with `run_status` is "not yet", logged as one INFO line;
  `200` ends the task, failed unless the run `succeeded` (or `warning`), with the run's masked
  `error` line; `410` (a run the service does not know), `401`, `403` and every other 4xx fail
  it at once, without retries, in the service's own words; a 5xx is retried (`retries=2`).
- `DEFERRABLE = True` waits in the triggerer instead: `LongPollResult` (below) defers on the
  provider's HttpTrigger to long-poll /runs/<run_id>/result?wait=…, and defers again only while
  the run is going, at most once per MIN_ROUND_SECONDS. (Not a deferrable HttpSensor: its
  trigger re-asks without pausing on 401, 403, 410 and 5xx.)
- The connection `restic_runner` holds the base URL in `host`, with its scheme, and the bearer
  token of a [[clients]] entry that may run the job as a header in `extra` (the HTTP hook sends
  an extra's keys as headers), so the token is never in a task's arguments, rendered fields or
  stored triggers:
  `{"conn_type": "http", "host": "https://backup.example.org",
    "extra": {"Authorization": "Bearer rrt_…"}}`.

The request shapes and checks are plain functions above the DAG, testable without Airflow
(tests/e2e/test_examples.py runs them against a real server).
"""

from __future__ import annotations

import json
from typing import Any

JOB = "nightly"
DEFERRABLE = False  # True: wait in the triggerer (LongPollResult below), not in reschedule mode
CONNECTION_ID = "restic_runner"
POKE_SECONDS = 60  # the sensor's pause between two questions (reschedule mode)
LONG_POLL_SECONDS = 600  # the deferrable wait's ?wait= (the service caps it: [server] max_wait)
MIN_ROUND_SECONDS = 10  # the deferrable wait asks at most this often, whatever the answers
TIMEOUT_HOURS = 8

OK_STATUSES = ("succeeded", "warning")


def dag_id_for(job: str) -> str:
    return f"restic_runner_{job}"


def idempotency_key(dag_id: str, run_id: str) -> str:
    """One key per DAG run: a task retry sends it again and follows the same run; after the
    run's final record was read (the wait task did), the service starts a new run for it."""
    return f"airflow:{dag_id}:{run_id}"


def connection_headers(token: str) -> dict[str, str]:
    """What the connection's `extra` holds: the HTTP hook adds it to every request."""
    return {"Authorization": f"Bearer {token}"}


def trigger_request(job: str, dag_id: str, run_id: str) -> dict[str, Any]:
    """What the trigger task sends (with the connection's headers)."""
    return {
        "method": "POST",
        "endpoint": f"/trigger/{job}",
        "headers": {"Content-Type": "application/json",
                    "Idempotency-Key": idempotency_key(dag_id, run_id)},
        "data": json.dumps({"params": {"tags": ["airflow"]}}),
    }


def run_id_of(response_json: dict[str, Any]) -> str:
    """The trigger task's XCom value."""
    return response_json["run_id"]


def result_endpoint(run_id: str, wait: int = 0) -> str:
    return f"/runs/{run_id}/result" + (f"?wait={wait}" if wait else "")


class RunNotGood(RuntimeError):
    """The wait is over and the DAG run must fail: retrying the task cannot help (a failed run,
    an unknown run id, a refused token)."""


class ServiceTrouble(RuntimeError):
    """The service failed to answer (5xx): the task's retries ask again later."""


def _json(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def run_is_going(status_code: int, text: str) -> bool:
    """`404` with `run_status`: the service knows the run and it has not ended."""
    return status_code == 404 and "run_status" in _json(text)


def result_is_final(status_code: int, text: str) -> bool:
    """The wait's check of one answer of GET /runs/<id>/result: False while the run is going,
    True when it ended well; raises `RunNotGood` when it ended otherwise or the service refuses
    (410, 401, 403, any other 4xx), `ServiceTrouble` on 5xx. Messages quote the service (its
    answers are masked), never what was sent."""
    body = _json(text)
    if run_is_going(status_code, text):
        return False
    if status_code == 200:
        if body.get("status") in OK_STATUSES:
            return True
        error = f": {body['error']}" if body.get("error") else ""
        raise RunNotGood(f"restic-runner run {body.get('run_id')} of job {body.get('job')} "
                         f"ended {body.get('status')} (exit {body.get('exit_code')}){error}")
    said = body.get("detail") or body.get("title") or "no problem document"
    if status_code >= 500:
        raise ServiceTrouble(f"restic-runner answered {status_code}: {said}")
    if status_code == 410:
        raise RunNotGood(f"restic-runner does not know this run (410 {body.get('title')}): "
                         f"{said}")
    if status_code in (401, 403):
        raise RunNotGood(f"restic-runner refused the token ({status_code}): {said}; check the "
                         "connection's Authorization header (extra) and the client's `jobs`")
    raise RunNotGood(f"restic-runner answered {status_code}: {said}")


try:  # the DAG itself, when Airflow is installed
    import time
    from datetime import timedelta

    import pendulum
    from airflow.providers.http.operators.http import HttpOperator
    from airflow.providers.http.sensors.http import HttpSensor
    from airflow.providers.http.triggers.http import HttpResponseSerializer, HttpTrigger
    from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # pragma: no cover - no Airflow: only the functions above are used
    DAG = None


def _check(status_code: int, text: str) -> bool:  # pragma: no cover - runs in Airflow
    try:
        return result_is_final(status_code, text)
    except RunNotGood as failure:
        raise AirflowFailException(str(failure)) from None  # no retry: the answer is final


if DAG is not None:  # pragma: no cover
    class LongPollResult(HttpOperator):
        """Wait in the triggerer: the provider's HttpTrigger asks GET `endpoint` (a
        `?wait=` long-poll) once per deferral, and the task defers again only while the run is
        going, after a pause when the service answered at once (its long-poll slots busy).
        Every other answer ends the task, so it cannot spin. (The provider's own ways spin or
        break: HttpSensorTrigger re-asks without pausing on any answer but 404, and a
        deferrable HttpOperator's `pagination_function` hands each answer to the next deferral,
        which Airflow 3.3 cannot serialize: TypeError on requests.Response.)"""

        def execute(self, context: Any) -> None:
            self._ask()

        def _ask(self) -> None:
            self.defer(trigger=HttpTrigger(http_conn_id=self.http_conn_id, method="GET",
                                           endpoint=self.endpoint, headers=self.headers,
                                           extra_options=self.extra_options),
                       method_name="answered", kwargs={"asked_at": time.time()})

        def answered(self, context: Any, event: dict[str, Any],
                     asked_at: float | None = None) -> Any:
            """`asked_at` is None where the defer's kwargs are dropped (`airflow dags test` of
            Airflow 3.3 resumes with the event only): then it always pauses."""
            if event["status"] != "success":  # not reached, timed out: the task's retries
                raise AirflowException(f"restic-runner not reached: {event['message']}")
            response = HttpResponseSerializer.deserialize(event["response"])
            if _check(response.status_code, response.text):
                # the XCom: what a later task needs, not the whole record (its log tail, the
                # caller's address, the idempotency key)
                record = response.json()
                return {key: record.get(key) for key in ("run_id", "job", "status",
                                                         "exit_code")}
            waited = 0.0 if asked_at is None else time.time() - asked_at
            pause = MIN_ROUND_SECONDS - waited
            if pause > 0:  # answered "not yet" without holding the request: not so fast
                self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=pause)),
                           method_name="paused")
            self._ask()

        def paused(self, context: Any, event: Any = None) -> None:
            self._ask()

    DAG_ID = dag_id_for(JOB)
    RUN_ID = "{{ ti.xcom_pull(task_ids='trigger') }}"

    with DAG(dag_id=DAG_ID, schedule="0 3 * * *", catchup=False,
             start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             max_active_runs=1,  # two runs of one job would answer each other 409
             tags=["restic-runner"]) as dag:
        request = trigger_request(JOB, "{{ dag.dag_id }}", "{{ run_id }}")
        trigger = HttpOperator(
            task_id="trigger", http_conn_id=CONNECTION_ID, method=request["method"],
            endpoint=request["endpoint"], headers=request["headers"], data=request["data"],
            response_filter=lambda response: run_id_of(response.json()),
            retries=3,  # safe: the Idempotency-Key makes a retry return the same run
            retry_delay=timedelta(seconds=30),
        )
        # the checks read every status themselves: no ERROR lines from the hook on "not yet"
        quiet = {"check_response": False}
        if DEFERRABLE:
            wait = LongPollResult(
                task_id="wait_for_result", http_conn_id=CONNECTION_ID,
                endpoint=result_endpoint(RUN_ID, LONG_POLL_SECONDS), extra_options=quiet,
                execution_timeout=timedelta(hours=TIMEOUT_HOURS),
                retries=2, retry_delay=timedelta(minutes=1),  # the service down a moment
            )
        else:
            wait = HttpSensor(
                task_id="wait_for_result", http_conn_id=CONNECTION_ID, method="GET",
                endpoint=result_endpoint(RUN_ID), extra_options=quiet,
                response_check=lambda response: _check(response.status_code, response.text),
                poke_interval=POKE_SECONDS, timeout=TIMEOUT_HOURS * 3600, mode="reschedule",
                retries=2, retry_delay=timedelta(minutes=1),  # the service down a moment
            )
        trigger >> wait
