"""What a hostile review of the live service found (docs/reliability.md, "Second hostile review"):
bounded long-polls, no forwarding headers, the run log served streamed and masked, signed
bodies bound to their method, one shutdown budget."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import pytest
import requests

from tests.support.processes import free_port, stop_process, wait_until
from tests.support.service import Server, api_clients, problem, start_serve
from tests.support.workspace import Workspace

IGNORES_SIGNALS = "#!/bin/sh\ntrap '' INT TERM\nsleep {seconds}\n"


def _hook(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def _serve(ws: Workspace, jobs: str, server: str = "") -> Server:
    clients = api_clients(ws.root)
    port = free_port()
    ws.write_config(jobs + clients.toml,
                    top=f'[server]\nbind = "127.0.0.1:{port}"\nworkers = 2\n{server}')
    log = ws.root / "server.log"
    url = f"http://127.0.0.1:{port}"
    proc = start_serve(ws.env(), ws.root, url, log)
    return Server(ws, url, clients.key, clients.token, clients.limited, proc, log)


def _hooked_jobs(ws: Workspace, hook: Path, *names: str) -> str:
    """Backup jobs `names` and `scheduled` (every 2 s) with `hook` as their pre_hook, and a
    check job (the limited client's)."""
    jobs = "".join(f'\n[jobs.{name}]\nkind = "backup"\npaths = ["{ws.data}"]\n'
                   f'pre_hook = ["{hook}"]\n' for name in (*names, "scheduled"))
    return jobs + 'schedule = "every 2s"\n\n[jobs.check]\nkind = "check"\n'


@pytest.fixture
def hooked(ws18: Workspace) -> Iterator[Server]:
    """A job whose pre_hook sleeps 60 s ignoring SIGINT/SIGTERM, also scheduled every 2 s."""
    hook = _hook(ws18.root, "stubborn.sh", IGNORES_SIGNALS.format(seconds=60))
    jobs = _hooked_jobs(ws18, hook, "stubborn") + f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws18.data}"]
"""
    server = _serve(ws18, jobs, 'graceful_timeout = "6s"\nthreads = 4\nmax_wait = "25s"\n')
    yield server
    stop_process(server.proc, timeout=60)
    os.system(f"pkill -KILL -f {ws18.root / 'stubborn.sh'}")  # the hooks outlive their runs


def test_serve_stops_within_one_graceful_timeout(hooked: Server) -> None:
    """The launcher, the scheduler and the workers all hold something that ignores the stop
    (runs in a pre_hook that traps SIGINT/SIGTERM, a long-poll): they stop together, so `serve`
    ends within one graceful_timeout (6 s) and a few seconds, not one timeout each."""
    accepted = hooked.post("/trigger/stubborn")
    assert accepted.status_code == 202, accepted.text
    hook = str(hooked.ws.root / "stubborn.sh")
    wait_until(lambda: len(_pids(hook)) >= 2, timeout=30)  # the API's run and the scheduler's
    poll = threading.Thread(target=lambda: _quiet_post(hooked, "/trigger/nightly?wait=25"))
    poll.start()
    time.sleep(0.5)
    started = time.monotonic()
    hooked.proc.send_signal(signal.SIGTERM)
    hooked.proc.wait(60)
    took = time.monotonic() - started
    poll.join(30)
    print(f"serve stopped in {took:.1f} s with graceful_timeout 6 s")
    assert took < 6 + 4, took  # one budget: sequential stops took 2-3 budgets (12-20 s)


def _pids(pattern: str) -> list[str]:
    import subprocess

    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()


def _quiet_post(server: Server, path: str) -> None:
    with suppress(requests.RequestException):
        server.post(path, b"{}", server.bearer())


def test_waits_are_capped_per_client_and_health_stays_answered(ws18: Workspace) -> None:
    """One client floods `?wait=25` on a slow run with one Idempotency-Key: the waits over its
    cap are answered 202 at once, and `/healthz` and other clients are answered within 1 s."""
    hook = _hook(ws18.root, "slow.sh", "#!/bin/sh\nsleep 40\n")
    jobs = f"""
