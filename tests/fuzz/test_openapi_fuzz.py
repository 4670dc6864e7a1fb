"""schemathesis over the running service's `/openapi.json`: every operation, as a bearer client
(the CLI's coverage and fuzzing phases), without credentials (the refusal path), as a Standard
Webhooks client signing every generated body (the Python API), and statefully: trigger a job,
then follow its run through the links the answer carries.

The document is the served one with two changes, both made here and not in
runner/service/openapi.py:
- links from POST /trigger/{job} to the run's endpoints (the served document has none; see
  `with_links`);
- for the bearer and signed runs, `security` narrowed to the scheme in use: the document declares
  Standard Webhooks as an apiKey header `webhook-signature`, so schemathesis would otherwise add a
  random `webhook-signature` to every request, and the service (rightly: webhook headers take
  precedence) refuses it whatever the bearer token says.

Checks: not_a_server_error, status_code_conformance, content_type_conformance (every error is
problem+json) and response_schema_conformance; plus: a valid credential is never answered 401 or
429, a missing or invalid one never reaches an operation, and the service stays healthy."""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.fuzzing import SEED, assert_healthy, fuzz, log_mark, start_fuzz_service
from tests.support.processes import stop_process
from tests.support.service import Server

CLI = Path(sys.executable).parent / "schemathesis"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
CLI_CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance," \
             "response_schema_conformance"
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/keys")
RUN_LINKS = {"GetRun": ("/runs/{run_id}", "get"), "GetResult": ("/runs/{run_id}/result", "get"),
             "GetLog": ("/runs/{run_id}/log", "get"),
             "Cancel": ("/runs/{run_id}/cancel", "post")}
TIMEOUT = 15  # seconds, every request: no answer by then is a hang


# --------------------------------------------------------------------------- the document


def served_document(server: Server) -> dict[str, Any]:
    response = requests.get(server.url + "/openapi.json", timeout=TIMEOUT)
    assert response.status_code == 200
    return response.json()


def with_links(doc: dict[str, Any]) -> dict[str, Any]:
    """The document plus OpenAPI links from the trigger's answers (202 accepted, 200 ended,
    409 running: each has `run_id`) to the run's endpoints. A proposal for
    runner/service/openapi.py."""
    doc = json.loads(json.dumps(doc))
    links = {name: {"operationRef": "#/paths/" + path.replace("/", "~1") + "/" + method,
                    "parameters": {"run_id": "$response.body#/run_id"}}
             for name, (path, method) in RUN_LINKS.items()}
    for status in ("200", "202", "409"):
        doc["paths"]["/trigger/{job}"]["post"]["responses"][status]["links"] = links
    return doc


def only_security(doc: dict[str, Any], scheme: str) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    doc["security"] = [{scheme: []}]
    return doc


def load_schema(doc: dict[str, Any], server: Server) -> Any:
    schema = schemathesis.openapi.from_dict(doc)
    schema.config.update(base_url=server.url)
    schema.config.generation.update(with_security_parameters=False)
    return schema


def operation_of(method: str, url: str) -> str:
    """`METHOD /template` for a request URL of this API."""
    path = re.sub(r"^https?://[^/]+", "", url).split("?")[0]
    path = re.sub(r"^/runs/[^/]+", "/runs/{run_id}", path)
    path = re.sub(r"^/trigger/.*", "/trigger/{job}", path)
    return f"{method.upper()} {path}"


# --------------------------------------------------------------------------- the CLI


def run_cli(doc: dict[str, Any], server: Server, tmp: Path, *args: str
            ) -> list[dict[str, Any]]:
    """Run `schemathesis run` over `doc`; fail on any failed check; return the exchanges.
    One worker: with several, its threads hit CPython 3.11.7's "AST constructor recursion depth
    mismatch" (ast.parse is not thread-safe there) now and then, and the run errors out."""
    spec = tmp / "openapi.json"
    spec.write_text(json.dumps(doc))
    report, cassette = tmp / "report.json", tmp / "cassette.yaml"
    done = subprocess.run(
        [str(CLI), "run", str(spec), "--url", server.url, "--checks", CLI_CHECKS,
         "--phases", "coverage,fuzzing", "--seed", str(SEED), "--workers", "1",
         "--request-timeout", str(TIMEOUT), "--output-sanitize", "false",
         "--generation-database", "none", "--report", "json,vcr",
         "--report-json-path", str(report), "--report-vcr-path", str(cassette), *args],
        capture_output=True, text=True, timeout=300, cwd=tmp)
    output = done.stdout[-8000:] + done.stderr[-2000:]
    assert report.exists() and cassette.exists(), output
    summary = json.loads(report.read_text())
    assert summary["complete"] and not summary["errors"], output
    assert summary["operations"]["tested"] == summary["operations"]["total"], output
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    exchanges = yaml.load(cassette.read_text(), Loader=loader)["http_interactions"]
    failed = []
    for exchange in exchanges:
        checks = [c["name"] for c in exchange.get("checks") or [] if c["status"] == "FAILURE"]
        response = exchange.get("response") or {}
        status = int(response.get("status", {}).get("code", 0))
        content_type = (response.get("headers") or {}).get("content-type", [""])[0]
        if checks:
            failed.append(f"{exchange['request']['method']} {exchange['request']['uri'][:200]}"
                          f" -> {status} {content_type}: {', '.join(checks)}")
    assert not failed, "\n".join(failed[:20]) + "\n\n" + output
    return exchanges


