"""Raw hostile HTTP at the real service (gunicorn gthread on loopback), byte for byte over a socket:
oversized and chunked bodies, invalid JSON and UTF-8, deep nesting, huge and many headers,
repeated credential headers, path traversal in job names and run ids (`..`, `%2e%2e`, `%2f`, NUL),
unknown methods, HTTP/1.0 and 0.9, an HTTP/2 preface, smuggling through an oversized body, and
slow clients (slowloris: head, body, and a kept-alive connection).

Every answer must be a 4xx (never a 5xx, never silence: every socket has a timeout), every
refusal application/problem+json (docs/api.md: "Every error is application/problem+json"), and
the service healthy afterwards: /healthz answers 200 and its log holds no traceback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass

import pytest
import requests

from tests.support.fuzzing import (
    HOST,
    MAX_BODY,
    READ_TIMEOUT,
    assert_healthy,
    broken_lines,
    log_mark,
    port_of,
    raw_exchange,
)
from tests.support.service import Server

TIMEOUT = 10.0


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    broken: tuple[str, ...] = ()  # what the service logged as broken while answering

    @property
    def problem(self) -> dict | None:
        """The problem document, when the answer is one."""
        if not self.headers.get("content-type", "").startswith("application/problem+json"):
            return None
        doc = json.loads(self.body)
        return doc if isinstance(doc, dict) and doc.get("status") == self.status else None


def parse(raw: bytes) -> Answer:
    """The first HTTP answer in `raw`."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), f"no HTTP answer: {raw[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return Answer(status, headers, rest[:length])


def request(method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"",
            version: str = "HTTP/1.1", extra: bytes = b"") -> bytes:
    """A request as bytes; `extra` goes in verbatim after the headers (before the blank line)."""
    lines = [f"{method} {target} {version}", "Host: 127.0.0.1", "Connection: close"]
    headers = dict(headers or {})
    if body and "Transfer-Encoding" not in headers and "Content-Length" not in headers:
        headers["Content-Length"] = str(len(body))
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n" + extra + b"\r\n" + body


def signed(server: Server, body: bytes) -> dict[str, str]:
    msg_id, stamp = f"msg_{uuid.uuid4().hex}", int(time.time())
    mac = hmac.new(server.key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def bearer(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


def chunked(body: bytes, size: int = 1000) -> bytes:
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


DRY_RUN = b'{"params": {"dry_run": true}}'
REFUSED = {401, 429}  # no or bad credentials (429 once this address failed more than 10 times)


def _dup_signature(s: Server) -> bytes:
    good = signed(s, DRY_RUN)
    extra = f"webhook-signature: {good['webhook-signature']}\r\n".encode()
    return request("POST", "/trigger/trim", good, DRY_RUN, extra=extra)


def _dup_signature_junk(s: Server) -> bytes:
    good = signed(s, DRY_RUN)
    return request("POST", "/trigger/trim", good, DRY_RUN, extra=b"webhook-signature: v1,AAAA\r\n")


def _dup_authorization(s: Server) -> bytes:
    extra = f"Authorization: Bearer {s.token}\r\n".encode()
    return request("POST", "/trigger/trim", bearer(s), DRY_RUN, extra=extra)


Build = Callable[[Server], bytes]
# id -> (request, the statuses it may get)
CASES: dict[str, tuple[Build, set[int]]] = {
    # bodies
    "length-over-the-limit": (lambda s: request(
        "POST", "/trigger/tiny", {"Content-Length": str(10**11)}), {413}),
    "body-over-the-limit": (lambda s: request(
        "POST", "/trigger/trim", bearer(s), DRY_RUN + b" " * MAX_BODY), {413}),
    # no Content-Length, so the gate's size check (runner/service/gate.py:24) passes, and
    # werkzeug's max_content_length stops reading at the limit without an error: the body is
    # cut to max_body_bytes, still valid JSON here, and the trigger is accepted (202)
    "chunked-body-over-the-limit": (lambda s: request(
        "POST", "/trigger/trim", {**bearer(s), "Transfer-Encoding": "chunked"},
        chunked(DRY_RUN + b" " * 2 * MAX_BODY)), {413}),
    "invalid-json": (lambda s: request("POST", "/trigger/trim", bearer(s), b"{nope"), {400}),
    "invalid-utf8": (lambda s: request("POST", "/trigger/trim", bearer(s), b'{"\xff\xfe": 1}'),
                     {400}),
    "json-array": (lambda s: request("POST", "/trigger/trim", bearer(s), b"[1, 2]"), {400}),
    # json.loads raises RecursionError, which runner/service/params.py:44 does not catch: 500
    "json-deeply-nested": (lambda s: request(
        "POST", "/trigger/trim", bearer(s), b'{"params": ' + b"[" * 1500 + b"]" * 1500 + b"}"),
        {400}),
    "json-nul-and-escapes": (lambda s: request(
        "POST", "/trigger/tiny", bearer(s), b'{"params": {"tags": ["a\\u0000b", "\\ud800"]}}'),
        {400}),
    "json-unknown-member": (lambda s: request("POST", "/trigger/trim", bearer(s), b'{"x": 1}'),
                            {400}),
    "param-not-allowed": (lambda s: request("POST", "/trigger/check", bearer(s), DRY_RUN), {400}),
    "tag-injection": (lambda s: request(
        "POST", "/trigger/tiny", bearer(s), b'{"params": {"tags": ["--password-file=/x"]}}'),
        {400}),
    # credentials
    "signature-header-twice": (_dup_signature, REFUSED),
    "signature-header-twice-one-junk": (_dup_signature_junk, REFUSED),
    "authorization-twice": (_dup_authorization, REFUSED),
    "bearer-and-a-stray-signature": (lambda s: request(
        "POST", "/trigger/trim", {**bearer(s), "webhook-signature": "v1,AAAA"}, DRY_RUN),
        REFUSED),
    "credential-header-9k": (lambda s: request(
        "GET", "/jobs", {"Authorization": "Bearer " + "a" * 8190}), REFUSED | {431}),
    "job-of-another-client": (lambda s: request(
        "POST", "/trigger/tiny", {"Authorization": f"Bearer {s.limited_token}"}), {403}),
    "runs-of-another-client": (lambda s: request(
        "GET", "/runs?job=tiny", {"Authorization": f"Bearer {s.limited_token}"}), {403}),
    "latin1-credential": (lambda s: request(
        "GET", "/jobs", {"Authorization": "Bearer \xff\xfe" + s.token}), REFUSED),
    "idempotency-key-too-long": (lambda s: request(
        "POST", "/trigger/trim", {**bearer(s), "Idempotency-Key": "k" * 300}, DRY_RUN), {400}),
    "idempotency-key-control-char": (lambda s: request(
        "POST", "/trigger/trim", {**bearer(s), "Idempotency-Key": "k\x7fk"}, DRY_RUN), {400}),
    # paths
    "job-dotdot-slashes": (lambda s: request(
        "POST", "/trigger/..%2F..%2Fetc%2Fpasswd", bearer(s)), {404}),
    "job-dotdot-encoded": (lambda s: request("POST", "/trigger/%2e%2e", bearer(s)), {404}),
    "job-dotdot": (lambda s: request("POST", "/trigger/..", bearer(s)), {404}),
    "job-nul": (lambda s: request("POST", "/trigger/tiny%00", bearer(s)), {404}),
    "job-backslashes": (lambda s: request("POST", "/trigger/..%5c..%5ctiny", bearer(s)), {404}),
    "run-dotdot-slashes": (lambda s: request(
        "GET", "/runs/..%2F..%2Fhistory.db", bearer(s)), {404}),
    "run-dotdot-log": (lambda s: request("GET", "/runs/%2e%2e/log", bearer(s)), {404}),
    "run-nul-log": (lambda s: request("GET", "/runs/%00/log", bearer(s)), {404}),
    "run-overlong-utf8": (lambda s: request("GET", "/runs/%c0%ae%c0%ae/log", bearer(s)), {404}),
    "run-cancel-dotdot": (lambda s: request("POST", "/runs/..%2Flocks/cancel", bearer(s)), {404}),
    # query strings
    "wait-nan": (lambda s: request("POST", "/trigger/trim?wait=nan", bearer(s)), {400}),
    "wait-infinite": (lambda s: request("POST", "/trigger/trim?wait=1e400", bearer(s)), {400}),
    "wait-negative": (lambda s: request("POST", "/trigger/trim?wait=-1", bearer(s)), {400}),
    "limit-not-a-number": (lambda s: request("GET", "/runs?limit=abc", bearer(s)), {400}),
    "limit-zero": (lambda s: request("GET", "/runs?limit=0", bearer(s)), {400}),
    "limit-5000-digits": (lambda s: request("GET", "/runs?limit=" + "9" * 5000, bearer(s)),
                          {400, 414}),
    # methods and versions
    "unknown-method": (lambda s: request("FROB", "/healthz"), {405}),
    "delete-jobs": (lambda s: request("DELETE", "/jobs", bearer(s)), {405}),
    "put-trigger": (lambda s: request("PUT", "/trigger/tiny", bearer(s), DRY_RUN), {405}),
    "trace": (lambda s: request("TRACE", "/runs"), {405}),
    "http-1.0-without-credentials": (lambda s: request(
        "POST", "/trigger/tiny", version="HTTP/1.0"), REFUSED),
    "absolute-form-target": (lambda s: request("GET", "http://evil.example/jobs"), REFUSED),
    "http-0.9": (lambda s: b"GET /jobs\r\n\r\n", {400}),
    "http-2-preface": (lambda s: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505}),
    "http-version-9.9": (lambda s: request("GET", "/healthz", version="HTTP/9.9"), {400, 505}),
    "garbage": (lambda s: b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n", {400}),
    # framing and headers
    "nul-in-request-line": (lambda s: b"GET /runs/\x00 HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    "header-10k": (lambda s: request("GET", "/healthz", {"X-Big": "a" * 10_000}), {431}),
    "200-headers": (lambda s: request("GET", "/healthz",
                                      {f"X-H{i}": "v" for i in range(200)}), {431}),
    "uri-9k": (lambda s: request("GET", "/runs/" + "a" * 9000, bearer(s)), {414}),
    "content-length-abc": (lambda s: request(
        "POST", "/trigger/tiny", {"Content-Length": "abc"}), {400}),
    "content-length-negative": (lambda s: request(
        "POST", "/trigger/tiny", {"Content-Length": "-1"}), {400}),
    "content-length-and-chunked": (lambda s: request(
        "POST", "/trigger/tiny", {"Content-Length": "5", "Transfer-Encoding": "chunked"},
        b"0\r\n\r\n"), {400}),
    "content-length-twice": (lambda s: request(
        "POST", "/trigger/tiny", {"Content-Length": "2"}, b"{}",
        extra=b"Content-Length: 3\r\n"), {400}),
    "header-without-colon": (lambda s: request("GET", "/healthz", extra=b"NoColonHere\r\n"),
                             {400}),
    "header-name-with-space": (lambda s: request("GET", "/healthz", extra=b"Bad Name: x\r\n"),
                               {400}),
    "obsolete-line-folding": (lambda s: request(
        "GET", "/jobs", extra=b"Authorization: Bearer\r\n " + s.token.encode() + b"\r\n"),
        {400} | REFUSED),
}


@pytest.fixture(scope="module")
def answers(fuzz_service: Server) -> Iterator[dict[str, Answer]]:
    """Every case sent once, each on its own connection with a socket timeout, with what the
    service logged as broken meanwhile."""
    out = {}
    for name, (build, _) in CASES.items():
        mark = log_mark(fuzz_service)
        answer = parse(raw_exchange(fuzz_service, build(fuzz_service), timeout=TIMEOUT))
        time.sleep(0.05)  # the access log line follows the answer
        out[name] = Answer(answer.status, answer.headers, answer.body,
                           tuple(broken_lines(fuzz_service, mark)))
    yield out


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_request_gets_a_4xx(fuzz_service: Server, answers: dict[str, Answer],
                                    name: str) -> None:
    answer, expected = answers[name], CASES[name][1]
    assert answer.status in expected, (answer.status, answer.headers, answer.body[:500])
    assert not answer.broken, answer.broken
    assert requests.get(fuzz_service.url + "/healthz", timeout=TIMEOUT).status_code == 200


def test_every_refusal_is_problem_json(answers: dict[str, Answer]) -> None:
    """docs/api.md: "Every error is application/problem+json". gunicorn answers what it refuses
    itself (431, 414, a request line or header it cannot parse) with its own text/html page
    before the application sees the request."""
    offenders = [f"{name}: {a.status} {a.headers.get('content-type')}"
                 for name, a in sorted(answers.items()) if a.status >= 400 and a.problem is None]
    assert not offenders, "not problem+json:\n" + "\n".join(offenders)


def test_405_answers_say_which_methods_are_allowed(answers: dict[str, Answer]) -> None:
    """RFC 9110 §15.5.6: a 405 MUST carry Allow. runner/service/api.py:337-339 turns werkzeug's
    MethodNotAllowed into a problem and drops the headers the exception carried."""
    for name in ("unknown-method", "delete-jobs", "put-trigger", "trace"):
        assert "allow" in answers[name].headers, (name, answers[name].headers)


def test_hostile_requests_start_no_run_and_leave_no_file(fuzz_service: Server) -> None:
    """Requests aimed at paths outside the state directory found nothing to read or create."""
    mark = log_mark(fuzz_service)
    before = sorted(p.name for p in fuzz_service.ws.state.rglob("*"))
    for name in ("job-dotdot-slashes", "job-dotdot-encoded", "run-dotdot-log", "run-nul-log",
                 "run-cancel-dotdot", "tag-injection", "json-nul-and-escapes"):
        raw_exchange(fuzz_service, CASES[name][0](fuzz_service), timeout=TIMEOUT)
    after = sorted(p.name for p in fuzz_service.ws.state.rglob("*"))
    assert [n for n in after if n not in before and not n.endswith(("-wal", "-shm"))] == []
    assert_healthy(fuzz_service, mark)


def test_an_oversized_body_is_not_read_as_a_second_request(fuzz_service: Server) -> None:
    """A body over the limit is refused with 413; a request hidden inside it (request
    smuggling) is not executed: no run starts."""
    mark = log_mark(fuzz_service)
    runs_before = len(fuzz_service.get("/runs?limit=200").json()["runs"])
    hidden = (b"POST /trigger/tiny HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
              + fuzz_service.token.encode() + b"\r\nContent-Length: 0\r\n\r\n")
    body = hidden * (MAX_BODY // len(hidden) + 2)
    raw = request("POST", "/trigger/trim", {"Connection": "keep-alive"}, body)
    answers = raw_exchange(fuzz_service, raw.replace(b"Connection: close\r\n", b""),
                           timeout=TIMEOUT)
    assert parse(answers).status == 413
    assert answers.count(b"HTTP/1.1 ") == 1, answers[:2000]
    time.sleep(0.5)
    assert len(fuzz_service.get("/runs?limit=200").json()["runs"]) == runs_before
    assert_healthy(fuzz_service, mark)


# --------------------------------------------------------------------------- slow clients


class Trickle:
    """Slow clients: each opens a connection and sends a request's header one short line at a
    time, for as long as the test runs (slowloris)."""

    def __init__(self, server: Server, clients: int, every: float = 0.3,
                 head: bytes = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n") -> None:
        self.server, self.every = server, every
        self.socks = [socket.create_connection((HOST, port_of(server)), timeout=TIMEOUT)
                      for _ in range(clients)]
        self.stop = threading.Event()
        for sock in self.socks:
            sock.sendall(head)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop.wait(self.every):
            n += 1
            for sock in self.socks:
                with suppress(OSError):
                    sock.sendall(self.line(n))

    def line(self, n: int) -> bytes:
        return f"X-Slow-{n}: y\r\n".encode()

    def finish(self) -> list[int]:
        """End each slow request and return the statuses they got."""
        self._stop_trickling()
        statuses = []
        for sock in self.socks:
            with sock:
                try:
                    sock.sendall(b"Connection: close\r\n\r\n")
                    statuses.append(parse(_read_all(sock)).status)
                except OSError:
                    statuses.append(0)
        return statuses

    def answers(self) -> list[Answer]:
        """Without sending more: what the service answered each of them before it closed."""
        self._stop_trickling()
        return [parse(_read_all(sock)) for sock in self.socks]

    def _stop_trickling(self) -> None:
        self.stop.set()
        self.thread.join(timeout=TIMEOUT)

    def close(self) -> None:
        self.stop.set()
        for sock in self.socks:
            sock.close()


class TrickleBody(Trickle):
    """Slow clients that send a whole head and then their body one byte at a time."""

    def line(self, n: int) -> bytes:
        return b"{"


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_one(sock: socket.socket) -> bytes:
    """One whole answer (head and Content-Length body) from a connection that stays open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed inside an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(parse(head + b"\r\n\r\n").headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed inside a body: {data!r}"
        body += chunk
    assert len(body) == length, f"more than one answer: {data!r}"
    return head + b"\r\n\r\n" + body


def _others_answered(server: Server, times: int = 5, timeout: float = 3) -> list[str]:
    """Plain requests by another client while the slow ones are trickling: each must be
    answered within `timeout`."""
    problems = []
    for _ in range(times):
        try:
            response = requests.get(server.url + "/healthz", timeout=timeout)
            if response.status_code != 200:
                problems.append(f"{response.status_code}")
        except requests.RequestException as exc:
            problems.append(type(exc).__name__)
        time.sleep(0.2)
    return problems


def _cut_off(answer: Answer) -> bool:
    """A 408 problem that names the setting."""
    return (answer.status == 408 and answer.problem is not None
            and "read_timeout" in answer.problem["detail"])


def test_a_slow_client_does_not_block_others(fuzz_service: Server) -> None:
    mark = log_mark(fuzz_service)
    slow = Trickle(fuzz_service, clients=2)
    try:
        time.sleep(0.6)  # both have sent part of their header
        assert _others_answered(fuzz_service) == []
        assert slow.finish() == [200, 200]  # done within read_timeout: they are served
    finally:
        slow.close()
    assert_healthy(fuzz_service, mark)


def test_as_many_slow_clients_as_threads_do_not_lock_others_out(fuzz_service: Server) -> None:
    """gunicorn's gthread worker reads a request's head with no overall deadline once it has
    begun: as many slow clients as the service has threads (workers x threads: 2 x 4 here;
    twice that, as SO_REUSEPORT spreads connections unevenly) held every thread, /healthz
    included, for as long as they trickled. `[server] read_timeout` cuts each off with a 408,
    so another client waits at most that long."""
    mark = log_mark(fuzz_service)
    slow = Trickle(fuzz_service, clients=2 * 2 * 4)
    try:
        time.sleep(1.0)
        started = time.monotonic()
        assert _others_answered(fuzz_service, times=3, timeout=READ_TIMEOUT + 4) == []
        assert time.monotonic() - started < READ_TIMEOUT + 4
        answers = slow.answers()
        assert all(_cut_off(a) for a in answers), [(a.status, a.body[:80]) for a in answers]
    finally:
        slow.close()
    assert_healthy(fuzz_service, mark)


def test_a_trickled_body_is_cut_off_and_nothing_runs(fuzz_service: Server) -> None:
    """The deadline covers the body too (slow POST): the request is answered 408 and not
    acted on."""
    runs_before = len(fuzz_service.get("/runs?limit=200").json()["runs"])
    head = (f"POST /trigger/tiny HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer "
            f"{fuzz_service.token}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n"
            f"\r\n").encode()
    slow = TrickleBody(fuzz_service, clients=2, head=head)
    try:
        time.sleep(READ_TIMEOUT + 1)
        answers = slow.answers()
        assert all(_cut_off(a) for a in answers), [(a.status, a.body[:80]) for a in answers]
    finally:
        slow.close()
    assert len(fuzz_service.get("/runs?limit=200").json()["runs"]) == runs_before


def test_a_kept_alive_connection_gets_a_new_deadline_per_request(fuzz_service: Server) -> None:
    """A first request sent at once, then a second one trickled on the same connection."""
    with socket.create_connection((HOST, port_of(fuzz_service)), timeout=TIMEOUT) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        assert _read_one(sock).startswith(b"HTTP/1.1 200 ")
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n".encode())
        started = time.monotonic()
        with suppress(OSError):
            while time.monotonic() - started < READ_TIMEOUT + 3:
                sock.sendall(b"X-Slow: y\r\n")
                time.sleep(0.3)
                if select.select([sock], [], [], 0)[0]:
                    break
        answer = parse(_read_all(sock))
    assert _cut_off(answer), (answer.status, answer.body[:80])
    assert READ_TIMEOUT - 0.5 < time.monotonic() - started < READ_TIMEOUT + 3


def test_gunicorn_refusals_never_quote_the_request(fuzz_service: Server) -> None:
    """gunicorn's own 400 quotes what it could not parse (here the HTTP version); masked, that
    quote was an oracle (`***` where the guess was a secret). It is fixed words instead."""
    answer = raw_exchange(fuzz_service, f"GET /runs {fuzz_service.token}\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"application/problem+json" in head
    detail = json.loads(body)["detail"]
    assert detail == "the request line has an invalid HTTP version"
    assert b"***" not in answer
    assert fuzz_service.token.encode() not in answer
