"""No answer quotes the request. The masker replaces every configured secret in what the service
writes, so an answer that quoted a request would show `***` exactly where the caller's guess was
a secret: an oracle (a hostile review found the restic password that way, at ~31,000 guesses a
second). The property: a request holding a configured secret anywhere (method, path, query,
header name or value, body, HTTP version) and the same request with that secret replaced by
other text of the same length get identical answers (status line, headers but `Date`, body),
over every route and every refusal of the HTTP server itself (400/404/405/408/413/414/431).

The limit on failed authentications is set out of reach, so both requests of a pair are
treated alike (a pair straddling the 429 would differ for a reason that is not the secret)."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.paths import ONE_RESTIC, RESTIC_BINARIES
from tests.support.processes import free_port, stop_process
from tests.support.secrets import CANARY, secret_file
from tests.support.service import api_clients, start_serve
from tests.support.workspace import make_workspace

TOKEN = "rrt_oracle-token-0123456789abcdef"  # the client's own credential (reaches the routes)


@dataclass
class OracleService:
    port: int
    secrets: dict[str, str]  # name -> a value the service masks
    job_run_id: str  # an existing run, for the routes under /runs/<id>


@pytest.fixture(scope="module")
def oracle_service(tmp_path_factory: pytest.TempPathFactory, repo_template18: Path
                   ) -> Iterator[OracleService]:
    root = tmp_path_factory.mktemp("oracle")
    ws = make_workspace(root / "ws", RESTIC_BINARIES[ONE_RESTIC], ONE_RESTIC, repo_template18)
    repo_password = ws.password_file.read_text().strip()
    hook_header = "Bearer hook-pa/ss@w:rd%20-x9"
    smtp_password = "smtp-" + CANARY
    smtp_file = secret_file(ws.root / "smtp.password", smtp_password)
    token_file = secret_file(ws.root / "oracle.token", TOKEN)
    auth_file = secret_file(ws.root / "hook.auth", hook_header)
    clients = api_clients(ws.root)
    port = free_port()
    closed = free_port()
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
params = ["tags"]
allowed_tags = ["weekly", "manual", "automated", "airflow", "cli", "leak", "leak-suite", "x"]

[jobs.check]
kind = "check"

[[clients]]
name = "oracle"
token_file = "{token_file}"
jobs = ["*"]

[notify.webhooks.ops]
url = "http://127.0.0.1:{closed}/hook"
auth_header_file = "{auth_file}"

[notify.mail]
host = "127.0.0.1"
port = {closed}
username = "runner"
password_file = "{smtp_file}"
from = "runner@example.org"
to = ["ops@example.org"]
""" + clients.toml, top=f'[server]\nbind = "127.0.0.1:{port}"\nworkers = 2\n'
                        'read_timeout = "1s"\nmax_body_bytes = 4096\n'
                        'max_auth_failures = 1000000\n')  # pairs must not straddle a 429
    log = ws.root / "server.log"
    proc = start_serve(ws.env(), ws.root, f"http://127.0.0.1:{port}", log)
    try:
        import requests

        run = requests.post(f"http://127.0.0.1:{port}/trigger/check?wait=20", data=b"{}",
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60).json()
        yield OracleService(port, {"repository password": repo_password,
                             "webhook auth header": hook_header,
                             "smtp password": smtp_password,
                             "client token": clients.token}, run["run_id"])
    finally:
        stop_process(proc)


AUTH = f"Authorization: Bearer {TOKEN}\r\n"

