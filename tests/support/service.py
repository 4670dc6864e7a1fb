"""The running service: `restic-runner serve` under gunicorn on a free loopback port, the API
clients a config grants, and a small client of the API that signs or sends a bearer token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support.paths import RUNNER
from tests.support.processes import free_port, stop_process, wait_until
from tests.support.secrets import secret_file
from tests.support.workspace import Workspace

# --- starting and stopping `serve` ---------------------------------------------------------------


def start_serve(env: dict[str, str], cwd: Path, url: str, log: Path, *,
                own_session: bool = False, timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """`restic-runner serve` (output appended to `log`), once its `/healthz` answers at `url`.
    `own_session`: a session of its own, so `stop_process` can kill all it started."""
    with open(log, "ab") as out:
        process = subprocess.Popen([RUNNER, "serve"], env=env, stdout=out, stderr=out, cwd=cwd,
                                   start_new_session=own_session)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_until(up, timeout=timeout, interval=0.1)
    except AssertionError:
        stop_process(process)
        raise AssertionError(f"serve did not start:\n{log.read_text()}") from None
    return process


@dataclass
class Service:
    """`serve` started on a workspace's config: its URL, its process, its output."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)


def start_service(workspace: Workspace, port: int) -> Service:
    """`restic-runner serve` on the workspace's config (which must bind to `port`)."""
    url = f"http://127.0.0.1:{port}"
    log = workspace.root / f"serve-{port}.log"
    return Service(url, start_serve(workspace.env(), workspace.root, url, log), log)


# --- API clients ---------------------------------------------------------------------------------

TOKEN = "rrt_a-token-for-this-test"  # what token_client() writes


def token_client(ws: Workspace) -> str:
    """A `[[clients]]` entry (all jobs, bearer token `TOKEN` in a file) to append to a config."""
    token = secret_file(ws.root / "t.token", TOKEN)
    return f'[[clients]]\nname = "c"\ntoken_file = "{token}"\njobs = ["*"]\n'


@dataclass(frozen=True)
class ApiClients:
    """Three `[[clients]]` with fresh secrets, and the secrets a test signs or sends with."""

    key: bytes  # the HMAC key of the signing client (all jobs)
    token: str  # the bearer token of the token client (all jobs)
    limited: str  # the bearer token of client "limited" (job "check" only)
    toml: str  # the `[[clients]]` tables, secrets in 0600 files under the given directory


def api_clients(root: Path, *, signer: str = "airflow", bearer: str = "cron") -> ApiClients:
    key = os.urandom(32)
    token = "rrt_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    limited = "rrt_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    whsec = secret_file(root / f"{signer}.whsec", "whsec_" + base64.b64encode(key).decode())
    tok = secret_file(root / f"{bearer}.token", token)
    lim = secret_file(root / "limited.token", limited)
    return ApiClients(key, token, limited, f"""
[[clients]]
name = "{signer}"
secret_file = "{whsec}"
jobs = ["*"]

[[clients]]
name = "{bearer}"
token_file = "{tok}"
jobs = ["*"]

[[clients]]
name = "limited"
token_file = "{lim}"
jobs = ["check"]
""")


def sign(key: bytes, body: bytes, *, msg_id: str | None = None,
         stamp: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers signing `body` with `key` (a `secret_file` client's)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    stamp = int(time.time()) if stamp is None else stamp
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
            "Content-Type": "application/json"}


# --- the API's test client -----------------------------------------------------------------------

@dataclass
class Server:
    ws: Workspace
    url: str
    key: bytes  # the HMAC key of client "airflow" (all jobs)
    token: str  # the bearer token of client "cron" (all jobs)
    limited_token: str  # client "limited": job "check" only
    proc: subprocess.Popen[bytes]
    log: Path

    def sign(self, body: bytes, *, msg_id: str | None = None, stamp: int | None = None,
             key: bytes | None = None) -> dict[str, str]:
        return sign(key or self.key, body, msg_id=msg_id, stamp=stamp)

    def bearer(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def post(self, path: str, body: bytes = b"{}", headers: dict[str, str] | None = None,
             **kw: Any) -> requests.Response:
        headers = self.sign(body) if headers is None else headers
        return requests.post(self.url + path, data=body, headers=headers, timeout=60, **kw)

    def get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.get(self.url + path, headers=self.bearer() if headers is None
                            else headers, timeout=60)

    def wait_result(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.get(f"/runs/{run_id}/result")
            if response.status_code == 200:
                return response.json()
            assert response.status_code == 404, response.text
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not end in {timeout}s")

    def workers(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


API_JOBS = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]
params = ["tags", "dry_run"]
allowed_tags = ["weekly", "manual", "automated", "airflow", "cli", "leak", "leak-suite", "x"]

[jobs.slow]
kind = "backup"
paths = ["{big}"]
args = ["--limit-upload", "150"]

[jobs.check]
kind = "check"
"""


def start_api_server(ws: Workspace) -> Server:
    """The API suites' service: jobs `nightly`, `slow` (1.5 MB at 150 KiB/s) and `check`, the
    three clients of `api_clients`, two workers. The caller stops `proc` with `stop_process`."""
    clients = api_clients(ws.root)
    big = ws.root / "big"
    big.mkdir()
    (big / "random.bin").write_bytes(os.urandom(1536 * 1024))
    port = free_port()
    ws.write_config(API_JOBS.format(data=ws.data, big=big) + clients.toml,
                    top=f'[server]\nbind = "127.0.0.1:{port}"\nworkers = 2\n'
                        'max_body_bytes = 4096\nmax_wait = "20s"\n')
    log = ws.root / "server.log"
    url = f"http://127.0.0.1:{port}"
    proc = start_serve(ws.env(), ws.root, url, log)
    return Server(ws, url, clients.key, clients.token, clients.limited, proc, log)


def problem(response: requests.Response, status: int) -> dict[str, Any]:
    """The RFC 9457 problem document of an answer that must have `status`."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    doc = json.loads(response.text)
    assert doc["status"] == status and doc["title"]
    return doc