[jobs.slow]
kind = "backup"
paths = ["{ws18.data}"]
pre_hook = ["{hook}"]

[jobs.check]
kind = "check"
"""
    server = _serve(ws18, jobs, 'threads = 8\nmax_wait = "25s"\n')
    try:
        headers = server.bearer() | {"Idempotency-Key": "flood-1"}
        first = server.post("/trigger/slow", b"{}", headers)
        assert first.status_code == 202

        def flood() -> tuple[int, float]:
            began = time.monotonic()
            answer = requests.post(server.url + "/trigger/slow?wait=25", data=b"{}",
                                   headers=headers, timeout=60)
            return answer.status_code, time.monotonic() - began

        with ThreadPoolExecutor(40) as pool:
            futures = [pool.submit(flood) for _ in range(40)]
            time.sleep(2)  # every waiter that could take a thread has one now
            health = []
            for _ in range(5):
                began = time.monotonic()
                assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
                ready = requests.get(server.url + "/readyz", timeout=5)
                other = server.get("/jobs", server.bearer(server.limited_token))
                health.append(time.monotonic() - began)
                assert ready.status_code in (200, 503) and other.status_code == 200
                time.sleep(0.2)
            answers = [f.result() for f in futures]
        print(f"healthz+readyz+jobs answered in at most {max(health):.3f} s during the flood")
        assert max(health) < 1.0
        quick = [took for status, took in answers if status == 202 and took < 5]
        waited = [took for status, took in answers if took >= 20]
        # two worker processes, two waits per client each: at most 4 held, the rest at once
        assert len(waited) <= 4 and len(quick) >= 36, answers
        assert {status for status, _ in answers} == {202}
    finally:
        stop_process(server.proc)
        os.system(f"pkill -KILL -f {hook}")


def test_forwarding_headers_are_not_honoured(server: Server) -> None:
    """From 127.0.0.1, gunicorn honoured SCRIPT_NAME by default: `/public/healthz` reached
    `/healthz` (bypassing a same-host proxy's path rules), and a mismatch answered 500."""
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"GET /public/healthz HTTP/1.1\r\nHost: x\r\nSCRIPT_NAME: /public\r\n"
                     b"Connection: close\r\n\r\n")
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 404 "), answer[:200]
    mismatch = requests.get(server.url + "/healthz", headers={"SCRIPT_NAME": "/elsewhere"},
                            timeout=5)
    assert mismatch.status_code == 200  # the header is dropped, not honoured nor a 500
    https = requests.get(server.url + "/openapi.json", headers={"X-Forwarded-Proto": "https"},
                         timeout=5)
    assert "https://" not in https.text


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_run_log_is_streamed_tailed_masked_and_never_a_symlink(server: Server) -> None:
    record = server.post("/trigger/nightly?wait=20").json()
    run_id = record["run_id"]
    whole = server.get(f"/runs/{run_id}/log")
    assert whole.status_code == 200 and whole.text.count("\n") > 3
    last_two = server.get(f"/runs/{run_id}/log?tail=2")
    assert last_two.text == "".join(whole.text.splitlines(keepends=True)[-2:])
    for bad in ("0", "-1", "x", "1e3", "²", "9" * 50):
        doc = problem(server.get(f"/runs/{run_id}/log?tail={bad}"), 400)
        assert doc["detail"] == "tail: expected an integer from 1 to 100000"
    log_path = server.ws.state / "logs" / "nightly" / f"{run_id}.log"
    assert log_path.is_file()
    # a log written before a secret was known to the run: masked again on the way out
    password = server.ws.password_file.read_text().strip()
    log_path.write_text(f"line one\nthe password is {password}\n" + "x" * 200_000 + "\n")
    served = server.get(f"/runs/{run_id}/log")
    assert password not in served.text and "the password is ***" in served.text
    assert len(served.text) > 200_000
    # a symlink put in the log's place is refused, not followed
    target = server.ws.root / "elsewhere.txt"
    target.write_text(f"not a log {password}\n")
    log_path.unlink()
    log_path.symlink_to(target)
    refused = problem(server.get(f"/runs/{run_id}/log"), 404)
    assert refused["detail"] == "the run's log is not a regular file"
    log_path.unlink()
    pruned = problem(server.get(f"/runs/{run_id}/log"), 404)
    assert pruned["detail"] == "the run's log was pruned"