# Where a secret goes: a raw request with {S} for the secret (and {RUN} for an existing run id).
TEMPLATES: dict[str, str] = {
    "method": "{S} / HTTP/1.1\r\nHost: x\r\n\r\n",
    "method after a guess": "Summer2024,{S} / HTTP/1.1\r\nHost: x\r\n\r\n",
    "HTTP version": "GET /healthz HTTP/{S}\r\nHost: x\r\n\r\n",
    "request line, extra part": "GET /healthz {S} HTTP/1.1\r\nHost: x\r\n\r\n",
    "path, open route": "GET /healthz/{S} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "path, no credentials": "GET /runs/{S} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "path, run id": "GET /runs/{S} HTTP/1.1\r\nHost: x\r\n" + AUTH + "Connection: close\r\n\r\n",
    "path, run result": "GET /runs/{S}/result HTTP/1.1\r\nHost: x\r\n" + AUTH
                        + "Connection: close\r\n\r\n",
    "path, run log": "GET /runs/{S}/log HTTP/1.1\r\nHost: x\r\n" + AUTH
                     + "Connection: close\r\n\r\n",
    "path, cancel": "POST /runs/{S}/cancel HTTP/1.1\r\nHost: x\r\n" + AUTH
                    + "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    "path, job": "POST /trigger/{S} HTTP/1.1\r\nHost: x\r\n" + AUTH
                 + "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    "path, unknown route": "GET /{S}/x HTTP/1.1\r\nHost: x\r\n" + AUTH
                           + "Connection: close\r\n\r\n",
    "path, method not allowed": "DELETE /runs/{S} HTTP/1.1\r\nHost: x\r\n" + AUTH
                                + "Connection: close\r\n\r\n",
    "query, job filter": "GET /runs?job={S} HTTP/1.1\r\nHost: x\r\n" + AUTH
                         + "Connection: close\r\n\r\n",
    "query, status filter": "GET /runs?status={S} HTTP/1.1\r\nHost: x\r\n" + AUTH
                            + "Connection: close\r\n\r\n",
    "query, limit": "GET /runs?limit={S} HTTP/1.1\r\nHost: x\r\n" + AUTH
                    + "Connection: close\r\n\r\n",
    "query, before": "GET /runs?before={S} HTTP/1.1\r\nHost: x\r\n" + AUTH
                     + "Connection: close\r\n\r\n",
    "query, wait": "POST /trigger/nightly?wait={S} HTTP/1.1\r\nHost: x\r\n" + AUTH
                   + "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    "query, tail": "GET /runs/{RUN}/log?tail={S} HTTP/1.1\r\nHost: x\r\n" + AUTH
                   + "Connection: close\r\n\r\n",
    "header name": "GET /runs HTTP/1.1\r\nHost: x\r\n" + AUTH + "X-{S}: 1\r\n"
                   "Connection: close\r\n\r\n",
    "header value": "GET /runs HTTP/1.1\r\nHost: x\r\n" + AUTH + "X-Guess: {S}\r\n"
                    "Connection: close\r\n\r\n",
    "bearer token": "GET /runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {S}\r\n"
                    "Connection: close\r\n\r\n",
    "signature header": "GET /runs HTTP/1.1\r\nHost: x\r\nwebhook-id: msg_1\r\n"
                        "webhook-timestamp: 1\r\nwebhook-signature: v1,{S}\r\n"
                        "Connection: close\r\n\r\n",
    "Idempotency-Key": "POST /trigger/nightly HTTP/1.1\r\nHost: x\r\n" + AUTH
                       + "Idempotency-Key: {S}\r\nContent-Length: 22\r\nConnection: close\r\n"
                         "\r\n{\"params\": {\"x\": 1}}  ",
    "Content-Length": "POST /trigger/nightly HTTP/1.1\r\nHost: x\r\n" + AUTH
                      + "Content-Length: {S}\r\nConnection: close\r\n\r\n{}",
    "Transfer-Encoding": "POST /trigger/nightly HTTP/1.1\r\nHost: x\r\n" + AUTH
                         + "Transfer-Encoding: {S}\r\nConnection: close\r\n\r\n{}",
    "chunk size": "POST /trigger/nightly HTTP/1.1\r\nHost: x\r\n" + AUTH
                  + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{S}\r\n{}\r\n0\r\n\r\n",
    "request line too long (414)": "GET /runs/{S}" + "a" * 5000
                                   + " HTTP/1.1\r\nHost: x\r\n\r\n",
    "header too long (431)": "GET /runs HTTP/1.1\r\nHost: x\r\nX-Long: {S}" + "a" * 9000
                             + "\r\n\r\n",
    "body too large (413)": "POST /trigger/nightly HTTP/1.1\r\nHost: x\r\n" + AUTH
                            + "Content-Length: 9000\r\nConnection: close\r\n\r\n{S}" + "a" * 50,
    "body, not JSON": "POST /trigger/nightly HTTP/1.1\r\nHost: x\r\n" + AUTH
                      + "Content-Length: {LEN}\r\nConnection: close\r\n\r\n{S}",
    "body, member name": "POST /trigger/nightly HTTP/1.1\r\nHost: x\r\n" + AUTH
                         + "Content-Length: {LEN}\r\nConnection: close\r\n\r\n"
                           "{\"{JS}\": 1}",
    "body, param name": "POST /trigger/nightly HTTP/1.1\r\nHost: x\r\n" + AUTH
                        + "Content-Length: {LEN}\r\nConnection: close\r\n\r\n"
                          "{\"params\": {\"{JS}\": 1}}",
    "body, tag": "POST /trigger/nightly HTTP/1.1\r\nHost: x\r\n" + AUTH
                 + "Content-Length: {LEN}\r\nConnection: close\r\n\r\n"
                   "{\"params\": {\"tags\": [\"ok\", \"{JS}\"], \"zz\": 1}}",  # never starts
    "signed body": "POST /trigger/nightly HTTP/1.1\r\nHost: x\r\nwebhook-id: msg_2\r\n"
                   "webhook-timestamp: 1\r\nwebhook-signature: v1,AAAA\r\n"
                   "Content-Length: {LEN}\r\nConnection: close\r\n\r\n{S}",
    "unfinished head (408)": "GET /runs/{S} HTTP/1.1\r\nHost: x\r\n",
}


# a client's own token where a token goes is a valid credential: its answer differs, rightly
VALID_CREDENTIAL = {("bearer token", "client token")}


