"""The outbox's ordering rules, on a real history database: a run's start goes before its end
to each target, and a start not yet delivered when the end is queued for that target is
superseded in every case (never tried, waiting for a retry, its lease run out, its holder dead),
so the end goes out at once; a start in flight in a live process is waited for, once."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifiers.base import Outcome
from notifiers.leases import LeaseHolder
from notifiers.outbox import LEASE_SECONDS, Outbox, new_event
from runner.configuration.notify import RetryPolicy
from runner.engine.history import History
from runner.engine.locks import NamedLock
from runner.engine.record import interrupt, new_record
from runner.engine.recovery import mark_interrupted
from tests.support.paths import ROOT
from tests.support.runs import OneTarget

POLICY = RetryPolicy(initial=60.0, max_interval=600.0, give_up_after=3600.0)

Store = tuple[History, Outbox, OneTarget]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    history = History(tmp_path)
    yield history, Outbox(history.db), OneTarget()
    history.close()


def _started_run(history: History, outbox: Outbox, target: OneTarget) -> dict[str, object]:
    record = new_record(job="nightly", kind="backup", hostname="h", repository=None,
                        trigger={"source": "cli"}, version="test")
    history.insert(record)
    outbox.enqueue(new_event("run.started", record), [target])
    return record


def _states(history: History) -> dict[str, str]:
    rows = history.db.execute(
        "SELECT e.type, d.state FROM deliveries d JOIN events e USING (event_id)").fetchall()
    return dict(rows)


def test_a_start_leased_by_a_process_that_died_does_not_hold_the_interrupted_end_back(
        store: Store) -> None:
    # the process sent the start and was killed before it recorded that: its lease stays
    history, outbox, target = store
    record = _started_run(history, outbox, target)
    [start] = outbox.claim()
    assert start.event.type == "run.started"
    assert outbox.claim() == []  # leased: nobody else takes it

    interrupt(record)
    history.save(record)
    assert outbox.enqueue_unreported([target], since=0.0) == 1

    [end] = outbox.claim()  # due now, not after the dead process's lease runs out
    assert end.event.type == "run.interrupted"
    assert _states(history) == {"run.started": "superseded", "run.interrupted": "pending"}


def _end(outbox: Outbox, record: dict[str, object], targets: list[OneTarget]) -> None:
    outbox.enqueue(new_event("run.failed", {**record, "status": "failed", "exit_code": 1}),
                   targets)


def test_a_start_never_tried_is_superseded_when_the_end_comes(store: Store) -> None:
    history, outbox, target = store
    record = _started_run(history, outbox, target)
    _end(outbox, record, [target])
    assert _states(history) == {"run.started": "superseded", "run.failed": "pending"}
    assert [d.event.type for d in outbox.claim()] == ["run.failed"]
    error = history.db.execute("SELECT error FROM deliveries WHERE state = 'superseded'")
    assert error.fetchone() == ("the run ended before it was delivered",)


def test_a_start_waiting_for_a_retry_does_not_hold_the_end_behind_its_backoff(
        store: Store) -> None:
    history, outbox, target = store
    record = _started_run(history, outbox, target)
    [start] = outbox.claim()
    assert outbox.settle(start, Outcome.failed("no answer", "refused"), 0.01, policy=POLICY,
                         target=target) == "pending"  # its next attempt is a minute away
    _end(outbox, record, [target])
    [end] = outbox.claim()  # now, not after the start's backoff
    assert end.event.type == "run.failed"
    assert _states(history) == {"run.started": "superseded", "run.failed": "pending"}


def test_the_end_waits_for_a_start_in_flight_in_a_live_process_once(
        store: Store, tmp_path: Path) -> None:
    """An attempt in flight cannot be called back, and an end sent beside it could arrive
    first: the end waits for that one attempt (at most its timeout), never for a retry."""
    history, _, target = store
    supervisor = Outbox(history.db, LeaseHolder(tmp_path / "leases"))  # the run's process
    worker = Outbox(history.db, LeaseHolder(tmp_path / "leases"))  # another process, alive
    failed_run = _started_run(history, supervisor, target)
    [start] = supervisor.claim()
    _end(worker, failed_run, [target])
    assert worker.claim() == []  # the start's holder lives: its attempt goes first
    assert worker.next_due() == pytest.approx(time.time() + LEASE_SECONDS, abs=5)  # no spin
    assert supervisor.settle(start, Outcome.failed("no answer", "refused"), 0.01,
                             policy=POLICY, target=target) == "superseded"  # no retry
    assert [d.event.type for d in worker.claim()] == ["run.failed"]  # at once

    delivered_run = _started_run(history, supervisor, target)
    [start] = supervisor.claim(run_ids=(delivered_run["run_id"],))
    _end(worker, delivered_run, [target])
    assert supervisor.settle(start, Outcome.ok("HTTP 200"), 0.01, policy=POLICY,
                             target=target) == "delivered"
    assert [d.event.type for d in worker.claim()] == ["run.failed"]


# A run's process that has claimed its start delivery (the attempt under way) and lives on.
CLAIMER = """
import sys, time
from pathlib import Path
from notifiers.leases import lease_holder
from notifiers.outbox import Outbox
from runner.engine.history import History
state = Path(sys.argv[1])
history = History(state)
print(len(Outbox(history.db, lease_holder(state / "leases")).claim()), flush=True)
time.sleep(120)
"""


def test_a_start_leased_by_a_process_that_died_is_superseded_at_once(tmp_path: Path) -> None:
    history = History(tmp_path)
    try:
        target = OneTarget()
        outbox = Outbox(history.db, LeaseHolder(tmp_path / "leases"))
        record = _started_run(history, outbox, target)
        claimer = subprocess.Popen([sys.executable, "-c", CLAIMER, str(tmp_path)], cwd=ROOT,
                                   stdout=subprocess.PIPE, text=True)
        assert claimer.stdout is not None
        assert claimer.stdout.readline().strip() == "1"
        claimer.kill()  # mid-attempt: its lease has two minutes to run
        claimer.wait(10)
        claimer.stdout.close()
        _end(outbox, record, [target])
        [end] = outbox.claim()
        assert end.event.type == "run.failed"
        assert _states(history) == {"run.started": "superseded", "run.failed": "pending"}
    finally:
        history.close()


def test_a_start_whose_lease_ran_out_is_superseded(store: Store) -> None:
    # its process lives on but hangs (or never made a lease file): once the lease runs out
    history, outbox, target = store
    record = _started_run(history, outbox, target)
    outbox.claim()
    _end(outbox, record, [target])
    assert outbox.claim() == []
    later = time.time() + LEASE_SECONDS + 1
    [end] = outbox.claim(now=later)
    assert end.event.type == "run.failed"
    assert _states(history) == {"run.started": "superseded", "run.failed": "pending"}


class StartsOnly(OneTarget):
    def wants(self, event: str, job: str) -> bool:
        return event == "run.started"


def test_only_a_target_that_gets_the_end_has_its_start_superseded(store: Store) -> None:
    history, outbox, target = store
    starts = StartsOnly("webhook:starts")
    record = new_record(job="nightly", kind="backup", hostname="h", repository=None,
                        trigger={"source": "cli"}, version="test")
    history.insert(record)
    outbox.enqueue(new_event("run.started", record), [target, starts])
    _end(outbox, record, [target, starts])
    states = history.db.execute("SELECT target, state FROM deliveries ORDER BY id").fetchall()
    assert states == [("healthchecks:nightly", "superseded"), ("webhook:starts", "pending"),
                      ("healthchecks:nightly", "pending")]
    assert sorted(d.target for d in outbox.claim()) == ["healthchecks:nightly",
                                                        "webhook:starts"]


def test_a_run_whose_end_was_recorded_late_is_reported_once(store: Store) -> None:
    # the disk was full when the run ended: its supervisor kept the end in the job lock file,
    # and the next process to open the history recorded it; nobody had written its end event
    history, outbox, target = store
    record = _started_run(history, outbox, target)
    [start] = outbox.claim()
    outbox.release(start)  # sent or not, it is pending when the run ends
    lock = NamedLock(history.lock_dir, "nightly")
    assert lock.try_acquire()
    lock.write_holder(str(record["run_id"]))
    lock.write_end({**record, "status": "failed", "exit_code": 1,
                    "error": "restic exited 1"}, "no space left on device")
    lock.release()  # its supervisor exits
    [late] = mark_interrupted(history)
    assert late["status"] == "failed" and "recorded late" in late["error"]
    assert late["end_recorded_late"] is True  # the outbox finds it by this field

    assert outbox.enqueue_unreported([target], since=0.0) == 1
    [end] = outbox.claim()
    assert (end.event.type, end.event.record["exit_code"]) == ("run.failed", 1)
    assert outbox.enqueue_unreported([target], since=0.0) == 0  # once, by whoever is first


def test_runs_that_wrote_their_own_end_or_ended_long_ago_are_not_reported_again(
        store: Store) -> None:
    history, outbox, target = store
    ended = _started_run(history, outbox, target)
    ended.update(status="failed", exit_code=1, finished_at=ended["started_at"],
                 end_recorded_late=True, error="its end was recorded late: no space left on device")
    history.save(ended)
    outbox.enqueue(new_event("run.failed", ended), [target])
    old = _started_run(history, outbox, target)
    interrupt(old)
    history.save(old)
    assert outbox.enqueue_unreported([target], since=time.time() + 60) == 0
    assert outbox.enqueue_unreported([target], since=0.0) == 1  # only the interrupted one


def test_a_page_of_runs_carries_each_runs_own_deliveries(store: Store) -> None:
    """`/runs` reads the deliveries of a whole page at once: each run gets its own, with its
    attempts, exactly as reading it alone gives them."""
    history, outbox, target = store
    policy = RetryPolicy()
    records = [_started_run(history, outbox, target) for _ in range(3)]
    first, second, _ = outbox.claim()  # the three start deliveries
    outbox.settle(first, Outcome.ok("200 OK"), 0.01, policy=policy, target=None)
    outbox.settle(second, Outcome.failed("500", "server error"), 0.02, policy=policy,
                  target=None)
    page = {r["run_id"]: r["notifications"] for r in history.runs(limit=10)}
    assert page == {r["run_id"]: history.get(r["run_id"])["notifications"] for r in records}
    statuses = {run_id: [(n["status"], len(n.get("attempt_log", []))) for n in notes]
                for run_id, notes in page.items()}
    assert statuses == {first.event.run_id: [("delivered", 1)],
                        second.event.run_id: [("pending", 1)],
                        records[2]["run_id"]: [("pending", 0)]}
    assert page[second.event.run_id][0]["attempt_log"][0]["error"] == "server error"
