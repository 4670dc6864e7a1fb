"""A flood of refused requests of every kind, from one address, writes a bounded number of log
lines: every refusal, whichever layer answers it (gunicorn's parser, the read deadline,
authentication, routing, limits), goes through one per-address throttle (runner.refusals) that
writes a few lines a minute and then one summary line with the count. Before, each malformed
request wrote a WARNING and an access line: 3,000 requests with 4 KB request lines wrote 12.3 MB
in 1.7 s."""

from __future__ import annotations

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

from tests.e2e.conftest import Server

FLOOD = [
    b"Summer2024,guess / HTTP/1.1\r\nHost: x\r\n\r\n",  # 400, invalid method
    b"GET /" + b"a" * 4200 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # 414
    b"GET /runs HTTP/1.1\r\nHost: x\r\nX-Long: " + b"b" * 9000 + b"\r\n\r\n",  # 431
    b"GET /runs HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",  # 400, header name
    b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",  # 404
    b"GET /runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer rrt_wrong\r\n"
    b"Connection: close\r\n\r\n",  # 401, then 429
    b"DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",  # 405
    b"POST /trigger/nightly HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n"
    b"Connection: close\r\n\r\n",  # 413
]


def _send(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with suppress(OSError):
            sock.sendall(request)
        with suppress(OSError):
            return sock.recv(200)
    return b""


def test_ten_thousand_refusals_from_one_address_add_at_most_50_log_lines(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    before = server.log.read_text().count("\n")
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: _send(port, FLOOD[i % len(FLOOD)]), range(10_000)))
    took = time.monotonic() - started
    statuses = {a.split(b" ")[1] for a in answers if a.startswith(b"HTTP/1.1 ")}
    assert {b"400", b"414", b"431", b"404", b"405", b"413"} <= statuses, statuses
    assert statuses & {b"401", b"429"}
    time.sleep(1)  # the last lines are written
    after = server.log.read_text()
    added = after.splitlines()[before:]
    print(f"10,000 refusals in {took:.1f} s added {len(added)} log lines")
    assert len(added) <= 50, "\n".join(added[:80])
    assert any(re.search(r"refused 400 from 127\.0\.0\.1: ", line) for line in added)
