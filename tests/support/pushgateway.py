"""A real Pushgateway (Debian's `prometheus-pushgateway`) on a loopback port, with basic auth
from a web config when asked, and the reads a test makes of it."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.paths import PUSHGATEWAY
from tests.support.processes import free_port, wait_until

PG_USER, PG_PASSWORD = "pusher", "pg-pässw/rd@:%-canary"


@dataclass
class Pushgateway:
    url: str
    process: subprocess.Popen[bytes]
    auth: tuple[str, str] | None = None

    def get(self, path: str) -> bytes:
        request = urllib.request.Request(self.url + path)
        if self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            return bytes(response.read())

    def exposition(self) -> str:
        return self.get("/metrics").decode()

    def groups(self) -> list[dict[str, Any]]:
        return list(json.loads(self.get("/api/v1/metrics"))["data"])

    def value(self, metric: str, **labels: str) -> float | None:
        """A metric's value in the group with these grouping labels (None: not there)."""
        for group in self.groups():
            if all(group["labels"].get(k) == v for k, v in labels.items()):
                family = group.get(metric)
                if family:
                    return float(family["metrics"][0]["value"])
        return None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_pushgateway(base: Path, *, password: str | None = None) -> Pushgateway:
    """A Pushgateway on a free port, persisting to `base` every second; with `password`, only
    user `PG_USER` with that password may push or read."""
    port = free_port()
    args = [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={base / 'pg.db'}", "--persistence.interval=1s"]
    auth = None
    if password is not None:
        import bcrypt

        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        web = base / "web.yml"
        web.write_text(f"basic_auth_users:\n  {PG_USER}: '{hashed}'\n")
        args.append(f"--web.config.file={web}")
        auth = (PG_USER, password)
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateway = Pushgateway(f"http://127.0.0.1:{port}", process, auth)

    def ready() -> bool:
        try:
            gateway.get("/-/ready")
            return True
        except OSError:
            return False

    wait_until(ready, timeout=15, interval=0.02)
    return gateway


def start_pushgateway_on(base: Path, port: int) -> Pushgateway:
    """A Pushgateway without auth on a chosen port (a config names the port before the gateway
    comes up: the gateway that is down, then back)."""
    process = subprocess.Popen(
        [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}",
         f"--persistence.file={base / 'pg.db'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateway = Pushgateway(f"http://127.0.0.1:{port}", process)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"pushgateway exited {process.returncode}")
        try:
            gateway.get("/-/ready")
            return True
        except OSError:
            return False

    wait_until(ready, timeout=15)
    return gateway
