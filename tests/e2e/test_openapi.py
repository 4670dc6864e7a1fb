"""/openapi.json describes the real answers: validated response by response, and schemathesis
throws generated requests at the live server (no 5xx, every answer matches the document)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsonschema_rs
import requests

from tests.support.openapi import nullable
from tests.support.service import Server


def _validator(doc: dict, status: str, path: str, method: str):
    content = doc["paths"][path][method]["responses"][status]["content"]
    schema = next(iter(content.values()))["schema"]
    resolved = {**schema, "components": doc["components"]} if "$ref" not in schema else {
        "$ref": schema["$ref"], "components": doc["components"]}
    # OpenAPI 3.0 'nullable' -> JSON Schema: validate with the nullable keyword understood
    return jsonschema_rs.validator_for(nullable(resolved))


def test_real_answers_match_the_document(server: Server) -> None:
    doc = requests.get(server.url + "/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    accepted = server.post("/trigger/nightly")
    _validator(doc, "202", "/trigger/{job}", "post").validate(accepted.json())
    run_id = accepted.json()["run_id"]
    record = server.wait_result(run_id)
    _validator(doc, "200", "/runs/{run_id}/result", "get").validate(record)
    _validator(doc, "200", "/runs/{run_id}", "get").validate(server.get(f"/runs/{run_id}").json())
    _validator(doc, "200", "/runs", "get").validate(server.get("/runs").json())
    _validator(doc, "200", "/jobs", "get").validate(server.get("/jobs").json())
    _validator(doc, "200", "/keys", "get").validate(
        requests.get(server.url + "/keys", timeout=5).json())
    busy = server.post("/trigger/slow")
    conflict = server.post("/trigger/slow")
    _validator(doc, "409", "/trigger/{job}", "post").validate(conflict.json())
    server.post(f"/runs/{busy.json()['run_id']}/cancel")
    for status, response in (("401", requests.post(server.url + "/trigger/nightly", timeout=5)),
                             ("404", server.post("/trigger/nope")),
                             ("400", server.post("/trigger/nightly", b"[]"))):
        assert response.status_code == int(status)
        _validator(doc, status, "/trigger/{job}", "post").validate(response.json())
    server.wait_result(busy.json()["run_id"])


def test_schemathesis_finds_no_server_error(server: Server, tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "schemathesis"
    done = subprocess.run(
        [str(cli), "run", server.url + "/openapi.json", "--url", server.url,
         "-H", f"Authorization: Bearer {server.token}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance,response_headers_conformance",
         "--max-examples", "25", "--phases", "examples,fuzzing",
         "--exclude-path", "/runs/{run_id}/cancel"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
