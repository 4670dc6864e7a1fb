"""The OpenAPI 3 document of the API (`GET /openapi.json`), tested against the real responses
(tests/e2e/test_openapi.py validates them and runs schemathesis over it)."""

from __future__ import annotations

from typing import Any

from runner import __version__

STATUSES = ["running", "succeeded", "warning", "failed", "skipped", "timed_out", "cancelled",
            "interrupted"]
_STR_OR_NULL = {"type": "string", "nullable": True}
_NUM_OR_NULL = {"type": "number", "nullable": True}

NOTIFICATION = {
    "type": "object", "required": ["target", "event", "status", "attempts"],
    "properties": {
        "target": {"type": "string"},
        "event": {"type": "string"},
        "status": {"type": "string",
                   "enum": ["pending", "delivered", "failed", "disabled", "superseded"]},
        "attempts": {"type": "integer"},
        "last_attempt_at": {"type": "string", "format": "date-time"},
        "next_attempt_at": {"type": "string", "format": "date-time"},
        "response": {"type": "string"},
        "error": {"type": "string"},
        "attempt_log": {"type": "array", "items": {
            "type": "object", "required": ["at", "delivered"],
            "properties": {"at": {"type": "string", "format": "date-time"},
                           "delivered": {"type": "boolean"}, "response": _STR_OR_NULL,
                           "error": {"type": "string"}, "seconds": {"type": "number"}}}},
    },
}

RUN_RECORD = {
    "type": "object",
    "required": ["schema", "run_id", "job", "kind", "status", "exit_code", "hostname",
                 "trigger", "started_at", "finished_at", "duration_seconds", "stats", "steps",
                 "progress", "log_tail", "notifications", "version"],
    "properties": {
        "schema": {"type": "string", "enum": ["restic-runner.run/1"]},
        "run_id": {"type": "string", "format": "uuid"},
        "job": {"type": "string"},
        "kind": {"type": "string"},
        "status": {"type": "string", "enum": STATUSES},
        "exit_code": {"type": "integer", "nullable": True},
        "hostname": {"type": "string"},
        "repository": _STR_OR_NULL,
        "trigger": {"type": "object", "required": ["source"], "properties": {
            "source": {"type": "string", "enum": ["cli", "api", "schedule"]},
            "client": _STR_OR_NULL, "idempotency_key": _STR_OR_NULL,
            "remote_addr": _STR_OR_NULL}},
        "params": {"type": "object"},
        # true: the tool ran with --dry-run; never the job's last success (older records lack it)
        "dry_run": {"type": "boolean"},
        "started_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": "string", "format": "date-time", "nullable": True},
        "duration_seconds": _NUM_OR_NULL,
        "stats": {"type": "object", "additionalProperties": {
            # numbers and strings; restore-test's `canaries` is an object (path -> verdict)
            "oneOf": [{"type": "number"}, {"type": "string"}, {"type": "object"}]}},
        "steps": {"type": "array", "items": {"type": "object", "required": ["name", "exit_code"],
                                              "properties": {
                                                  "name": {"type": "string"},
                                                  "exit_code": {"type": "integer"},
                                                  "duration_seconds": {"type": "number"},
                                                  "stats": {"type": "object"}}}},
        "progress": {"type": "object", "nullable": True},
        "log_tail": {"type": "string"},
        "error": _STR_OR_NULL,
        "running_run_id": {"type": "string"},
        "notifications": {"type": "array", "items": NOTIFICATION},
        "version": {"type": "string"},
    },
}


def _peer_fields() -> dict[str, Any]:
    """restic-backup-helper's fields of a run record (docs/runs.md), from `RunRecord` itself so
    the document cannot drift from the record: strings but the epochs and `canary_results`."""
    from typing import get_type_hints

    from runner.engine.record import RunRecord

    schemas = {str: {"type": "string"}, int: {"type": "integer"}}
    fields: dict[str, Any] = {}
    for name, kind in get_type_hints(RunRecord).items():
        if name not in RUN_RECORD["properties"] and kind in schemas:
            fields[name] = schemas[kind]
    fields["canary_results"] = {"type": "array", "items": {
        "type": "object", "additionalProperties": {"type": "string"}}}
    return fields


