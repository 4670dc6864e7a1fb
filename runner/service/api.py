"""The HTTP API (docs/api.md): routes only. Runs start through `runner.service.launcher` (the
engine, in a detached supervisor); state comes from `runner.engine.history`; who may call is
`security.auth`, admitted by `runner.service.gate`."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import BadRequest, HTTPException

from runner import __version__
from runner.configuration.config import Config
from runner.engine.history import History
from runner.engine.record import ENDED, RunRecord, Status
from runner.engine.recovery import mark_interrupted
from runner.service.gate import RETRY_AFTER_REFUSED, admit
from runner.service.params import parse_trigger_body
from runner.service.problems import Problem
from runner.service.refusals import ORDINARY_ANSWER, REFUSAL_KIND
from runner.service.state import ApiState, state
from runner.service.waits import WaitSlots
from security.auth import Client, FailureLimiter, SeenIds

RETRY_AFTER_BUSY = "30"
WAIT_POLL_SECONDS = 0.025  # a long-poll sees a run's end within this (one indexed read)
WAIT_RECHECK_SECONDS = 1.0  # and checks this often whether its supervisor died
SMALL_LOG = 256 * 1024  # a log (or tail) up to this size is answered whole, not streamed
MAX_PAGE = 200

api = Blueprint("api", __name__)


# --- authentication --------------------------------------------------------------------------

@api.before_request
def _admit() -> Response | None:
    """A refusal is answered straight from here: a flood of bad requests should cost as little
    as possible, so no exception travels through Flask's error handling."""
    try:
        admit(state())
    except Problem as refusal:
        return refusal.response()
    return None


def _client() -> Client:
    return g.client


def _visible(record: RunRecord) -> bool:
    return _client().may_run(record["job"])


def _known_run(run_id: str) -> RunRecord | None:
    """The run, if this client may see it; a run whose supervisor died is marked first (only
    its own job's lock tells that a `running` record is stale)."""
    record = state().history().get(run_id)
    if record is None or not _visible(record):
        return None
    if record["status"] == Status.RUNNING and mark_interrupted(state().history(), record["job"]):
        record = state().history().get(run_id) or record
    return record


def _run_or_404(run_id: str) -> RunRecord:
    record = _known_run(run_id)
    if record is None:
        raise Problem(404, "Not found", "no such run")
    return record


def _links(run_id: str) -> dict[str, str]:
    base = f"/runs/{run_id}"
    return {"self": base, "result": f"{base}/result", "log": f"{base}/log",
            "cancel": f"{base}/cancel"}


# --- triggering ------------------------------------------------------------------------------

@api.post("/trigger/<job>")
def trigger(job: str) -> Response:
    s, client = state(), _client()
    if not client.may_run(job):
        raise Problem(403, "Forbidden", "this client may not run this job",
                      headers={"Retry-After": RETRY_AFTER_REFUSED})
    if job not in s.config.jobs:
        raise Problem(404, "Not found", "no such job")
    body = request.get_data(cache=True)
    params = parse_trigger_body(body, s.config.jobs[job])
    wait = _wait_seconds()
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        if not 1 <= len(key) <= 255 or not key.isprintable():
            raise Problem(400, "Bad request", "Idempotency-Key: 1 to 255 printable characters")
        claim = s.idempotency().claim(client.name, key, job.encode() + b"\0" + body)
        if claim.conflict:
            raise Problem(422, "Idempotency key reused",
                          "this Idempotency-Key was used with another request body")
        if not claim.owner:
            if claim.run_id is None:
                raise Problem(409, "Request in progress",
                              "a request with this Idempotency-Key is still being handled",
                              headers={"Retry-After": "1"})
            return _accepted(claim.run_id, wait)
    trigger_info = {"source": "api", "client": client.name, "idempotency_key": key,
                    "remote_addr": request.remote_addr}
    from runner.service.launcher import StartResult, launcher_socket_path, request_start

    running = _live_run(job)
    if running:
        result = StartResult("busy", running)
    else:
        result = request_start(launcher_socket_path(s.config), job, trigger=trigger_info,
                               params=params)
    if result.status == "started" and result.run_id:
        if key is not None:
            s.idempotency().settle(client.name, key, result.run_id)
        return _accepted(result.run_id, wait)
    if key is not None:
        s.idempotency().release(client.name, key)
    if result.status == "busy":
        request.environ[ORDINARY_ANSWER] = True
        raise Problem(409, "Job already running", "the job is running (see run_id)",
                      headers={"Retry-After": RETRY_AFTER_BUSY}, run_id=result.run_id)
    reason = result.message or "unknown error"
    # the supervisor's own output goes nowhere (it outlives the service): its reason is logged here
    current_app.logger.warning("run of %s could not start: %s", job, reason)
    raise Problem(503, "Cannot start the run", reason)


