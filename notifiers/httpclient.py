"""One HTTP request, the way notifiers need it: no redirects followed (a redirect is an answer,
not an invitation to send a signed body elsewhere), a hard timeout, the answer's status, headers
and a short body, and errors that never show more of the URL than `scheme://host/...`.

Built on `http.client`: `requests` would cost ~60 ms of import in every `restic-runner run`,
and every feature used here is one call of the standard library.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from runner.checks import Check
from security.controlchars import printable
from security.masking import mask_webhook_url, redact_text

if TYPE_CHECKING:
    from notifiers.base import Outcome

USER_AGENT = "restic-runner"
MAX_ANSWER = 4096  # bytes of the answer body kept (for error messages)


class HttpError(Exception):
    """The request did not get an answer (refused, timed out, TLS); the message is masked."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def retry_after(self) -> float | None:
        """`Retry-After` in seconds (delta-seconds or an HTTP date), when given."""
        value = self.headers.get("retry-after")
        if not value:
            return None
        if value.strip().isdigit():
            return float(value.strip())
        try:
            import time

            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {mask_webhook_url(url)}")
    port = parts.port
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return conn, target


def request(method: str, url: str, *, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0,
            max_body: int = MAX_ANSWER) -> Answer:
    """Send one request; raise HttpError when no answer came. Keeps `max_body` bytes of the
    answer."""
    conn, target = _connection(url, timeout)
    all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
    if body is not None:
        all_headers.setdefault("Content-Length", str(len(body)))
    try:
        conn.request(method, target, body=body, headers=all_headers)
        response = conn.getresponse()
        data = response.read(max_body)
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    except (OSError, http.client.HTTPException) as exc:
        raise HttpError(describe_error(exc, url)) from None
    finally:
        conn.close()


def reachable(url: str, timeout: float = 5.0) -> str | None:
    """None when a TCP (and, for https, TLS) connection to the URL's host can be made; else why
    not. Sends no request."""
    conn, _ = _connection(url, timeout)
    try:
        conn.connect()
        return None
    except (OSError, http.client.HTTPException) as exc:
        return describe_error(exc, url)
    finally:
        conn.close()


def describe_error(exc: BaseException, url: str) -> str:
    where = mask_webhook_url(url)
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"{where}: timed out"
    if isinstance(exc, ssl.SSLError):
        return f"{where}: TLS error: {exc.reason or exc}"
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return redact_text(f"{where}: {reason}")


def answer_said(answer: Answer) -> str:
    """The start of an answer's body, on one masked line, control characters escaped."""
    return redact_text(printable(" ".join(
        answer.body[:200].decode("utf-8", "replace").split())))


def answer_error(answer: Answer, url: str, *, quote: bool = False) -> str:
    """A masked one-line description of a non-2xx answer. With `quote`, what the server said
    too: only where the operator alone reads it (doctor, `metrics prune`). A delivery's error
    is shown to every API client of the job, and a server that echoes guesses in its error
    page would learn from the masking which guess was a secret (`***`): its words go to the
    service log only (`Outcome.said`)."""
    text = f"{mask_webhook_url(url)} answered HTTP {answer.status}"
    said = answer_said(answer) if quote else ""
    return redact_text(f"{text}: {said}" if said else text)


def outcome_of(answer: Answer, url: str, *, permanent: frozenset[int] = frozenset()) -> Outcome:
    """2xx delivers; 410 Gone disables the target; `permanent` statuses are not retried; any
    other answer is retried (after `Retry-After`, when given)."""
    from notifiers.base import Outcome

    if answer.ok:
        return Outcome.ok(f"HTTP {answer.status}")
    outcome = Outcome.failed(f"HTTP {answer.status}", answer_error(answer, url),
                             retry=answer.status not in permanent,
                             retry_after=answer.retry_after())
    outcome.gone = answer.status == 410
    note_refusal(outcome, answer)
    return outcome


def note_refusal(outcome: Outcome, answer: Answer) -> None:
    """What a refusing server said, for the operator only: logged by the process that tried
    (`Outcome.said`), and kept as the target's `last_refusal` for `doctor` (the process that
    tried may have no log: a run's supervisor outlives the service). Never in a delivery's
    error, which API clients read."""
    from runner.engine.record import utc_now

    outcome.said = answer_said(answer)
    outcome.remember["last_refusal"] = {"at": utc_now(), "status": answer.status,
                                        "said": outcome.said}


def reachable_check(name: str, url: str, timeout: float, note: str) -> Check:
    """A doctor line: the URL's host accepts a connection (nothing is sent); `note` says what
    could not be checked."""

    problem = reachable(url, timeout=timeout)
    if problem:
        return Check.of(name, False, problem)
    return Check.of(name, True, f"{mask_webhook_url(url)} reachable ({note})")
