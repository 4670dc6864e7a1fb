"""The API's gate: body size, credentials, and the limits on failed attempts. Sets `g.client`
or raises a Problem (413, 401, 429); never says which part of a credential was wrong."""

from __future__ import annotations

import time

from flask import g, request

from runner.service.problems import Problem
from runner.service.refusals import (
    CLIENT_NAME,
    REFUSAL_KIND,
    REFUSAL_NOTED,
    address_group,
    note_refusal,
)
from runner.service.state import ApiState
from security.auth import AuthFailure, authenticate

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
    # by address group: any local user can bind any 127.x.y.z, a host usually has a whole /64
    address = f"addr:{address_group(request.remote_addr)}"
    body = request.get_data(cache=True)
    if len(body) > s.config.server.max_body_bytes:  # chunked: no Content-Length to check
        raise Problem(413, "Payload too large",
                      f"the body may be at most {s.config.server.max_body_bytes} bytes")
    try:
        g.client = authenticate(s.clients, request.headers, body, now=now, seen=s.seen)
        request.environ[CLIENT_NAME] = g.client.name  # for the access line
        if "webhook-signature" in request.headers:
            _check_signed_body(body)
    except AuthFailure as failure:
        # Valid credentials always pass: a flood of bad requests from an address (or a
        # misconfigured neighbour on the same host) must not lock the good clients out.
        # Failures are counted and, past the limit, answered 429 without more detail.
        request.environ[REFUSAL_KIND] = f"authentication failed ({failure.reason})"
        per_key = s.config.server.max_auth_failures
        # every address together too: many addresses (a botnet, or a local user binding
        # 127.x.y.z) get ten addresses' worth of guesses a minute, not ten each
        keys = [(address, per_key), (ALL_ADDRESSES, per_key * 10)]
        if failure.client and failure.reason in ("expired", "future"):
            # a known client with a bad clock; not replays, or one captured request could
            # lock its client out
            keys.append((f"client:{failure.client}", per_key))
        wait = _blocked_for(s, keys, now)
        # logged before the answer is sent (a client reading the log next finds it)
        note_refusal(request.remote_addr, 401 if wait is None else 429,
                     request.environ[REFUSAL_KIND])
        request.environ[REFUSAL_NOTED] = True
        if wait is not None:
            raise _too_many(wait) from None
        for key, _ in keys:
            s.limiter.record_failure(key, now)
        # Retry-After: the same credentials will fail again; a client that loops on 401
        # (Airflow's deferrable HttpSensor trigger, without sleeping) is told to wait
        raise Problem(401, "Unauthorized", "missing or invalid credentials",
                      headers={"WWW-Authenticate": 'Bearer realm="restic-runner"',
                               "Retry-After": RETRY_AFTER_REFUSED}) from None


ALL_ADDRESSES = "addr:*"
RETRY_AFTER_REFUSED = "60"
_blocked_until: dict[str, tuple[float, float]] = {}  # key -> (blocked until, trust until)
BLOCK_CACHE_SECONDS = 1.0


def _blocked_for(s: ApiState, keys: list[tuple[str, int]], now: float) -> float | None:
    """How long the first blocked key stays blocked. A block is remembered in this process for
    up to a second, so a flood is answered without asking SQLite every time."""
    for key, limit in keys:
        until, trust = _blocked_until.get(key, (0.0, 0.0))
        if now < trust and now < until:
            return until - now
        wait = s.limiter.blocked(key, now, limit)
        if wait is not None:
            if len(_blocked_until) > 10000:  # many addresses: start over rather than grow
                _blocked_until.clear()
            _blocked_until[key] = (now + wait, now + BLOCK_CACHE_SECONDS)
            return wait
    return None


def _check_signed_body(body: bytes) -> None:
    """A signature covers the id, the timestamp and the body, not the method or the path
    (Standard Webhooks): the body's shape binds the method. A signed POST carries a JSON object
    (`{}` at least), a signed GET none, so a captured signed poll cannot start a run and a
    captured trigger cannot be replayed as a read (docs/security.md)."""
    if request.method == "POST":
        if not body.lstrip().startswith(b"{"):
            raise Problem(400, "Bad request",
                          "a signed POST must carry a JSON object body ({} at least)")
    elif body:
        raise Problem(400, "Bad request", "a signed GET must not carry a body")


def _too_many(wait: float) -> Problem:
    return Problem(429, "Too many failed attempts", "try again later",
                   headers={"Retry-After": str(max(1, int(wait + 0.999)))})
