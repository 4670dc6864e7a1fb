"""Trying the targets without a run: `notify-test` sends one test event (type `run.test`) to
every configured target, whatever its filters; `doctor` checks each (reachable, credentials
accepted) without sending an event."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from notifiers.base import TEST, DeliveryContext, Target
from notifiers.outbox import new_event
from notifiers.registry import build_targets
from runner.checks import Check
from runner.engine.record import Status, new_record, utc_now
from security.masking import redact_text

if TYPE_CHECKING:
    from runner.configuration.config import Config
    from runner.engine.history import History

TEST_JOB = "notify-test"


def test_record(config: Config) -> dict[str, Any]:
    from runner import __version__
    from runner.engine.runs import cli_trigger

    record = new_record(job=TEST_JOB, kind="notify-test", hostname=config.hostname,
                        repository=None, trigger=cli_trigger(), version=__version__)
    record.update(status=Status.SUCCEEDED, exit_code=0, finished_at=utc_now(), duration_seconds=0.0,
                  log_tail="restic-runner notify-test: a test of the notification plumbing\n")
    return record


def notify_test(config: Config, history: History, *, dry_run: bool) -> list[dict[str, Any]]:
    """One test event to every target (or, with `dry_run`, what would be sent)."""
    targets = build_targets(config)
    event = new_event(TEST, test_record(config))

    def attempt(target: Target) -> dict[str, Any]:
        ctx = DeliveryContext(config, history)
        try:
            if dry_run:
                return {**target.preview(event, ctx), "result": "dry-run"}
            started = time.monotonic()
            outcome = target.deliver(event, ctx)
            return {"target": target.name,
                    "result": "delivered" if outcome.delivered else "failed",
                    "response": outcome.detail, "error": outcome.error,
                    "seconds": round(time.monotonic() - started, 3)}
        except Exception as exc:  # a missing secret file, say: reported, not raised
            return {"target": target.name, "result": "failed",
                    "error": redact_text(f"{type(exc).__name__}: {exc}")}

    with ThreadPoolExecutor(max(1, len(targets))) as pool:
        return list(pool.map(attempt, targets))


def check_targets(config: Config, history: History) -> list[Check]:
    def check(target: Target) -> Check:
        try:
            return target.check(DeliveryContext(config, history))
        except Exception as exc:
            return Check.of(target.name, False, redact_text(f"{type(exc).__name__}: {exc}"))

    targets = build_targets(config)
    with ThreadPoolExecutor(max(1, len(targets))) as pool:
        return list(pool.map(check, targets))
