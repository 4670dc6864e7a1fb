"""The API's gate: body size, credentials, and the limits on failed attempts. Sets `g.client`
or raises a Problem (413, 401, 429); never says which part of a credential was wrong."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from flask import current_app, g, request

from runner.problems import Problem
from security.auth import AuthFailure, authenticate

if TYPE_CHECKING:
    from runner.api import ApiState

OPEN_ENDPOINTS = frozenset({"api.healthz", "api.readyz", "api.metrics", "api.openapi",
                            "api.keys"})


def admit(s: ApiState) -> None:
    """Admit the request or raise the Problem that refuses it."""
    length = request.content_length
    if length is not None and length > s.config.server.max_body_bytes:
        raise Problem(413, "Payload too large",
                      f"the body may be at most {s.config.server.max_body_bytes} bytes")
    if request.endpoint in OPEN_ENDPOINTS or request.endpoint is None:
        return
    now = time.time()
    address = f"addr:{request.remote_addr}"
    body = request.get_data(cache=True)
    if len(body) > s.config.server.max_body_bytes:  # chunked: no Content-Length to check
        raise Problem(413, "Payload too large",
                      f"the body may be at most {s.config.server.max_body_bytes} bytes")
    try:
        g.client = authenticate(s.clients, request.headers, body, now=now, seen=s.seen)
    except AuthFailure as failure:
        # Valid credentials always pass: a flood of bad requests from an address (or a
        # misconfigured neighbour on the same host) must not lock the good clients out.
        # Failures are counted and, past the limit, answered 429 without more detail.
        _log_failure(failure.reason, request.remote_addr)
        keys = [address]
        if failure.client and failure.reason in ("expired", "future"):
            # a known client with a bad clock; not replays, or one captured request could
            # lock its client out
            keys.append(f"client:{failure.client}")
        wait = _blocked_for(s, keys, now)
        if wait is not None:
            raise _too_many(wait) from None
        for key in keys:
            s.limiter.record_failure(key, now)
        raise Problem(401, "Unauthorized", "missing or invalid credentials",
                      headers={"WWW-Authenticate": 'Bearer realm="restic-runner"'}) from None


_blocked_until: dict[str, tuple[float, float]] = {}  # key -> (blocked until, trust until)
BLOCK_CACHE_SECONDS = 1.0


def _blocked_for(s: ApiState, keys: list[str], now: float) -> float | None:
    """How long the first blocked key stays blocked. A block is remembered in this process for
    up to a second, so a flood is answered without asking SQLite every time."""
    for key in keys:
        until, trust = _blocked_until.get(key, (0.0, 0.0))
        if now < trust and now < until:
            return until - now
        wait = s.limiter.blocked(key, now)
        if wait is not None:
            if len(_blocked_until) > 10000:  # many addresses: start over rather than grow
                _blocked_until.clear()
            _blocked_until[key] = (now + wait, now + BLOCK_CACHE_SECONDS)
            return wait
    return None


_failure_log: dict[str, tuple[float, int]] = {}
_failure_log_lock = threading.Lock()
FAILURE_LOG_EVERY = 10.0


def _log_failure(reason: str, address: str | None) -> None:
    """One warning per source address every 10 s, with a count: a flood of bad requests must
    not turn into a flood of log lines (or fill the disk)."""
    key, now = f"{address}:{reason}", time.monotonic()
    with _failure_log_lock:
        if len(_failure_log) > 10000:
            _failure_log.clear()
        last, suppressed = _failure_log.get(key, (0.0, 0))
        if now - last < FAILURE_LOG_EVERY:
            _failure_log[key] = (last, suppressed + 1)
            return
        _failure_log[key] = (now, 0)
    more = f" (+{suppressed} more since the last report)" if suppressed else ""
    current_app.logger.warning("authentication failed (%s) from %s%s", reason, address, more)


def _too_many(wait: float) -> Problem:
    return Problem(429, "Too many failed attempts", "try again later",
                   headers={"Retry-After": str(max(1, int(wait + 0.999)))})
