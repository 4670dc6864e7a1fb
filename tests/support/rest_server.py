"""rclone's restic REST server (`rclone serve restic`, Debian's rclone 1.60) on a loopback port:
repositories reached over HTTP, with basic auth when asked, so a repository URL carries a
password as production ones do."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.support.paths import RCLONE_BINARIES
from tests.support.processes import free_port, wait_port


@dataclass
class RestServer:
    port: int
    process: subprocess.Popen[bytes]
    user: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """`rest:http://[user:password@]127.0.0.1:port/` (the password URL-encoded)."""
        auth = f"{self.user}:{quote(self.password or '', safe='')}@" if self.user else ""
        return f"rest:http://{auth}127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_rest_server(root: Path, *, user: str | None = None,
                      password: str | None = None) -> RestServer:
    """A REST server for the repositories under `root` (made if missing), once it listens."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = ["--user", user, "--pass", password or ""] if user else []
    process = subprocess.Popen([RCLONE_BINARIES["1.60"], "serve", "restic", "--addr",
                                f"127.0.0.1:{port}", *auth, str(root)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return RestServer(port, process, user, password)
