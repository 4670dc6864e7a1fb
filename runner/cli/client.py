"""The client side of the API, for `restic-runner trigger` (cron, scripts, CronJobs)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import UserError
from security.secretfiles import read_secret_file

POLL_EVERY = 2.0  # between polls when the service cannot long-poll for us
LONG_POLL_CHUNK = 20.0  # seconds per `?wait=` request (the service caps it at its max_wait)
GET_ATTEMPTS = 3
EXIT_WAIT_TIMED_OUT = 124


@dataclass(frozen=True, slots=True)
class TriggerOutcome:
    exit_code: int
    message: str
    run_id: str | None = None
    busy: bool = False


class ApiClient:
    def __init__(self, base_url: str, *, hmac_key: bytes | None = None,
                 token: str | None = None, timeout: float = 30.0) -> None:
        import requests

        self.base = base_url.rstrip("/")
        self.hmac_key, self.token, self.timeout = hmac_key, token, timeout
        self.session = requests.Session()

    @classmethod
    def from_files(cls, base_url: str, *, secret_file: str | None,
                   token_file: str | None) -> ApiClient:
        from security.auth import parse_whsec

        if secret_file:
            secret = read_secret_file(Path(secret_file), "--secret-file").splitlines()[0]
            try:
                return cls(base_url, hmac_key=parse_whsec(secret))
            except ValueError as exc:
                raise UserError(f"--secret-file: {exc}") from None
        assert token_file
        # the first line, as for --secret-file: a file mounted for the service may hold the
        # new and the old token while they rotate
        token = read_secret_file(Path(token_file), "--token-file").splitlines()[0].strip()
        return cls(base_url, token=token)

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.hmac_key is not None:
            from security.auth import sign_v1

            msg_id, stamp = f"msg_{uuid.uuid4().hex}", int(time.time())
            headers.update({"webhook-id": msg_id, "webhook-timestamp": str(stamp),
                            "webhook-signature": sign_v1(self.hmac_key, msg_id, stamp, body)})
        else:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(self, method: str, path: str, body: bytes = b"",
                extra: dict[str, str] | None = None, *, timeout: float | None = None) -> Any:
        """One request. Polling reuses a keep-alive connection that the server may close at the
        same instant (gunicorn's keepalive is 2 s), so a GET is tried up to GET_ATTEMPTS times,
        each attempt signed anew: the service refuses a signature it has seen as a replay. A
        POST is never retried (it could start a second run; --idempotency-key makes that safe)."""
        import requests

        attempts = GET_ATTEMPTS if method == "GET" else 1
        for attempt in range(1, attempts + 1):
            headers = self._headers(body) | (extra or {})
            try:
                return self.session.request(method, self.base + path, data=body,
                                            headers=headers,
                                            timeout=timeout or self.timeout,
                                            allow_redirects=False)
            except requests.RequestException as exc:
                if attempt == attempts:
                    raise UserError(f"cannot reach {self.base}: {type(exc).__name__}") from None
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    def trigger(self, job: str, params: dict[str, Any], *, idempotency_key: str | None,
                wait: float | None) -> TriggerOutcome:
        # a JSON object even without params: the service refuses a signed POST without one
        body = json.dumps({"params": params}).encode() if params else b"{}"
        extra = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self.request("POST", f"/trigger/{job}", body, extra)
        doc = _json(response)
        if response.status_code == 409:
            return TriggerOutcome(0, f"{job}: skipped: already running (run {doc.get('run_id')})",
                                  doc.get("run_id"), busy=True)
        if response.status_code not in (200, 202):
            detail = doc.get("detail") or doc.get("title") or response.reason
            code = 2 if 400 <= response.status_code < 500 else 1
            return TriggerOutcome(code, f"{job}: HTTP {response.status_code}: {detail}")
        run_id = doc["run_id"]
        if wait is None:
            return TriggerOutcome(0, run_id, run_id)
        return self.wait_for(run_id, wait)

    def wait_for(self, run_id: str, seconds: float) -> TriggerOutcome:
        """Long-polls `/runs/<id>/result?wait=` (the service answers within 25 ms of the run's
        end); falls back to polling every POLL_EVERY seconds when the service answers "not yet"
        before the wait asked for (its wait slots are taken, or an older service)."""
        deadline = time.monotonic() + seconds
        while True:
            chunk = max(0.0, min(LONG_POLL_CHUNK, deadline - time.monotonic()))
            asked = time.monotonic()
            response = self.request("GET", f"/runs/{run_id}/result?wait={chunk:.3f}",
                                    timeout=self.timeout + chunk)
            if response.status_code == 200:
                return _final_outcome(_json(response), run_id)
            if response.status_code != 404 or time.monotonic() >= deadline:
                break
            if time.monotonic() - asked < chunk - 1.0:  # answered early: poll, never spin
                time.sleep(min(POLL_EVERY, max(0.0, deadline - time.monotonic())))
        doc = _json(response)
        if response.status_code == 404 and doc.get("run_status"):
            return TriggerOutcome(EXIT_WAIT_TIMED_OUT,
                                  f"run {run_id} still running after {seconds:g}s", run_id)
        if response.status_code == 410:
            return TriggerOutcome(1, f"run {run_id}: the service has no record of it "
                                     "(never started there, or pruned)", run_id)
        return TriggerOutcome(1, f"run {run_id}: HTTP {response.status_code}", run_id)


def _final_outcome(record: dict[str, Any], run_id: str) -> TriggerOutcome:
    """`<job>: <status> (exit N)`, and the run's (masked) error line when it did not succeed."""
    code = record.get("exit_code")
    message = f"{record.get('job')}: {record.get('status')} (exit {code})"
    if record.get("error") and record.get("status") not in ("succeeded",):
        message += f": {record['error']}"
    return TriggerOutcome(code if isinstance(code, int) else 1, f"{message} · run {run_id}",
                          run_id)


def _json(response: Any) -> dict[str, Any]:
    try:
        doc = response.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
