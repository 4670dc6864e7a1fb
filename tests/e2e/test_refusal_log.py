"""A flood of refused requests of every kind, from one address, writes a bounded number of log
lines: every refusal, whichever layer answers it (gunicorn's parser, the read deadline,
authentication, routing, limits), goes through one per-address throttle (runner.service.refusals)
that
writes a few lines a minute and then one summary line with the count. Before, each malformed
request wrote a WARNING and an access line: 3,000 requests with 4 KB request lines wrote 12.3 MB
in 1.7 s."""

from __future__ import annotations

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

from tests.support.processes import wait_until
from tests.support.service import Server

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


def _send(port: int, request: bytes, source: str = "127.0.0.1") -> bytes:
    """Send `request` from the loopback address `source`; the first bytes of the answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
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


def test_open_endpoint_floods_from_rotating_addresses_are_bounded(server: Server) -> None:
    """The second review filled the log at ~22 MB/s: every 200 on an open endpoint (and
    OPTIONS) wrote an access line quoting a 4 KB target, an 8 KB User-Agent and Referer; and
    limits keyed by address were dodged by binding other 127.x.y.z. Now an access line is
    bounded, lines for requests without a credential share the refusals' budgets, and loopback
    is one address group."""
    port = int(server.url.rsplit(":", 1)[1])
    before = server.log.read_bytes()
    flood = [
        b"GET /healthz?" + b"q" * 4000 + b" HTTP/1.1\r\nHost: x\r\nUser-Agent: " + b"U" * 8000
        + b"\r\nReferer: " + b"R" * 8000 + b"\r\nConnection: close\r\n\r\n",
        b"OPTIONS /healthz?" + b"q" * 4000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer rrt_guess-0123456789\r\n"
        b"Connection: close\r\n\r\n",
    ]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(
            lambda i: _send(port, flood[i % len(flood)],
                                 f"127.{i % 200 + 1}.{i // 200 % 200 + 1}.9"), range(3000)))
    statuses = {a.split(b" ")[1] for a in answers if a.startswith(b"HTTP/1.1 ")}
    assert {b"200", b"401", b"429"} <= statuses, statuses  # 429: loopback is one group
    time.sleep(1)
    added = server.log.read_bytes()[len(before):]
    lines = added.decode(errors="replace").splitlines()
    print(f"3,000 requests from 3,000 addresses added {len(lines)} lines, {len(added)} bytes")
    assert len(lines) <= 50 and len(added) <= 20_000, lines[:5]
    assert b"U" * 100 not in added and b"R" * 100 not in added and b"q" * 201 not in added


def test_an_authenticated_clients_access_line_is_bounded(server: Server) -> None:
    before = len(server.log.read_bytes())
    assert server.get("/runs?job=nightly&x=" + "y" * 3000).status_code == 200
    wait_until(lambda: b"GET /runs?job=nightly" in server.log.read_bytes()[before:], timeout=10)
    line = next(li for li in server.log.read_text()[before:].splitlines() if "GET /runs" in li)
    assert " cron " in line and len(line) < 400 and "python-requests" not in line


def test_a_client_spinning_on_403_and_410_is_answered_cheaply_and_logged_boundedly(
        server: Server) -> None:
    """Airflow's deferrable HttpSensor trigger asks again at once, without sleeping, on any
    answer but 404 (about 8,000 requests in 10 s): a client that may not see the job (403), or
    polling a run the service does not know (410), gets a bounded log and Retry-After."""
    import requests

    before = server.log.read_text().count("\n")
    limited = {"Authorization": f"Bearer {server.limited_token}"}
    answers: dict[int, int] = {}
    with requests.Session() as session:  # one kept-alive connection, as the trigger's
        for i in range(1500):
            if i % 2:
                response = session.post(server.url + "/trigger/nightly", data=b"",
                                        headers=limited, timeout=10)
                assert response.headers["Retry-After"] == "60"
            else:
                response = session.get(server.url + "/runs/0b6c3f7e-5d1a-4c2b-9e8f-"
                                       "2a1b3c4d5e6f/result", headers=limited, timeout=10)
            answers[response.status_code] = answers.get(response.status_code, 0) + 1
    assert answers == {403: 750, 410: 750}, answers
    time.sleep(1)
    added = server.log.read_text().splitlines()[before:]
    assert len(added) <= 20, "\n".join(added[:40])
