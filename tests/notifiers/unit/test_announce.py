"""The start-up announcement (notifiers/announce.py) in the outbox, on a real history database:
one delivery per job the Pushgateway selects, to it alone; a newer one supersedes one waiting
for a retry; one for a job no longer pushed is dropped, not retried; and the announcer's own
delivery loop ends once nothing of it is pending."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from notifiers.announce import announce, announced_jobs, deliver_announcements
from notifiers.base import DeliveryContext, Outcome
from notifiers.outbox import Outbox
from notifiers.pushgateway import PushgatewayTarget
from runner.configuration.config import Config
from runner.engine.history import History
from tests.support.config import parse_minimal
from tests.support.processes import free_port

JOBS = {"nightly": {"kind": "backup", "paths": ["/data"]}, "verify": {"kind": "check"},
        "tidy": {"kind": "forget", "args": ["--keep-last", "1"]}}


def configured(tmp_path: Path, **pushgateway: Any) -> Config:
    """Jobs nightly, verify, tidy; a Pushgateway on a loopback port nothing listens on, and
    a textfile target (which announcements never go to)."""
    return parse_minimal(tmp_path, {
        "state_dir": str(tmp_path / "state"), "jobs": JOBS,
        "notify": {"metrics_dir": str(tmp_path / "textfiles"), "retry_initial": "1s",
                   "retry_give_up_after": "2s",
                   "pushgateway": {"url": f"http://127.0.0.1:{free_port()}", "timeout": "2s",
                                   **pushgateway}}})


def deliveries(history: History) -> list[tuple[str, str, str, str]]:
    return [tuple(row) for row in history.db.execute(
        "SELECT d.run_id, d.target, d.state, e.type FROM deliveries d JOIN events e "
        "USING (event_id) ORDER BY d.id")]


def test_one_announcement_per_selected_job_to_the_pushgateway_only(tmp_path: Path) -> None:
    config = configured(tmp_path, jobs=["nightly", "tidy"])
    assert announced_jobs(config) == ["nightly", "tidy"]
    history = History(config.state_dir)
    try:
        assert announce(config, Outbox(history.db)) == ("announce:nightly", "announce:tidy")
        assert deliveries(history) == [
            ("announce:nightly", "pushgateway", "pending", "job.announce"),
            ("announce:tidy", "pushgateway", "pending", "job.announce")]
    finally:
        history.close()


def test_without_a_pushgateway_nothing_is_announced(tmp_path: Path) -> None:
    config = parse_minimal(tmp_path, {"jobs": JOBS,
                                      "notify": {"metrics_dir": str(tmp_path / "textfiles")}})
    assert announced_jobs(config) == []


def test_a_newer_announcement_supersedes_one_waiting_for_a_retry(tmp_path: Path) -> None:
    config = configured(tmp_path, jobs=["verify"])
    history = History(config.state_dir)
    outbox = Outbox(history.db)
    target = PushgatewayTarget(config.notify.pushgateway, config)  # type: ignore[arg-type]
    try:
        announce(config, outbox)
        [first] = outbox.claim(run_ids=("announce:verify",))
        outbox.settle(first, Outcome.failed("no answer", "refused"), 0.1,
                      policy=config.notify.retry, target=target)
        announce(config, outbox)  # the next start-up
        assert [state for _, _, state, _ in deliveries(history)] == ["superseded", "pending"]
    finally:
        history.close()


def test_an_announcement_of_a_job_no_longer_pushed_is_dropped(tmp_path: Path) -> None:
    """Queued under one config, delivered under the next (a restart in between): a job that
    left the config, or `jobs`, gets no group back; nothing is sent, nothing retried."""
    before = configured(tmp_path)
    history = History(before.state_dir)
    outbox = Outbox(history.db)
    try:
        announce(before, outbox)
        after = configured(tmp_path, jobs=["nightly"])
        target = PushgatewayTarget(after.notify.pushgateway, after)  # type: ignore[arg-type]
        for delivery in outbox.claim():
            outcome = target.deliver(delivery.event, DeliveryContext(after, history))
            if delivery.event.job == "nightly":  # still pushed: tried (nothing listens)
                assert outcome.detail == "no answer" and outcome.retry
            else:
                assert not outcome.delivered and not outcome.retry, delivery.event.job
                assert outcome.detail == "not sent" and "no longer pushed" in str(outcome.error)
    finally:
        history.close()


def test_the_announcers_own_loop_ends_once_nothing_is_pending(tmp_path: Path) -> None:
    """Under `schedule` the announcer delivers itself: against a gateway that never answers it
    retries with the outbox's backoff and stops when the retry budget is spent."""
    config = configured(tmp_path, jobs=["verify"])
    history = History(config.state_dir)
    outbox = Outbox(history.db)
    try:
        deliver_announcements(config, history, outbox, announce(config, outbox))
        assert deliveries(history) == [("announce:verify", "pushgateway", "failed",
                                        "job.announce")]
        attempts = history.db.execute("SELECT attempts FROM deliveries").fetchone()[0]
        assert attempts >= 2  # retried before giving up
    finally:
        history.close()