def run_count(server: Server) -> int:
    response = server.get("/runs?limit=200")
    assert response.status_code == 200, response.text
    return len(response.json()["runs"])


def test_bearer_client_coverage_and_fuzzing(fuzz_service: Server, tmp_path: Path) -> None:
    mark = log_mark(fuzz_service)
    doc = only_security(with_links(served_document(fuzz_service)), "bearer")
    exchanges = run_cli(doc, fuzz_service, tmp_path, "--max-examples", "15",
                        "-H", f"Authorization: Bearer {fuzz_service.token}")
    answered: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for exchange in exchanges:
        request, status = exchange["request"], int(exchange["response"]["status"]["code"])
        if request["headers"].get("Authorization") == [f"Bearer {fuzz_service.token}"]:
            # coverage also sends requests without it, or with a mangled one: those are not
            # this client's; with the right token the service must have looked further
            assert status not in (401, 429), (request, exchange["response"])
            answered[operation_of(request["method"], request["uri"])][status] += 1
    # the fuzzing reached the logic behind the credential, operation by operation
    assert answered["POST /trigger/{job}"].keys() & {200, 202, 409}, answered
    for operation in ("GET /jobs", "GET /runs", "GET /runs/{run_id}"):
        assert answered[operation][200] + answered[operation][404] > 0, (operation, answered)
    assert_healthy(fuzz_service, mark)


def test_without_credentials_everything_but_the_open_endpoints_is_refused(
        fuzz_service: Server, tmp_path: Path) -> None:
    mark = log_mark(fuzz_service)
    before = run_count(fuzz_service)
    # the served document, both schemes: schemathesis makes up tokens and signatures
    exchanges = run_cli(served_document(fuzz_service), fuzz_service, tmp_path,
                        "--max-examples", "10")
    refusals = 0
    for exchange in exchanges:
        request, response = exchange["request"], exchange["response"]
        path = re.sub(r"^https?://[^/]+", "", request["uri"]).split("?")[0]
        if path in OPEN_PATHS or (request["method"].upper() == "OPTIONS" and path == "/"):
            continue
        status = int(response["status"]["code"])
        # never a 2xx for a protected operation; 404 and 405 come from routing, 414 and 431 from
        # the HTTP server (a query string or a header too long), before any credential is read
        assert status in (401, 429, 404, 405, 414, 431), (request, response)
        if status == 401:
            refusals += 1
            assert response["headers"]["www-authenticate"] == ['Bearer realm="restic-runner"']
    assert refusals > 0
    assert run_count(fuzz_service) == before  # nothing was started
    assert_healthy(fuzz_service, mark)


# --------------------------------------------------------------------------- the Python API


