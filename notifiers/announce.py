"""Every job's Pushgateway group, pushed when `serve` or `schedule` starts: a job that never ran
is then visible there (`ResticRunnerNeverSucceeded` needs its `restic_runner_job_max_age_seconds`),
and a group whose last push was lost is brought up to date.

An announcement is an outbox event of type `job.announce` for the pushgateway target only, one
per job that `[notify.pushgateway] jobs` selects, delivered as a run's end is: a PUT of the job's
whole group, built from the history at delivery time (so it never undoes a newer run's push). It
is durable and retried like any delivery, and never holds up start-up: a process of its own
writes it. Under `serve` the deliveries worker sends it; under `schedule` (no such worker) that
process sends it itself, until it is delivered or given up. Groups of this host whose job is no
longer announced are named in the log for `restic-runner metrics prune`, never deleted here (two
instances sharing a `hostname` would delete each other's groups).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from notifiers.pushgateway import ANNOUNCE, PushgatewayTarget

if TYPE_CHECKING:
    from notifiers.outbox import Outbox
    from runner.configuration.config import Config
    from runner.engine.history import History
    from runner.engine.record import RunRecord

log = logging.getLogger("restic_runner.notify")
LONGEST_SLEEP = 60.0  # seconds: a retry due later is waited for in steps (the parent may go)


def announcement_run_id(job: str) -> str:
    """The outbox's run id of a job's announcements (no run has it: runs have UUIDs). One per
    job: a newer announcement supersedes an older one still waiting for a retry."""
    return f"announce:{job}"


def announced_jobs(config: Config) -> list[str]:
    """The jobs whose groups the Pushgateway gets (and keeps: `metrics prune` lists the rest)."""
    if config.notify.pushgateway is None:
        return []
    target = PushgatewayTarget(config.notify.pushgateway, config)
    return [name for name in config.jobs if target.wants(ANNOUNCE, name)]


def announce(config: Config, outbox: Outbox) -> tuple[str, ...]:
    """Write one announcement per announced job to the outbox; their run ids."""
    from notifiers.base import Event
    from notifiers.outbox import new_event_id
    from runner.engine.record import utc_now

    assert config.notify.pushgateway is not None
    target = PushgatewayTarget(config.notify.pushgateway, config)
    run_ids = []
    for name in announced_jobs(config):
        run_id = announcement_run_id(name)
        record = cast("RunRecord", {"run_id": run_id, "job": name,
                                    "kind": config.jobs[name].kind,
                                    "hostname": config.hostname})
        outbox.enqueue_replacing(Event(new_event_id(), ANNOUNCE, utc_now(), record), [target])
        run_ids.append(run_id)
    return tuple(run_ids)


def deliver_announcements(config: Config, history: History, outbox: Outbox,
                          run_ids: tuple[str, ...], *, once: bool = False) -> dict[str, str]:
    """Deliver these announcements, retrying with the outbox's backoff, until none is pending
    (delivered, given up, or taken by another process's claim and settled there); `once`: one
    attempt each, the rest left to the next `run` or the service. Job -> its state, and why
    when it was not delivered."""
    from notifiers.base import DeliveryContext, Outcome

    assert config.notify.pushgateway is not None
    target = PushgatewayTarget(config.notify.pushgateway, config)
    states: dict[str, str] = {}
    while True:
        for delivery in outbox.claim(run_ids=run_ids):
            started = time.monotonic()
            try:
                outcome = target.deliver(delivery.event, DeliveryContext(
                    config, history, outbox.memory(delivery.target)))
            except Exception as exc:  # a secret file gone: retried, and said why
                outcome = Outcome.failed("not sent", f"{type(exc).__name__}: {exc}")
            state = outbox.settle(delivery, outcome, time.monotonic() - started,
                                  policy=config.notify.retry, target=target)
            states[delivery.event.job] = state
            if not outcome.delivered:
                states[delivery.event.job] += f": {outcome.error or outcome.detail}"
                _warn("notifications: announcing job %s to pushgateway: %s (%s)",
                      delivery.event.job, outcome.error or outcome.detail, state)
        due = outbox.next_due(run_ids)
        if due is None or once:
            return states
        time.sleep(min(LONGEST_SLEEP, max(0.05, due - time.time())))


def announce_now(config: Config) -> dict[str, str]:
    """`restic-runner metrics announce`: every announced job's group pushed now, one attempt
    each (for a host where only cron runs `restic-runner run`, with no `serve` or `schedule`
    to announce at start-up). Job -> state."""
    from notifiers.leases import lease_holder
    from notifiers.outbox import Outbox
    from runner.engine.history import History

    history = History(config.state_dir)
    try:
        outbox = Outbox(history.db, lease_holder(config.state_dir / "leases"))
        run_ids = announce(config, outbox)
        note_stale_groups(config)
        return deliver_announcements(config, history, outbox, run_ids, once=True)
    finally:
        history.close()


def note_stale_groups(config: Config) -> list[str]:
    """Log this host's groups whose job is not announced (removed from the config, or no longer
    selected by `jobs`); their job names. A gateway that does not answer is not an error here:
    the announcements' deliveries say so."""
    from notifiers.httpclient import HttpError
    from notifiers.pushgateway import stale_groups

    try:
        stale = [group["job_name"] for group in stale_groups(config)]
    except (HttpError, OSError, ValueError):
        return []
    except Exception as exc:  # a hostile gateway's answer must not stop the announcements
        _warn("pushgateway: its list of groups could not be read: %s", type(exc).__name__)
        return []
    if stale:
        _warn("pushgateway: groups of jobs no longer pushed from %s: %s; `restic-runner metrics "
              "prune` deletes them", config.hostname, ", ".join(sorted(stale)))
    return stale


def start_announcer(config: Config, *, deliver: bool = False,
                    in_child: Callable[[], None] | None = None) -> int | None:
    """Fork the process that announces every job (None: no Pushgateway, or no job for it).
    `deliver`: it also delivers them (no deliveries worker runs, as under `schedule`);
    `in_child`: called first in the child (to drop what it must not inherit)."""
    if not announced_jobs(config):
        return None
    from runner.engine.children import fork_companion

    def main() -> None:
        from notifiers.leases import lease_holder
        from notifiers.outbox import Outbox
        from runner.engine.history import History

        if in_child is not None:
            in_child()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops us
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # leases expire; nothing lost
        history = History(config.state_dir)
        try:
            outbox = Outbox(history.db, lease_holder(config.state_dir / "leases"))
            run_ids = announce(config, outbox)
            note_stale_groups(config)
            if deliver:
                deliver_announcements(config, history, outbox, run_ids)
        finally:
            history.close()

    return fork_companion(config, main, "notifications: announcing the jobs to the Pushgateway")


def _warn(message: str, *args: object) -> None:
    """Masked, and one line even where no service log formats it (`metrics announce` on a
    terminal): a hostile gateway's label values may carry escapes and newlines."""
    from security.controlchars import printable
    from security.masking import redact_text

    log.warning("%s", printable(redact_text(message % args)))