def _live_run(job: str) -> str | None:
    """The run holding the job's lock, when its supervisor is alive and the run is recorded
    running: answered 409 here, without asking the launcher (a burst of triggers for a running
    job would otherwise cost a supervisor each). Anything less certain goes to the launcher,
    whose supervisor takes the lock: the authoritative check."""
    from runner.engine.locks import NamedLock

    history = state().history()
    holder = NamedLock(history.lock_dir, job).holder()
    record = history.get(holder.run_id) if holder else None
    return record["run_id"] if record is not None and record["status"] == Status.RUNNING else None


def _wait_seconds() -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        raise Problem(400, "Bad request", "wait: expected a number of seconds") from None
    if not 0 <= seconds < 86400:
        raise Problem(400, "Bad request", "wait: expected 0 or more seconds")
    return min(seconds, state().config.server.max_wait)


def _accepted(run_id: str, wait: float) -> Response:
    history = state().history()
    record = history.get(run_id)
    if wait and record and record["status"] not in ENDED:
        record = _wait_for_end(run_id, record, wait)
    if wait and record and record["status"] in ENDED:
        return _final(record)  # only a caller who asked to wait gets the final record
    body = {"run_id": run_id, "job": record["job"] if record else None,
            "status": record["status"] if record else Status.RUNNING, "links": _links(run_id)}
    response = jsonify(body)
    response.status_code = 202
    response.headers["Location"] = f"/runs/{run_id}"
    return response


def _final(record: RunRecord) -> Response:
    """The final record, answered to this client: its Idempotency-Keys for the run are spent
    (docs/api.md, "Idempotency"), so the same key starts a new run from now on. Not when the
    client has already gone (a long-poll outlived it): nobody will read this answer, and its
    retry must find the same run."""
    if not _caller_still_connected():
        return jsonify(record)
    try:
        state().idempotency().mark_answered(_client().name, record["run_id"])
    except sqlite3.Error as exc:  # a read-only or full state_dir: the answer is still true
        current_app.logger.warning("the Idempotency-Keys of run %s stay unspent: %s",
                                   record["run_id"], exc)
    return jsonify(record)


def _caller_still_connected() -> bool:
    """False when the caller has closed its side of the connection (killed, timed out, reset):
    a peek at the socket reads its FIN. Unknown (no socket: a test client) counts as there."""
    sock = request.environ.get("gunicorn.socket")
    if sock is None:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:  # nothing to read, and not closed: still there
        return True
    except OSError:  # reset
        return False


def _wait_for_end(run_id: str, record: RunRecord, wait: float) -> RunRecord:
    """Long-poll: the record once the run has ended, or as it is when `wait` is over (or at
    once when this client's or the worker's wait slots are taken: it polls instead)."""
    with state().waits.slot(_client().name) as granted:
        if not granted:
            return record
        history = state().history()
        deadline = time.monotonic() + wait
        recheck = time.monotonic() + WAIT_RECHECK_SECONDS
        while record["status"] not in ENDED and time.monotonic() < deadline:
            time.sleep(WAIT_POLL_SECONDS)
            if time.monotonic() >= recheck:  # a supervisor that died leaves `running`
                record = _known_run(run_id) or record
                recheck = time.monotonic() + WAIT_RECHECK_SECONDS
            else:
                record = history.get(run_id) or record
    return record


# --- runs ------------------------------------------------------------------------------------

@api.get("/runs/<run_id>")
def run(run_id: str) -> Response:
    return jsonify(_run_or_404(run_id))


