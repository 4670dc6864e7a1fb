"""Fuzzing helpers: hypothesis settings with one seed per test process (printed with every
failure), a hard deadline that catches hangs, and a real service with quick, harmless jobs (a
backup of a three-file directory to a throwaway repository, a `check`, a `forget --keep-last
50`), so whatever a fuzzer triggers costs about a second of restic and touches nothing outside
the test's temporary directory; the checks that it is still healthy, and raw exchanges."""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import requests
from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as hypothesis_seed

from tests.support.paths import ONE_RESTIC, RESTIC_BINARIES
from tests.support.processes import free_port
from tests.support.service import Server, api_clients, start_serve
from tests.support.workspace import Workspace, make_workspace

# One seed per test process, printed with every failure (and in the header when this directory is
# what pytest was asked to run): `FUZZ_SEED=<n> pytest tests/fuzz` repeats a run's examples.
SEED = int(os.environ.get("FUZZ_SEED") or random.randrange(2**32))
HANG_SECONDS = 30.0  # an example still running after this long is a hang
# Shrinking a failure can take minutes; the minimal examples of what these fuzzers found are kept
# as plain tests beside them. FUZZ_SHRINK=1 shrinks anyway (to study a new failure).
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target] + (
    [Phase.shrink] if os.environ.get("FUZZ_SHRINK") else [])

HOST = "127.0.0.1"
MAX_BODY = 4096
READ_TIMEOUT = 4  # [server] read_timeout: a slow client's request is cut off after this
# Words that mean something broke inside the service; none may appear in its log.
BROKEN = ("Traceback", "internal error", "Internal Server Error", "[CRITICAL]", "WORKER TIMEOUT",
          "Exception in worker", "Error handling request")

JOBS = """
[jobs.tiny]
kind = "backup"
paths = ["{data}"]
params = ["tags", "dry_run"]
allowed_tags = ["weekly", "manual", "automated", "airflow", "cli", "leak", "leak-suite", "x"]

[jobs.check]
kind = "check"

[jobs.trim]
kind = "forget"
args = ["--keep-last", "50"]
params = ["dry_run"]
"""


F = TypeVar("F", bound=Callable[..., Any])


def fuzz(max_examples: int, *, deadline: float = 5.0) -> Callable[[F], F]:
    """Hypothesis settings for this directory: bounded examples, a per-example deadline, no
    example database (each run draws afresh from SEED), and the seed applied."""
    def apply(test: F) -> F:
        configured = settings(
            max_examples=max_examples, deadline=timedelta(seconds=deadline), database=None,
            print_blob=True, phases=PHASES,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                   HealthCheck.data_too_large])(test)
        return hypothesis_seed(SEED)(configured)  # type: ignore[no-any-return]
    return apply


@contextmanager
def hard_deadline(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Interrupt the code inside after `seconds` (hypothesis' deadline only measures an example
    once it has returned, so it cannot catch a hang). Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"still running after {seconds}s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def start_fuzz_service(root: Path, template: Path, *, threads: int = 4, extra_jobs: str = ""
                  ) -> Server:
    """Configure and start the service; the caller stops it with `stop_process`. `extra_jobs`
    (TOML, `{tiny}` for the tiny directory) adds jobs to the three above."""
    ws: Workspace = make_workspace(root, RESTIC_BINARIES[ONE_RESTIC], ONE_RESTIC, template)
    tiny = root / "tiny"
    tiny.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (tiny / name).write_text(f"{name}\n")
    clients = api_clients(root, signer="signer", bearer="fuzzer")
    port = free_port()
    ws.write_config(JOBS.format(data=tiny) + extra_jobs.replace("{tiny}", str(tiny))
                    + clients.toml,
                    top=f'[server]\nbind = "{HOST}:{port}"\nworkers = 2\nthreads = {threads}\n'
                        f'max_body_bytes = {MAX_BODY}\nmax_wait = "1s"\n'
                        f'read_timeout = "{READ_TIMEOUT}s"\n')
    log = root / "server.log"
    url = f"http://{HOST}:{port}"
    proc = start_serve(ws.env(), root, url, log, own_session=True)
    return Server(ws, url, clients.key, clients.token, clients.limited, proc, log)


def log_mark(server: Server) -> int:
    """Where the service log ends now (a test checks only what its own requests logged)."""
    return server.log.stat().st_size


def broken_lines(server: Server, since: int = 0) -> list[str]:
    """Lines of the service log (from byte `since`) that say something broke inside."""
    with open(server.log, "rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    return [line for line in text.splitlines() if any(word in line for word in BROKEN)]


def assert_healthy(server: Server, since: int = 0) -> None:
    """The service still answers, and nothing it logged since `since` says something broke."""
    response = requests.get(server.url + "/healthz", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"
    assert server.proc.poll() is None, "the service exited"
    broken = broken_lines(server, since)
    assert not broken, "service log:\n" + "\n".join(broken[:40])


def raw_exchange(server: Server, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes on a new connection, close our side, and return all that comes back
    until the server closes the connection. A server that neither answers nor closes within
    `timeout` fails the test: that is a hang."""
    with socket.create_connection((HOST, port_of(server)), timeout=timeout) as sock:
        with suppress(BrokenPipeError, ConnectionResetError):  # it may answer before reading all
            sock.sendall(data)
        with suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            raise AssertionError(f"no complete answer within {timeout}s to {data[:120]!r}; "
                                 f"got {b''.join(chunks)[:300]!r}") from None
        except ConnectionResetError:
            pass
    return b"".join(chunks)


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])