def _render(template: str, secret: str, run_id: str) -> bytes:
    json_secret = json.dumps(secret, ensure_ascii=False)[1:-1]
    head, sep, body = template.partition("\r\n\r\n")
    body = body.replace("{S}", secret).replace("{JS}", json_secret)
    head = head.replace("{S}", secret).replace("{RUN}", run_id)
    head = head.replace("{LEN}", str(len(body.encode())))
    return (head + sep + body).encode()


def _send(port: int, request: bytes, source: str) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(15)
        sock.connect(("127.0.0.1", port))
        with suppress(OSError):  # the server answered and closed before taking all of it
            sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


def _normalised(answer: bytes) -> tuple[bytes, list[bytes], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *headers = head.split(b"\r\n")
    kept = sorted(h for h in headers if not h.lower().startswith(b"date:"))
    return status, kept, body


SAME_UTF8_LENGTH = {2: "äöüéñßø", 3: "€漢字ア", 4: "🔑🎉😀🦊"}


def _twin(secret: str, rng: random.Random) -> str:
    """Random text of the same length and shape: each letter another letter, each digit another
    digit, each non-ASCII character another of the same UTF-8 length; punctuation and spaces
    stay where they are (they are the request's delimiters: moving them would change its shape,
    and so its answer, whatever the service does with secrets)."""
    def other(c: str) -> str:
        if c.isascii() and c.isalpha():
            return rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        if c.isascii() and c.isdigit():
            return rng.choice("0123456789")
        if not c.isascii():
            return rng.choice(SAME_UTF8_LENGTH[len(c.encode())])
        return c

    while True:
        twin = "".join(other(c) for c in secret)
        if twin != secret:
            return twin


def _source(rng: random.Random) -> str:
    return f"127.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}.{rng.randrange(2, 255)}"


def _pair(service: OracleService, template: str, secret: str, rng: random.Random
          ) -> tuple[bytes, bytes]:
    source = _source(rng)
    twin = _twin(secret, rng)
    with_secret = _send(service.port, _render(template, secret, service.job_run_id), source)
    with_twin = _send(service.port, _render(template, twin, service.job_run_id), source)
    return with_secret, with_twin


def _check(service: OracleService, place: str, name: str, seed: int) -> str:
    rng = random.Random(seed)
    secret = service.secrets[name]
    with_secret, with_twin = _pair(service, TEMPLATES[place], secret, rng)
    assert with_secret, f"{place} / {name}: no answer"
    assert _normalised(with_secret) == _normalised(with_twin), (
        f"{place} / {name}: the answer depends on whether the request held a secret:\n"
        f"{with_secret[:600]!r}\n---\n{with_twin[:600]!r}")
    assert b"***" not in with_secret, f"{place} / {name}: {with_secret[:600]!r}"
    return with_secret.split(b"\r\n", 1)[0].decode()


def test_no_answer_depends_on_a_secret_in_the_request(oracle_service: OracleService) -> None:
    """Every place × every configured secret, each pair from its own address."""
    jobs = [(place, name) for place in TEMPLATES for name in oracle_service.secrets
            if (place, name) not in VALID_CREDENTIAL]
    with ThreadPoolExecutor(8) as pool:  # the 408 cases wait out read_timeout (1 s)
        statuses = list(pool.map(lambda job: (job[0], _check(oracle_service, *job, seed=hash(job))),
                                 jobs))
    seen = {status.split(" ")[1] for _, status in statuses}
    assert not [(place, status) for place, status in statuses if status.split(" ")[1] == "500"]
    # the refusals of every layer were reached, not just one kind
    assert {"400", "401", "404", "405", "408", "413", "414", "431"} <= seen, seen


@settings(max_examples=120, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(place=st.sampled_from(sorted(TEMPLATES)), data=st.data())
def test_secret_inside_random_text_changes_no_answer(oracle_service: OracleService, place: str,
                                                     data: st.DataObject) -> None:
    """The secret inside random text around it (a guess with a prefix and suffix)."""
    name = data.draw(st.sampled_from(sorted(oracle_service.secrets)), label="secret")
    if (place, name) in VALID_CREDENTIAL:
        name = "smtp password"
    alphabet = st.characters(codec="utf-8", exclude_characters="\r\n\0")
    prefix = data.draw(st.text(alphabet, max_size=6), label="prefix")
    suffix = data.draw(st.text(alphabet, max_size=6), label="suffix")
    seed = data.draw(st.integers(0, 2**32), label="seed")
    rng = random.Random(seed)
    secret = oracle_service.secrets[name]
    template = TEMPLATES[place].replace("{S}", prefix + "{S}" + suffix).replace(
        "{JS}", json.dumps(prefix, ensure_ascii=False)[1:-1] + "{JS}"
        + json.dumps(suffix, ensure_ascii=False)[1:-1])
    with_secret, with_twin = _pair(oracle_service, template, secret, rng)
    assert _normalised(with_secret) == _normalised(with_twin), (
        f"{place} / {name}:\n{with_secret[:600]!r}\n---\n{with_twin[:600]!r}")
    assert b"***" not in with_secret
