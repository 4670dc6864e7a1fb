"""The real service: `restic-runner serve` under gunicorn on a free loopback port."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import (
    RESTIC_BINARIES,
    Workspace,
    free_port,
    init_template,
    make_workspace,
    start_serve,
    stop_process,
)

API_RESTIC = "0.18"  # the API does not depend on restic's version; the engine's tests cover both


@pytest.fixture(scope="session")
def api_repo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = RESTIC_BINARIES[API_RESTIC]
    version = subprocess.run([binary, "version"], capture_output=True, text=True).stdout
    assert version.startswith(f"restic {API_RESTIC}."), f"{binary} is not restic {API_RESTIC}"
    return init_template(binary, tmp_path_factory.mktemp("api-template"))


@pytest.fixture
def ws(tmp_path: Path, api_repo_template: Path) -> Workspace:
    """Not the parametrised `ws` of tests/conftest.py: overriding its session-scoped
    `restic_version` here would share cached binaries with the engine's tests."""
    return make_workspace(tmp_path, RESTIC_BINARIES[API_RESTIC], API_RESTIC, api_repo_template)


def secret_file(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


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
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        stamp = int(time.time()) if stamp is None else stamp
        mac = hmac.new(key or self.key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256)
        return {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
                "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
                "Content-Type": "application/json"}

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


JOBS = """
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


@pytest.fixture
def server(ws: Workspace) -> Iterator[Server]:
    clients = api_clients(ws.root)
    big = ws.root / "big"
    big.mkdir()
    (big / "random.bin").write_bytes(os.urandom(1536 * 1024))
    port = free_port()
    ws.write_config(JOBS.format(data=ws.data, big=big) + clients.toml,
                    top=f'[server]\nbind = "127.0.0.1:{port}"\nworkers = 2\n'
                        'max_body_bytes = 4096\nmax_wait = "20s"\n')
    log = ws.root / "server.log"
    url = f"http://127.0.0.1:{port}"
    proc = start_serve(ws.env(), ws.root, url, log)
    yield Server(ws, url, clients.key, clients.token, clients.limited, proc, log)
    stop_process(proc)


def token_client(ws: Workspace) -> str:
    """A `[[clients]]` entry (all jobs, a bearer token file) to append to a test's config."""
    token = secret_file(ws.root / "t.token", "rrt_a-token-for-this-test")
    return f'[[clients]]\nname = "c"\ntoken_file = "{token}"\njobs = ["*"]\n'


def problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    doc = json.loads(response.text)
    assert doc["status"] == status and doc["title"]
    return doc