@api.get("/runs/<run_id>/result")
def result(run_id: str) -> Response:
    """`404` while the run is going (a sensor's "not yet"), `200` once it ended, `410` for a
    run this service has no record of: a sensor polling a lost run id must stop, not poll
    "not yet" for hours. `?wait=N` long-polls."""
    wait = _wait_seconds()
    record = _known_run(run_id)
    if record is None:
        raise Problem(410, "Unknown run", "this service has no record of the run: it was never "
                      "started here, or its record was pruned")
    if wait and record["status"] not in ENDED:
        record = _wait_for_end(run_id, record, wait)
    if record["status"] not in ENDED:
        request.environ[ORDINARY_ANSWER] = True  # a sensor's poke, logged as such
        raise Problem(404, "Not finished", f"the run is {record['status']}",
                      run_id=run_id, run_status=record["status"])
    return _final(record)


@api.get("/runs/<run_id>/log")
def log(run_id: str) -> Response:
    """Streamed, masked again on the way out; `?tail=N`: only the last N lines."""
    from runner.fsutil import NotRegularFile
    from runner.service.logread import (
        MAX_TAIL_LINES,
        LogStream,
        masked_chunks,
        open_log,
        tail_offset,
    )

    record = _run_or_404(run_id)
    lines = _int_param("tail", 1, MAX_TAIL_LINES)
    headers = {"X-Run-Status": record["status"]}
    try:
        fd = open_log(state().history().log_path(record["job"], run_id))
    except NotRegularFile:
        current_app.logger.warning("the log of run %s is not a regular file: not served", run_id)
        raise Problem(404, "Not found", "the run's log is not a regular file") from None
    if fd is None:
        if record["status"] not in ENDED:  # recorded before its log file is made
            return Response(b"", mimetype="text/plain", headers=headers)
        raise Problem(404, "Not found", "the run's log was pruned")
    offset = tail_offset(fd, lines) if lines else 0
    if os.fstat(fd).st_size - offset <= SMALL_LOG:  # sent at once, never a long request
        return Response(b"".join(masked_chunks(fd, offset)), mimetype="text/plain",
                        headers=headers)
    client, slots = _client().name, state().waits
    if not slots.try_acquire(client):  # a slow reader holds its thread: bounded
        os.close(fd)
        raise Problem(429, "Too many long requests",
                      "this client is already reading logs or waiting; try again shortly",
                      headers={"Retry-After": "5"})
    request.environ["restic_runner.long_answer"] = True  # bounded by its slot instead
    return Response(LogStream(fd, offset, lambda: slots.release(client)),
                    mimetype="text/plain", headers=headers)


