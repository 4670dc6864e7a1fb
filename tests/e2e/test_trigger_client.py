"""`restic-runner trigger --wait` over a connection that is lost after the service has seen a
poll: the poll is tried again, signed anew. A retry with the same signed headers is a replay to
the service (401), and the client used to report it as the run's failure."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from tests.support.paths import RUNNER
from tests.support.processes import free_port
from tests.support.service import Server


class DroppingProxy:
    """Forwards each HTTP request to the service on a connection of its own; for the first GET
    it forwards the request, then closes the client's connection without an answer (the
    service saw the request; the client never learns what it said)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.dropped = 0
        self.gets: list[bytes] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            reader = conn.makefile("rb")
            while request := _read_message(reader):
                answer = self._forward(request)
                if request.startswith(b"GET "):
                    with self._lock:
                        self.gets.append(request)
                        drop = self.dropped == 0
                        self.dropped += drop
                    if drop:
                        return  # closed without an answer
                conn.sendall(answer)

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.target), timeout=30) as upstream:
            upstream.sendall(request)
            return _read_message(upstream.makefile("rb"))

    def close(self) -> None:
        self.listener.close()


def _read_message(reader: object) -> bytes:
    """One HTTP message with a Content-Length body (or none)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()  # type: ignore[attr-defined]
        if not line:
            return b""
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (reader.read(length) if length else b"")  # type: ignore[attr-defined]


@pytest.fixture
def proxy(server: Server) -> Iterator[DroppingProxy]:
    dropping = DroppingProxy(int(server.url.rsplit(":", 1)[1]))
    yield dropping
    dropping.close()


def test_a_lost_poll_is_retried_signed_anew(server: Server, proxy: DroppingProxy) -> None:
    secret = server.ws.root / "airflow.whsec"
    result = subprocess.run(
        [RUNNER, "trigger", f"http://127.0.0.1:{proxy.port}", "nightly", "--secret-file",
         str(secret), "--wait", "60"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "nightly: succeeded" in result.stdout + result.stderr
    assert proxy.dropped == 1 and len(proxy.gets) >= 2
    ids = [_header(get, b"webhook-id") for get in proxy.gets]
    assert len(set(ids)) == len(ids), ids  # every attempt has its own id and signature


def _header(request: bytes, name: bytes) -> bytes:
    for line in request.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    raise AssertionError(f"no {name!r} in {request[:300]!r}")


def test_a_token_file_in_rotation_uses_its_first_line(server: Server) -> None:
    """The service reads every line of a token file (new and old tokens while they rotate);
    the client sends the first (it sent both, and said `cannot reach …: InvalidHeader`)."""
    tokens = server.ws.root / "rotating.token"
    tokens.write_text(f"{server.token}\nrrt_the-old-token-being-retired\n")
    tokens.chmod(0o600)
    result = subprocess.run(
        [RUNNER, "trigger", server.url, "check", "--token-file", str(tokens), "--wait", "60"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "check: succeeded" in result.stdout + result.stderr