def test_a_running_runs_missing_log_is_empty_not_pruned(server: Server) -> None:
    """The run is recorded before its log file exists: in that moment the log is empty."""
    run_id = server.post("/trigger/slow").json()["run_id"]
    log_path = server.ws.state / "logs" / "slow" / f"{run_id}.log"
    wait_until(log_path.exists, timeout=30)
    moved = log_path.with_suffix(".moved")
    log_path.rename(moved)  # as it is before the supervisor makes it
    try:
        answer = server.get(f"/runs/{run_id}/log")
        assert answer.status_code == 200 and answer.text == ""
        assert answer.headers["X-Run-Status"] == "running"
    finally:
        moved.rename(log_path)
        server.post(f"/runs/{run_id}/cancel", b"{}")


def test_signed_bodies_are_bound_to_their_method(server: Server) -> None:
    """The signature covers id, timestamp and body, not method or path: a captured signed GET
    (empty body) replayed as a trigger, or a signed trigger replayed as a GET, is refused."""
    captured_get = server.sign(b"")
    doc = problem(requests.post(server.url + "/trigger/nightly", data=b"",
                                headers=captured_get, timeout=10), 400)
    assert "JSON object" in doc["detail"]
    captured_post = server.sign(b"{}")
    problem(requests.get(server.url + "/runs", data=b"{}", headers=captured_post, timeout=10),
            400)
    assert server.get("/runs").json()["runs"] == []
    # a GET signed over its empty body is served
    assert requests.get(server.url + "/runs", headers=server.sign(b""),
                        timeout=10).status_code == 200


def _records(state: Path) -> list[dict]:
    import json
    import sqlite3

    db = sqlite3.connect(state / "history.db")
    try:
        return [json.loads(text) for (text,) in db.execute("SELECT record FROM runs")]
    finally:
        db.close()


def test_runs_stopped_in_a_stubborn_pre_hook_are_never_succeeded(ws18: Workspace) -> None:
    """The soak's finding, end to end: a pre_hook that ignores SIGINT/SIGTERM and then exits 0.
    An API run cancelled with POST /runs/<id>/cancel, and an API run and a scheduled run
    stopped by serve's shutdown, all end without restic having run: none is `succeeded`."""
    hook = _hook(ws18.root, "stubborn4.sh", IGNORES_SIGNALS.format(seconds=4))
    server = _serve(ws18, _hooked_jobs(ws18, hook, "stubborn", "other"),
                    'graceful_timeout = "2s"\n')
    try:
        cancelled = server.post("/trigger/stubborn").json()["run_id"]
        time.sleep(0.5)
        assert server.post(f"/runs/{cancelled}/cancel").status_code == 202
        record = server.wait_result(cancelled, timeout=30)
        assert record["status"] == "cancelled", record
        server.post("/trigger/other")
        wait_until(lambda: len(_pids(str(hook))) >= 2, timeout=30)  # API and scheduled runs
    finally:
        stop_process(server.proc, timeout=60)
    wait_until(lambda: not _pids(str(hook)), timeout=30)  # the hooks ran to their end
    wait_until(lambda: all(r["status"] != "running" for r in _records(ws18.state)), timeout=30)
    records = _records(ws18.state)
    assert {r["job"] for r in records} >= {"stubborn", "other", "scheduled"}
    assert not [r for r in records if r["status"] == "succeeded"], records
    assert not list(ws18.snapshots())  # restic never ran


def _probe_health(url: str, rounds: int = 5) -> float:
    """The slowest of a few /healthz answers, in seconds."""
    slowest = 0.0
    for _ in range(rounds):
        began = time.monotonic()
        assert requests.get(url + "/healthz", timeout=15).status_code == 200
        slowest = max(slowest, time.monotonic() - began)
        time.sleep(0.2)
    return slowest


