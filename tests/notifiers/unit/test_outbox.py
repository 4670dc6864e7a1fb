"""The outbox's ordering rules, on a real history database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifiers.base import Outcome
from notifiers.outbox import Outbox, new_event
from runner.configuration.notify import RetryPolicy
from runner.engine.history import History
from runner.engine.locks import NamedLock
from runner.engine.record import interrupt, new_record
from runner.engine.recovery import mark_interrupted
from tests.support.runs import OneTarget

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


def test_an_ended_run_still_waits_for_a_start_in_flight(store: Store) -> None:
    # a live process's start in flight goes first: the end is claimed only after it settles
    history, outbox, target = store
    record = _started_run(history, outbox, target)
    [start] = outbox.claim()
    outbox.enqueue(new_event("run.failed", {**record, "status": "failed"}), [target])
    assert outbox.claim() == []
    outbox.release(start)
    assert [d.event.type for d in outbox.claim()] == ["run.started"]


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