def _int_param(name: str, low: int, high: int) -> int | None:
    """An optional integer query parameter in [low, high], named by its role when refused."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not low <= int(raw) <= high:
        raise Problem(400, "Bad request", f"{name}: expected an integer from {low} to {high}")
    return int(raw)


@api.post("/runs/<run_id>/cancel")
def cancel(run_id: str) -> Response:
    record = _run_or_404(run_id)
    if record["status"] in ENDED:
        raise Problem(409, "Run has ended", f"the run is {record['status']}",
                      run_id=run_id)
    from runner.engine.locks import signal_holder

    if not signal_holder(state().history().lock_dir, record["job"], run_id):
        raise Problem(409, "Run is not cancellable", "the run has no live supervisor")
    response = jsonify({"run_id": run_id, "status": "cancelling", "links": _links(run_id)})
    response.status_code = 202
    return response


@api.get("/runs")
def runs() -> Response:
    s = state()
    job, status = request.args.get("job"), request.args.get("status")
    try:
        limit = min(int(request.args.get("limit", "50")), MAX_PAGE)
    except ValueError:
        raise Problem(400, "Bad request", "limit: expected an integer") from None
    if limit < 1:
        raise Problem(400, "Bad request", "limit: expected 1 or more")
    before = request.args.get("before")
    if job and not _client().may_run(job):
        raise Problem(403, "Forbidden", "this client may not see this job")
    allowed = None if "*" in _client().jobs else list(_client().jobs)
    items = list(s.history().runs(job=job, status=status, limit=limit, before=before,
                                  jobs=allowed))
    body: dict[str, Any] = {"runs": items}
    if len(items) == limit:
        body["next"] = f"/runs?limit={limit}&before={items[-1]['started_at']}" + (
            f"&job={job}" if job else "") + (f"&status={status}" if status else "")
    return jsonify(body)


@api.get("/jobs")
def jobs() -> Response:
    s = state()
    history = s.history()
    out = []
    for name, job in s.config.jobs.items():
        if not _client().may_run(name):
            continue
        running = history.running(name)
        out.append({"job": name, "kind": job.kind, "description": job.description,
                    "params": list(job.params), "schedule": job.schedule,
                    "last_run": history.last_ended(name),
                    "running_run_id": running[0]["run_id"] if running else None})
    return jsonify({"jobs": out})


# --- open endpoints ----------------------------------------------------------------------------

@api.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok", "version": __version__})


@api.get("/readyz")
def readyz() -> Response:
    from runner.service.readiness import readiness

    checks = readiness(state().config)
    ok = all(c["ok"] for c in checks)
    response = jsonify({"status": "ready" if ok else "not ready", "checks": checks})
    if not ok:
        failing = ", ".join(c["name"] for c in checks if not c["ok"])
        return Problem(503, "Not ready", f"failing checks: {failing}", checks=checks).response()
    return response


@api.get("/metrics")
def metrics() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    from notifiers.metrics import exposition

    return Response(exposition(state().config, state().history()),
                    headers={"Content-Type": CONTENT_TYPE_LATEST})


@api.get("/openapi.json")
def openapi() -> Response:
    from runner.service.openapi import document

    return jsonify(document(job_names=sorted(state().config.jobs)))


@api.get("/keys")
def keys() -> Response:
    """The public Ed25519 key that signs result payloads, when `[signing] key_file` is set."""
    key_file = state().config.signing.key_file
    if not key_file:
        return jsonify({"keys": []})
    from security.keys import public_from_whsk
    from security.secretfiles import read_secret_file

    return jsonify({"keys": [public_from_whsk(read_secret_file(key_file, "signing.key_file"))]})


# --- the app -----------------------------------------------------------------------------------

def create_app(config: Config) -> Flask:
    """The application factory: one app per gunicorn worker."""
    from runner.service.clients import load_clients

    app = Flask("restic_runner")
    # one byte more than allowed, so a body without Content-Length (chunked) that is too long
    # is seen to be too long (werkzeug stops reading at the limit without an error)
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes + 1
    auth_db = config.state_dir / "auth.db"
    mark_interrupted(History(config.state_dir))
    app.extensions["restic_runner"] = ApiState(
        config=config, clients=load_clients(config), seen=SeenIds(auth_db),
        limiter=FailureLimiter(auth_db), local=threading.local(),
        waits=WaitSlots(config.server.max_waits_per_client, config.server.threads // 2))
    # no 308 to a merged or slash-corrected path: its Location would quote the request
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.register_blueprint(api)

    @app.before_request
    def _read_in_time() -> Response | None:
        """The body is read here, under `[server] read_timeout`, before anything else looks at
        the request; a request whose deadline passed first is void (its client got a 408)."""
        from runner.service.readdeadline import request_read, request_timeout

        try:
            if (request.content_length or 0) <= config.server.max_body_bytes:
                body = request.get_data(cache=True)  # bounded: MAX_CONTENT_LENGTH
                if request.content_length is not None and len(body) < request.content_length:
                    # the client closed before sending it all (gunicorn hands over what came)
                    raise BadRequest()
        except HTTPException:  # over the limit, or cut off (by the deadline, or its client)
            if request_read():
                raise
        else:
            if request_read():
                return None
        return Problem(*request_timeout(config.server.read_timeout)).response()

    @app.errorhandler(Problem)
    def _problem(problem: Problem) -> Response:
        request.environ.setdefault(REFUSAL_KIND, problem.title)  # fixed words, for the log
        return problem.response()

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        # keep what the status needs (`Allow` on a 405), not werkzeug's HTML content type
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        request.environ.setdefault(REFUSAL_KIND, exc.name)
        # the class's own fixed words: an instance's description may quote the request
        return Problem(exc.code or 500, exc.name, type(exc).description,
                       headers=headers).response()

    @app.errorhandler(Exception)
    def _bug(exc: Exception) -> Response:
        import traceback

        from runner.service.refusals import parse_refusal
        from security.masking import redact_text

        refusal = parse_refusal(exc)  # gunicorn's, raised while the body is read (chunked)
        if refusal is not None:
            request.environ[REFUSAL_KIND] = refusal[2]
            return Problem(*refusal).response()

        app.logger.error("internal error\n%s", redact_text(traceback.format_exc()))
        return Problem(500, "Internal error", "see the service log").response()

    return app