def test_idle_connections_hold_no_thread(server: Server) -> None:
    """The second review: 40 connections that send nothing pushed /healthz to 9-10 s (gunicorn
    gives a new connection a thread for up to 5 s before it has sent a byte). Now they wait
    on the poller and are closed unheard after read_timeout."""
    port = int(server.url.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
    try:
        time.sleep(0.5)
        slowest = _probe_health(server.url)
        print(f"/healthz beside 60 idle connections: at most {slowest:.3f} s")
        assert slowest < 1.0
    finally:
        for sock in idle:
            sock.close()


def test_slow_readers_of_a_large_log_are_bounded(server: Server) -> None:
    """The second review: 20 clients that asked for a large log and read nothing held 20
    threads (no write deadline); /healthz got 408. Now a client holds at most its long-request
    slots (others get 429 at once) and a send that stalls is cut off."""
    run_id = server.post("/trigger/nightly?wait=20").json()["run_id"]
    log_path = server.ws.state / "logs" / "nightly" / f"{run_id}.log"
    log_path.write_bytes(b"a log line that goes on and on\n" * 200_000)  # ~6 MB
    port = int(server.url.rsplit(":", 1)[1])
    request = (f"GET /runs/{run_id}/log HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
               f"{server.token}\r\n\r\n").encode()
    readers = []
    for _ in range(20):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
        readers.append(sock)
    try:
        time.sleep(1)
        slowest = _probe_health(server.url)
        print(f"/healthz beside 20 non-reading log downloads: at most {slowest:.3f} s")
        assert slowest < 1.0
        heads = [sock.recv(64) for sock in readers]
        assert sum(h.startswith(b"HTTP/1.1 429") for h in heads) >= 14, heads
        assert sum(h.startswith(b"HTTP/1.1 200") for h in heads) <= 4
    finally:
        for sock in readers:
            sock.close()


def test_failed_logins_from_rotating_loopback_addresses_hit_the_limit(server: Server) -> None:
    """The second review: 3,000 guesses, each from its own 127.a.b.c, got 3,000 x 401 and no
    429. Loopback is one address group, and all addresses together have a limit too."""
    port = int(server.url.rsplit(":", 1)[1])
    statuses = []
    for i in range(30):
        with socket.socket() as sock:
            sock.bind((f"127.{i + 1}.3.7", 0))
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                         + f"rrt_guess-{i:04d}-abcdefgh".encode() + b"\r\n"
                         b"Connection: close\r\n\r\n")
            statuses.append(sock.recv(12)[9:12])
    assert statuses[:10] == [b"401"] * 10 and set(statuses[11:]) == {b"429"}, statuses
    assert server.get("/jobs").status_code == 200  # a valid credential still passes


def test_tags_come_only_from_the_jobs_allowed_tags(server: Server) -> None:
    """The second review: a tag is echoed in the (masked) run log, so a tag that is a secret
    came back as `***`: 16 guesses per run. A trigger's tags must be among allowed_tags, and
    a refused tag is not named."""
    password = server.ws.password_file.read_text().strip()
    for guess in (password, "Summer2024-guess"):
        body = json.dumps({"params": {"tags": ["weekly", guess]}}).encode()
        doc = problem(server.post("/trigger/nightly", body), 400)
        assert doc["detail"].startswith("params.tags: every tag must be one of the job's")
        assert guess not in doc["detail"]
    ok = server.post("/trigger/nightly?wait=20", b'{"params": {"tags": ["weekly"]}}')
    assert ok.status_code == 200 and ok.json()["params"] == {"tags": ["weekly"]}


def _health_during(url: str, seconds: float) -> float:
    """The slowest /healthz answer, probing every 0.3 s for `seconds`."""
    slowest, end = 0.0, time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.monotonic()
        assert requests.get(url + "/healthz", timeout=30).status_code == 200
        slowest = max(slowest, time.monotonic() - began)
        time.sleep(0.3)
    return slowest