RUN_RECORD["properties"].update(_peer_fields())
PROBLEM = {
    "type": "object", "required": ["type", "title", "status"],
    "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                   "status": {"type": "integer"}, "detail": {"type": "string"},
                   "run_id": {"type": "string"}, "run_status": {"type": "string"},
                   "checks": {"type": "array", "items": {"type": "object"}}},
}
LINKS = {"type": "object", "properties": {k: {"type": "string"}
                                          for k in ("self", "result", "log", "cancel")}}
ACCEPTED = {"type": "object", "required": ["run_id", "status", "links"],
            "properties": {"run_id": {"type": "string"}, "job": _STR_OR_NULL,
                           "status": {"type": "string"}, "links": LINKS}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_RUN = {"$ref": "#/components/schemas/RunRecord"}
_AUTH_ERRORS = {"400": _problem("a signed request whose body does not fit its method (a signed "
                                "POST carries a JSON object, {} at least; a signed GET none)"),
                "401": _problem("no or bad credentials"),
                "429": _problem("too many failed attempts")}
_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}


def document(job_names: list[str] | None = None) -> dict[str, Any]:
    """The document; with `job_names`, the `job` path parameter lists this server's jobs."""
    doc = _document(job_names)
    for operations in doc["paths"].values():
        for operation in operations.values():  # what any request can get before routing
            for status, why in _SERVER_REFUSALS.items():
                operation["responses"].setdefault(status, _problem(why))
    return doc


# answered by the HTTP server itself, whatever the operation (runner/service/server.py,
# readdeadline.py)
_SERVER_REFUSALS = {
    "408": "the request was not sent within [server] read_timeout",
    "414": "the request line is longer than 4094 bytes (a query string too long)",
    "431": "a header is longer than 8190 bytes, or there are more than 100",
}


