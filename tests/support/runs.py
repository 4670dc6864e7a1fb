"""Runs made in-process on a real history database, for tests of the engine, the history and
the outbox: a record that started some days ago, ended or still running, with its end event
delivered or pending; a run that another live process is running (it holds the job's lock); and
a notification target that never delivers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from notifiers.base import Event, Outcome
from notifiers.outbox import Outbox, new_event
from runner.configuration.notify import RetryPolicy
from runner.engine.history import History
from runner.engine.record import new_record, rfc3339
from tests.support.paths import ROOT


class OneTarget:
    """A target that wants every event of every job and must never be asked to deliver (the
    outbox asks a target only for its name, its filters and its fingerprint)."""

    def __init__(self, name: str = "healthchecks:nightly") -> None:
        self.name = name

    def wants(self, event: str, job: str) -> bool:
        return True

    def fingerprint(self) -> str:
        return "fixed"

    def deliver(self, event: Event, ctx: object) -> None:  # never called here
        raise AssertionError("the outbox does not deliver")


def old_run(history: History, job: str, days: float, status: str, *,
            delivered: bool | None = True, dry_run: bool = False) -> str:
    """A run that started `days` ago, with an end event delivered (True) to a `textfile`
    target, still pending (False) or none (None), and a log file. Returns its run id."""
    record = new_record(job=job, kind="backup", hostname="h", repository=None,
                        trigger={"source": "cli"}, version="test")
    started = datetime.now(UTC) - timedelta(days=days)
    record.update(status=status, started_at=rfc3339(started),
                  finished_at=None if status == "running" else rfc3339(started),
                  exit_code=None if status == "running" else 0)
    if dry_run:
        record["dry_run"] = True
    history.insert(record)
    history.log_path(job, record["run_id"]).write_text("log\n")
    if delivered is not None:
        outbox = Outbox(history.db)
        outbox.enqueue(new_event("run.succeeded", record), [OneTarget("textfile")])
        if delivered:
            (delivery,) = outbox.claim(run_ids=(record["run_id"],))
            outbox.settle(delivery, Outcome.ok("written"), 0.01, policy=RetryPolicy(),
                          target=None)
    return str(record["run_id"])


# Takes a job's lock as a run's supervisor does (runner/engine/runs.py), notes the run as its
# holder, says so, and holds it until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from runner.engine.locks import NamedLock
lock = NamedLock(Path(sys.argv[1]), sys.argv[2])
assert lock.try_acquire(), "the lock is taken already"
lock.write_holder(sys.argv[3])
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def running_elsewhere(history: History, job: str) -> Iterator[str]:
    """A `running` run of `job` in the history whose lock another live process holds (as its
    supervisor would); yields its run id. The process ends, and the lock is free again, when
    the `with` block is left; the run stays `running` (a supervisor that died)."""
    record = new_record(job=job, kind="backup", hostname="h", repository=None,
                        trigger={"source": "cli"}, version="test")
    history.insert(record)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(history.lock_dir), job,
                               record["run_id"]], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield record["run_id"]
    finally:
        holder.communicate(timeout=30)
