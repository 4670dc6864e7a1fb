"""The outbox (notifiers.outbox.Outbox) on a real history database: an event is enqueued for the
targets that want it, claimed by one caller at a time, settled as delivered, retried with
exponential backoff (never sooner than a Retry-After), given up when the retry budget is spent
or the failure is permanent, and a target that answered 410 is disabled until its
configuration changes, and listed as stopped meanwhile. (Its ordering rules between a run's
events: test_outbox.py.)"""

from __future__ import annotations

import re
import time

import pytest

from notifiers.base import Outcome
from notifiers.outbox import Delivery, Outbox, new_event, next_delay
from runner.configuration.notify import RetryPolicy
from runner.engine.history import History
from runner.engine.record import RunRecord, Status, finish, new_record
from tests.support.runs import OneTarget

POLICY = RetryPolicy(initial=10.0, max_interval=100.0, give_up_after=3600.0)


class Picky(OneTarget):
    """A target that wants only failures."""

    def wants(self, event: str, job: str) -> bool:
        return event == "run.failed"


@pytest.fixture
def outbox(history: History) -> Outbox:
    return Outbox(history.db)


def ended_run(history: History, status: Status = Status.SUCCEEDED) -> RunRecord:
    record = new_record(job="nightly", kind="backup", hostname="h", repository=None,
                        trigger={"source": "cli"}, version="test")
    history.insert(record)
    finish(record, status, 0 if status == Status.SUCCEEDED else 1)
    history.save(record)
    return record


def state_of(history: History, delivery: Delivery) -> tuple[str, int, float]:
    """(state, attempts, next_at) of a delivery, as stored."""
    return history.db.execute("SELECT state, attempts, next_at FROM deliveries WHERE id = ?",
                              (delivery.id,)).fetchone()


def claim_one(outbox: Outbox, **kwargs: float) -> Delivery:
    [delivery] = outbox.claim(**kwargs)
    return delivery


def test_an_event_is_enqueued_for_the_targets_that_want_it(history: History,
                                                           outbox: Outbox) -> None:
    record = ended_run(history)
    event = new_event("run.succeeded", record)
    assert outbox.enqueue(event, [OneTarget("webhook:all"), Picky("webhook:failures")]) == 1
    delivery = claim_one(outbox)
    assert (delivery.target, delivery.attempts) == ("webhook:all", 0)
    assert (delivery.event.id, delivery.event.type) == (event.id, "run.succeeded")
    assert delivery.event.record["run_id"] == record["run_id"]
    failed = ended_run(history, Status.FAILED)
    assert outbox.enqueue(new_event("run.failed", failed),
                          [OneTarget("webhook:all"), Picky("webhook:failures")]) == 2


def test_a_claimed_delivery_is_leased_and_a_delivered_one_is_done(history: History,
                                                                 outbox: Outbox) -> None:
    outbox.enqueue(new_event("run.succeeded", ended_run(history)), [OneTarget()])
    delivery = claim_one(outbox)
    assert outbox.claim() == []  # leased to the first caller
    assert outbox.settle(delivery, Outcome.ok("HTTP 200"), 0.05, policy=POLICY,
                         target=None) == "delivered"
    assert state_of(history, delivery)[:2] == ("delivered", 1)
    assert outbox.claim(now=time.time() + 10 * 3600) == []  # never again
    assert outbox.next_due() is None
    attempts = history.db.execute("SELECT delivered, detail FROM delivery_attempts").fetchall()
    assert attempts == [(1, "HTTP 200")]


def test_a_failure_is_retried_with_exponential_backoff(history: History,
                                                      outbox: Outbox) -> None:
    outbox.enqueue(new_event("run.succeeded", ended_run(history)), [OneTarget()])
    delivery = claim_one(outbox)
    waits = []
    for attempt in (1, 2, 3):
        before = time.time()
        state = outbox.settle(delivery, Outcome.failed("HTTP 500", "server error"), 0.05,
                              policy=POLICY, target=None)
        assert state == "pending"
        stored_state, attempts, next_at = state_of(history, delivery)
        assert (stored_state, attempts) == ("pending", attempt)
        waits.append(next_at - before)
        assert outbox.claim(now=next_at - 0.5) == []  # not due yet
        assert outbox.next_due() == pytest.approx(next_at)
        delivery = claim_one(outbox, now=next_at)
        assert delivery.attempts == attempt
    # 10 s, then 20 s, then 40 s, each ±20 %
    for wait, base in zip(waits, (10, 20, 40), strict=True):
        assert base * 0.8 - 0.1 <= wait <= base * 1.2 + 0.1, waits
    assert outbox.job_counters()["nightly"] == (1, 3, 0)  # waiting, failures, given up


