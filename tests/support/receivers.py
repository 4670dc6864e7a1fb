"""Scripted HTTP receivers on loopback ports, for webhooks and healthchecks: they record every
request and answer as the test says (late, with errors, or with an error page echoing part of
the request)."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.processes import wait_until


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


Answer = tuple[int, dict[str, str]] | tuple[int, dict[str, str], float]


@dataclass
class Receiver:
    """Records every request; answers from `script` in order, then `default`: (status, headers)
    or (status, headers, delay in seconds), so it can also answer too late (a client timeout).
    It owns its port from the start, so a receiver not started yet is one that is down."""

    port: int
    requests: list[Received] = field(default_factory=list)
    script: list[Answer] = field(default_factory=list)
    default: Answer = (200, {})
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append(Received(self.command, self.path,
                                                  dict(self.headers.items()), body,
                                                  time.time()))
                status, headers, *delay = (receiver.script.pop(0) if receiver.script
                                           else receiver.default)
                time.sleep(delay[0] if delay else 0.0)
                with contextlib.suppress(OSError):  # the client may have given up
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"OK")

            do_GET = do_POST
            do_PUT = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True  # an answer held back never holds up the test's end
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        wait_until(lambda: len(self.requests) >= count, timeout, interval=0.02)
        return self.requests


class EchoReceiver(Receiver):
    """A receiver that refuses the first attempt of every run-end notification with an error
    page echoing part of the request (as many servers and proxies do), and accepts the retry
    and everything else. `end_key` says which end event a request belongs to (None: not one)."""

    def __init__(self, port: int, status: int, echo: Callable[[Received], str],
                 end_key: Callable[[Received], str | None]) -> None:
        super().__init__(port)
        self.status, self.echo, self.end_key = status, echo, end_key
        self.refused: set[str] = set()

    def start(self) -> EchoReceiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Received(self.command, self.path, dict(self.headers.items()), body,
                                   time.time())
                receiver.requests.append(request)
                key = receiver.end_key(request)
                refuse = key is not None and key not in receiver.refused
                if key is not None:
                    receiver.refused.add(key)
                answer = receiver.echo(request).encode() if refuse else b"OK"
                self.send_response(receiver.status if refuse else 200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_PUT = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self