class StandardWebhooksAuth(requests.auth.AuthBase):
    """Signs each request's exact body (requests hands the prepared request over)."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else body
        msg_id, stamp = f"msg_{uuid.uuid4().hex}", int(time.time())
        mac = hmac.new(self.key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256)
        request.headers.update({"webhook-id": msg_id, "webhook-timestamp": str(stamp),
                                "webhook-signature": "v1," + base64.b64encode(
                                    mac.digest()).decode()})
        return request


def test_signed_client_fuzzing(fuzz_service: Server) -> None:
    """Every operation with positive data, and the trigger with negative data too, signed: never
    401 or 429 (a fresh id and a current timestamp each time), never 5xx, always as documented."""
    mark = log_mark(fuzz_service)
    schema = load_schema(only_security(served_document(fuzz_service), "standardWebhooks"),
                         fuzz_service)
    session = requests.Session()
    session.auth = StandardWebhooksAuth(fuzz_service.key)
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()

    def call(case: Case) -> None:
        response = case.call(session=session, timeout=TIMEOUT)
        statuses[(case.operation.label, response.status_code)] += 1
        assert response.status_code not in (401, 429), (case.operation.label, response.text)
        case.validate_response(response, checks=CHECKS)

    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if operation.label in ("POST /trigger/{job}", "GET /runs"):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            @fuzz(8, deadline=30)
            @given(case=operation.as_strategy(generation_mode=mode))
            def example(case: Case) -> None:
                call(case)

            example()
    assert statuses.keys() & {("POST /trigger/{job}", s) for s in (200, 202, 409)}, statuses
    assert_healthy(fuzz_service, mark)


def test_stateful_trigger_then_follow_the_run(fuzz_service: Server) -> None:
    """POST /trigger/{job}, then GET /runs/{run_id} (/result, /log, /cancel) with the run_id the
    answer carried, through the links of `with_links`, in random sequences."""
    mark = log_mark(fuzz_service)
    schema = load_schema(only_security(with_links(served_document(fuzz_service)), "bearer"),
                         fuzz_service)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE])
    steps: collections.Counter[tuple[str, str, int]] = collections.Counter()
    session = requests.Session()
    token = fuzz_service.token

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"headers": {"Authorization": f"Bearer {token}"}, "session": session,
                    "timeout": TIMEOUT}

        def step(self, input: Any) -> Any:
            output = super().step(input)
            transition = input.transition.id if input.transition and input.is_applied else ""
            steps[(transition, input.case.operation.label, output.response.status_code)] += 1
            return output

        def validate_response(self, response: Any, case: Case, additional_checks: Any = None,
                              **kwargs: Any) -> None:
            # collected, not raised: hypothesis would replay a failing sequence to confirm it,
            # and against a live service (runs start and end meanwhile) the replay takes other
            # paths, so all it would report is "flaky", losing the failure itself
            try:
                assert response.status_code not in (401, 429), response.text
                case.validate_response(response, checks=CHECKS)
            except Exception as exc:  # schemathesis's FailureGroup, or the assertion above
                failures.append(f"{case.operation.label} -> {response.status_code} "
                                f"{response.text[:300]!r}: {str(exc)[:600]}")

    failures: list[str] = []
    followed: list[tuple[str, str, int]] = []
    cut_short = 0
    for _ in range(5):  # the sequences are random: run again if none followed a trigger's link
        try:
            Machine.run(settings=settings(
                max_examples=12, stateful_step_count=6, deadline=timedelta(seconds=60),
                database=None, phases=[Phase.generate],
                suppress_health_check=list(HealthCheck)))
        except FlakyStrategyDefinition:
            # hypothesis saw one sequence's prefix enable other rules than before: the bundles
            # fill from live answers (a trigger answers 200, 202 or 409 as runs come and go).
            # That says nothing of the API (its failures are collected above); the steps count
            cut_short += 1
        followed = [key for key in steps if key[0].startswith("POST /trigger/{job}")
                    and key[2] in (200, 202, 404, 409)]
        if any(key[1] == "GET /runs/{run_id}" and key[2] == 200 for key in followed):
            break
    assert failures == [], "\n".join(failures)
    assert any(key[1] == "GET /runs/{run_id}" and key[2] == 200 for key in followed), \
        (steps, f"{cut_short} sequence runs cut short by hypothesis's FlakyStrategyDefinition")
    assert_healthy(fuzz_service, mark)


# --------------------------------------------------------------------------- every job kind

REHEARSAL = """
[jobs.rehearsal]
kind = "restore-test"
min_files = 1
"""


@pytest.fixture
def rehearsal_service(tmp_path: Path, repo_template18: Path) -> Any:
    srv = start_fuzz_service(tmp_path, repo_template18, extra_jobs=REHEARSAL)
    try:
        yield srv
    finally:
        stop_process(srv.proc)


def test_a_restore_test_record_matches_the_document(rehearsal_service: Server) -> None:
    """The record of a restore-test run, as GET /runs/{run_id} serves it, matches the served
    document. The verify step's stats hold `canaries` (a table: path -> passed/missing), while
    the document says every stat is a number or a string (runner/service/openapi.py:57 RUN_RECORD,
    runner/engine/jobs/restoretest.py:72)."""
    server = rehearsal_service
    backup = server.post("/trigger/tiny?wait=1", headers=server.bearer())
    server.wait_result(backup.json()["run_id"])
    accepted = server.post("/trigger/rehearsal", headers=server.bearer())
    assert accepted.status_code == 202, accepted.text
    record = server.wait_result(accepted.json()["run_id"])
    assert record["status"] == "succeeded", record["log_tail"]
    schema = load_schema(served_document(server), server)
    case = schema["/runs/{run_id}"]["GET"].Case(path_parameters={"run_id": record["run_id"]})
    case.call_and_validate(headers=server.bearer(), checks=CHECKS, timeout=TIMEOUT)