def test_the_backoff_is_capped_and_never_sooner_than_retry_after() -> None:
    for _ in range(50):
        assert 80.0 <= next_delay(POLICY, 20, None) <= 120.0  # max_interval, ±20 %
        assert next_delay(POLICY, 1, 300.0) == 300.0
        assert 8.0 <= next_delay(POLICY, 1, 2.0) <= 12.0


def test_retry_after_is_honoured(history: History, outbox: Outbox) -> None:
    outbox.enqueue(new_event("run.succeeded", ended_run(history)), [OneTarget()])
    delivery = claim_one(outbox)
    before = time.time()
    outbox.settle(delivery, Outcome.failed("HTTP 429", "slow down", retry_after=600.0), 0.05,
                  policy=POLICY, target=None)
    assert state_of(history, delivery)[2] >= before + 600.0


def test_a_permanent_failure_or_a_spent_budget_gives_up(history: History,
                                                       outbox: Outbox) -> None:
    outbox.enqueue(new_event("run.succeeded", ended_run(history)), [OneTarget()])
    permanent = claim_one(outbox)
    assert outbox.settle(permanent, Outcome.failed("HTTP 400", "bad request", retry=False),
                         0.05, policy=POLICY, target=None) == "failed"
    outbox.enqueue(new_event("run.succeeded", ended_run(history)), [OneTarget()])
    late = claim_one(outbox)
    short = RetryPolicy(initial=10.0, max_interval=100.0, give_up_after=5.0)
    assert outbox.settle(late, Outcome.failed("HTTP 503", "unavailable"), 0.05, policy=short,
                         target=None) == "failed"  # the next try would come after the budget
    assert outbox.job_counters()["nightly"] == (0, 2, 2)
    assert outbox.claim(now=time.time() + 10 * 3600) == []


def test_a_gone_target_is_disabled_until_its_configuration_changes(history: History,
                                                                  outbox: Outbox) -> None:
    target = OneTarget("webhook:ops")
    outbox.enqueue(new_event("run.succeeded", ended_run(history)), [target])
    delivery = claim_one(outbox)
    gone = Outcome(False, "HTTP 410", "gone", retry=False, gone=True)
    assert outbox.settle(delivery, gone, 0.05, policy=POLICY, target=target) == "disabled"
    later = ended_run(history)
    outbox.enqueue(new_event("run.succeeded", later), [target])
    assert outbox.claim() == []  # born disabled, saying why
    [note] = history.get(later["run_id"])["notifications"]
    assert note["status"] == "disabled" and "gone" in note["error"]
    changed = OneTarget("webhook:ops")
    changed.fingerprint = lambda: "another configuration"  # type: ignore[method-assign]
    outbox.enqueue(new_event("run.succeeded", ended_run(history)), [changed])
    assert claim_one(outbox).target == "webhook:ops"


def test_the_targets_stopped_for_good_are_listed_with_why(history: History,
                                                        outbox: Outbox) -> None:
    """What `status` and `doctor` show: each target still stopped, on one masked line."""
    target, other = OneTarget("healthchecks:nightly"), OneTarget("webhook:ops")
    assert outbox.stopped_targets([target, other]) == {}
    outbox.enqueue(new_event("run.succeeded", ended_run(history)), [target, other])
    first, second = outbox.claim()
    gone = Outcome(False, "HTTP 404", "https://hc.example/... answered HTTP 404: not found:\n"
                   "the server has no check with this UUID", retry=False, gone=True)
    outbox.settle(first, gone, 0.05, policy=POLICY, target=target)
    outbox.settle(second, Outcome.failed("HTTP 500", "down"), 0.05, policy=POLICY,
                  target=other)
    stopped = outbox.stopped_targets([target, other])
    assert list(stopped) == ["healthchecks:nightly"]
    assert re.fullmatch(r"https://hc\.example/\.\.\. answered HTTP 404: not found: the server "
                        r"has no check with this UUID \(since \S+; change its configuration to "
                        r"enable it again\)", stopped["healthchecks:nightly"])
    assert outbox.stopped_targets() == stopped  # without the configuration: all ever stopped
    changed = OneTarget("healthchecks:nightly")
    changed.fingerprint = lambda: "another configuration"  # type: ignore[method-assign]
    assert outbox.stopped_targets([changed, other]) == {}  # configured anew: used again
    assert outbox.stopped_targets([other]) == {}  # no longer configured
