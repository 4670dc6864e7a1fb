"""SIGTERM to the service: running jobs get SIGINT, restic removes its repository lock, the runs
are recorded `cancelled`, then the service exits (bounded by graceful_timeout)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time

from tests.support.processes import wait_until
from tests.support.service import Server


def _record(server: Server, run_id: str) -> dict:
    db = sqlite3.connect(server.ws.state / "history.db")
    try:
        (text,) = db.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    finally:
        db.close()
    return json.loads(text)


def test_sigterm_cancels_running_jobs_and_releases_restic_locks(server: Server) -> None:
    accepted = server.post("/trigger/slow")
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run_id"]
    wait_until(lambda: list((server.ws.repo / "locks").iterdir()), timeout=30)
    time.sleep(0.5)  # restic is uploading, its lock in the repository
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0
    took = time.monotonic() - started
    print(f"service stopped in {took:.1f} s")
    assert took < 30 + 10  # graceful_timeout, and then some
    record = _record(server, run_id)
    assert record["status"] == "cancelled" and record["exit_code"] == 130
    assert "SIGTERM" in record["error"]
    locks = subprocess.run([server.ws.restic, "list", "locks"], env=server.ws.restic_env(),
                           capture_output=True, text=True, check=True)
    assert locks.stdout.strip() == ""
    out = subprocess.run(["pgrep", "-f", str(server.ws.root / "big")], capture_output=True)
    assert out.stdout == b""  # no restic left behind


def test_a_silent_connection_does_not_hold_the_stop(server: Server) -> None:
    """A connection that has sent nothing has no request to finish: serve stops at once, not
    after `read_timeout` (10 s) — it held the stop of the suite's services now and then."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(server.url)
    silent = [socket.create_connection((url.hostname, url.port)) for _ in range(4)]
    try:
        time.sleep(0.3)  # accepted, and waiting on the workers' pollers
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(30)
        assert time.monotonic() - started < 5
    finally:
        for sock in silent:
            sock.close()