def _health_beside(url: str, seconds: float, attack: Callable[[threading.Event], None],
                   threads: int = 1) -> float:
    """The slowest /healthz answer while `attack(stop)` runs in `threads` background threads."""
    stop = threading.Event()
    attackers = [threading.Thread(target=attack, args=(stop,)) for _ in range(threads)]
    for attacker in attackers:
        attacker.start()
    try:
        time.sleep(0.5)
        return _health_during(url, seconds)
    finally:
        stop.set()
        for attacker in attackers:
            attacker.join(20)


def test_clients_that_stay_after_a_closing_answer_do_not_stall_the_worker(
        server: Server) -> None:
    """The third review: gunicorn waited up to 2 s on the worker's event loop for a client to
    close after a closing answer; two such clients a second kept /healthz at 1.5-8.5 s."""
    port = int(server.url.rsplit(":", 1)[1])
    stay: list[socket.socket] = []

    def linger(stop: threading.Event) -> None:
        while not stop.is_set():
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            stay.append(sock)  # never closed until the end
            time.sleep(0.25)

    try:
        slowest = _health_beside(server.url, 6, linger)
    finally:
        for sock in stay:
            sock.close()
    print(f"/healthz while 4 clients a second stay after their answer: at most {slowest:.3f} s")
    assert slowest < 1.0


def test_slow_readers_of_open_endpoints_are_bounded(server: Server) -> None:
    """The third review: 32 connections pipelining /openapi.json with a 1 KB receive window,
    reading a little now and then, held every thread (9-16 s /healthz). Slow answers are
    bounded per address group and in all; beyond that they are cut."""
    port = int(server.url.rsplit(":", 1)[1])
    request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 120
    readers = []
    for _ in range(32):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        with suppress(OSError):
            sock.send(request)
        readers.append(sock)

    def trickle(stop: threading.Event) -> None:
        while not stop.is_set():
            for sock in readers:
                with suppress(OSError):
                    sock.recv(512)
            stop.wait(2)

    try:
        slowest = _health_beside(server.url, 8, trickle)
    finally:
        for sock in readers:
            sock.close()
    print(f"/healthz beside 32 trickle-readers of /openapi.json: at most {slowest:.3f} s")
    assert slowest < 1.0


def test_silent_connections_beyond_the_cap_do_not_lock_out_new_ones(server: Server) -> None:
    """The third review: 2,100 idle connections filled both workers' connection limits, and
    /healthz waited 10 s. A worker keeps at most 900 silent ones; beyond, the oldest goes."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard >= 2400, "this test needs 2,400 open files"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2400), hard))
    port = int(server.url.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2200)]
    try:
        slowest = _health_during(server.url, 3)
        print(f"/healthz beside 2,200 idle connections: at most {slowest:.3f} s")
        assert slowest < 1.0
    finally:
        for sock in idle:
            sock.close()


def test_a_body_cut_short_is_refused_and_runs_nothing(server: Server) -> None:
    """The third review: a bearer POST whose client closed after the head (Content-Length 27,
    no body) ran a real backup: gunicorn handed over the short body, and Flask did not check."""
    port = int(server.url.rsplit(":", 1)[1])
    for sent in (b"", b'{"params":{}}  '):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /trigger/nightly HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                         + server.token.encode() + b"\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 27\r\n\r\n" + sent)
            sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(100)
        assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert server.get("/runs").json()["runs"] == []


def test_clients_trickling_their_requests_cannot_hold_the_threads(server: Server) -> None:
    """A client that sends a byte and then waits held a thread until read_timeout (10 s);
    20 of them, reconnecting, kept /healthz at 10 s (the third review). A read still waiting
    for its client after 0.5 s is slow, and slow reads are bounded per address group and in
    all: beyond that they are answered 408 at once."""
    port = int(server.url.rsplit(":", 1)[1])
    cut = []

    def trickler(stop: threading.Event) -> None:
        while not stop.is_set():
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"G")
                sock.settimeout(15)
                with suppress(OSError):
                    answer = sock.recv(64)
                    cut.append(answer[:12])

    slowest = _health_beside(server.url, 6, trickler, threads=20)
    print(f"/healthz beside 20 reconnecting tricklers: at most {slowest:.3f} s")
    assert slowest < 1.0
    assert cut and set(cut) == {b"HTTP/1.1 408"}, set(cut)
