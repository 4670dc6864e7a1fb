"""Two couriers on one outbox, delivering for real to a local healthchecks stand-in: the one
that serves every run (as `serve`'s deliveries worker does) has a run's start ping in flight, the
server slow to answer it (1 s) and then refusing it, when the run's own courier queues the run's
failure. The failure waits for that one attempt only, then goes out at once (not after the
start's retry, a minute away), and the start is never sent again: the server gets the start
once and the failure once, in that order. (The rule in the outbox: test_outbox.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from notifiers.courier import Courier
from runner.configuration.config import Config
from runner.engine.history import History
from runner.engine.record import Status, finish, new_record
from tests.support.config import parse_minimal
from tests.support.processes import free_port
from tests.support.receivers import Receiver

CHECK = "0f6e3c52-8a1d-4b7e-9c2f-5d4a3b2c1e0f"


@pytest.fixture
def troubled_hc() -> Iterator[Receiver]:
    # the first ping is answered after 1 s with a 503 (a server in trouble); then it is fine
    receiver = Receiver(free_port(), script=[(503, {}, 1.0)],
                        default=(200, {"Ping-Body-Limit": "10000"})).start()
    yield receiver
    receiver.stop()


def configured(tmp_path: Path, server: Receiver) -> Config:
    return parse_minimal(tmp_path, {
        "state_dir": str(tmp_path / "state"),
        "jobs": {"nightly": {"kind": "backup", "paths": ["/data"]}},
        "notify": {"retry_initial": "60s", "cli_wait": "15s",
                   "healthchecks": {"nightly": {"url": f"{server.url}/{CHECK}",
                                                "timeout": "5s"}}}})


def test_the_end_waits_for_a_start_in_flight_elsewhere_once_then_goes_at_once(
        tmp_path: Path, troubled_hc: Receiver) -> None:
    config = configured(tmp_path, troubled_hc)
    history = History(config.state_dir)
    worker, supervisor = Courier(config), Courier(config, scope=set())
    try:
        record = new_record(job="nightly", kind="backup", hostname="h", repository=None,
                            trigger={"source": "api"}, version="test")
        history.insert(record)
        worker.post("run.started", record)  # the worker claims it first and sends it
        troubled_hc.wait_for(1)
        finish(record, Status.FAILED, 1)  # a short run: it failed while the start waits
        history.save(record)
        supervisor.post("run.failed", record)
        supervisor.finish(10.0)  # returns once nothing of its run is pending
        worker.finish(0.0)
        rid = record["run_id"]
        assert [r.path for r in troubled_hc.requests] == [f"/{CHECK}/start?rid={rid}",
                                                          f"/{CHECK}/1?rid={rid}"]
        states = history.db.execute("SELECT e.type, d.state, d.attempts FROM deliveries d "
                                    "JOIN events e USING (event_id) ORDER BY d.id").fetchall()
        assert states == [("run.started", "superseded", 1), ("run.failed", "delivered", 1)]
    finally:
        history.close()