def _document(job_names: list[str] | None) -> dict[str, Any]:
    job_schema: dict[str, Any] = {"type": "string"}
    if job_names:
        job_schema["enum"] = job_names
    return {
        "openapi": "3.0.3",
        "info": {"title": "restic-runner", "version": __version__,
                 "description": "HTTP trigger service for restic and rclone."},
        "components": {
            "schemas": {"RunRecord": RUN_RECORD, "Problem": PROBLEM, "Accepted": ACCEPTED},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "standardWebhooks": {"type": "apiKey", "in": "header",
                                     "name": "webhook-signature",
                                     "description": "Standard Webhooks v1 HMAC over "
                                                    "'{webhook-id}.{webhook-timestamp}.{body}' "
                                                    "with headers webhook-id and "
                                                    "webhook-timestamp"}},
        },
        "security": [{"bearer": []}, {"standardWebhooks": []}],
        "paths": {
            "/trigger/{job}": {"post": {
                "summary": "Start a job",
                "parameters": [
                    {"name": "job", "in": "path", "required": True, "schema": job_schema},
                    {"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0}},
                    {"name": "Idempotency-Key", "in": "header",
                     "schema": {"type": "string", "minLength": 1, "maxLength": 255}},
                ],
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False, "properties": {
                        "params": {"type": "object", "additionalProperties": False,
                                   "properties": {
                                       "tags": {"type": "array", "minItems": 1, "maxItems": 16,
                                                "items": {"type": "string",
                                                          "pattern": "^[A-Za-z0-9._:-]{1,64}$"}},
                                       "dry_run": {"type": "boolean"}}}}}}}},
                "responses": {
                    "200": _json("the run ended within ?wait=", _RUN),
                    "202": _json("started", {"$ref": "#/components/schemas/Accepted"}),
                    **_AUTH_ERRORS,
                    "400": _problem("bad JSON or params, or a signed POST without a JSON "
                                    "object body"),
                    "403": _problem("this client may not run this job"),
                    "404": _problem("no such job"),
                    "409": _problem("the job is running (run_id names the run)"),
                    "413": _problem("body too large"),
                    "422": _problem("Idempotency-Key reused with another body"),
                    "503": _problem("cannot start runs now"),
                }}},
            "/runs": {"get": {
                "summary": "Runs, newest first",
                "parameters": [
                    {"name": "job", "in": "query", "schema": {"type": "string"}},
                    {"name": "status", "in": "query", "schema": {"type": "string",
                                                                 "enum": STATUSES}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                "maximum": 200}},
                    {"name": "before", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": _json("runs", {"type": "object", "required": ["runs"],
                                                    "properties": {"runs": {
                                                        "type": "array", "items": _RUN},
                                                        "next": {"type": "string"}}}),
                              "400": _problem("bad query"), **_AUTH_ERRORS,
                              "403": _problem("this client may not see this job")}}},
            "/runs/{run_id}": {"get": {"summary": "A run, live while running",
                                       "parameters": [_RUN_ID],
                                       "responses": {"200": _json("the run record", _RUN),
                                                     **_AUTH_ERRORS,
                                                     "404": _problem("no such run")}}},
            "/runs/{run_id}/result": {"get": {
                "summary": "The final record; 404 until the run has ended (for HttpSensor), "
                           "410 for a run this service has no record of; ?wait= long-polls",
                "parameters": [_RUN_ID, {"name": "wait", "in": "query",
                                         "schema": {"type": "number", "minimum": 0}}],
                "responses": {"200": _json("the final run record", _RUN), **_AUTH_ERRORS,
                              "400": _problem("bad wait"),
                              "404": _problem("not ended yet (run_status says how it is)"),
                              "410": _problem("no such run: never started here, or pruned")}}},
            "/runs/{run_id}/log": {"get": {
                "summary": "The masked run log, streamed; ?tail=N: its last N lines",
                "parameters": [_RUN_ID, {"name": "tail", "in": "query", "schema": {
                    "type": "integer", "minimum": 1, "maximum": 100000}}],
                "responses": {"200": {"description": "the log (empty while a new run's log "
                                                     "file does not exist yet)",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                              **_AUTH_ERRORS, "400": _problem("tail out of range"),
                              "404": _problem("no such run, or its log was pruned")}}},
            "/runs/{run_id}/cancel": {"post": {
                "summary": "Stop a run gracefully", "parameters": [_RUN_ID],
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "maxProperties": 0}}}},
                "responses": {"202": _json("cancelling", {"$ref":
                                                          "#/components/schemas/Accepted"}),
                              **_AUTH_ERRORS, "404": _problem("no such run"),
                              "409": _problem("the run has ended")}}},
            "/jobs": {"get": {"summary": "Configured jobs this client may run", "responses": {
                "200": _json("jobs", {"type": "object", "required": ["jobs"], "properties": {
                    "jobs": {"type": "array", "items": {"type": "object"}}}}),
                **_AUTH_ERRORS}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {
                "200": _json("alive", {"type": "object"})}}},
            "/readyz": {"get": {"summary": "Readiness with named checks", "security": [],
                                "responses": {"200": _json("ready", {"type": "object"}),
                                              "503": _problem("not ready")}}},
            "/metrics": {"get": {"summary": "Prometheus exposition", "security": [],
                                 "responses": {"200": {"description": "metrics", "content": {
                                     "text/plain": {"schema": {"type": "string"}}}}}}},
            "/keys": {"get": {"summary": "Public Ed25519 keys (whpk_) signing result payloads",
                              "security": [], "responses": {"200": _json("keys", {
                                  "type": "object", "required": ["keys"], "properties": {
                                      "keys": {"type": "array",
                                               "items": {"type": "string"}}}})}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                                      "responses": {"200": _json("OpenAPI 3",
                                                                 {"type": "object"})}}},
        },
    }
