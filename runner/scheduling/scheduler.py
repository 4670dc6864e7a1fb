"""The embedded scheduler: runs jobs that have a `schedule`, inside `serve` or as
`restic-runner schedule`.

The `schedule` package drives the loop; each job's next tick comes from
`runner.configuration.schedule`
(cron via cronsim, intervals), honouring `$TZ`. Exactly one scheduler runs per state directory:
it holds `state_dir/scheduler.lock` (a service whose lock is taken by another scheduler waits
and takes over if that one stops). Each tick forks a process that runs the job through the
engine like any other run (lock, history, notifications; trigger source `schedule`); a tick that
finds its job running records `skipped`. Ticks missed while no scheduler ran are not replayed.
As `restic-runner schedule`, it first has every job's Pushgateway group pushed, in a process of
its own that retries until they are delivered (`notifiers.announce`; `serve` does the same).
On SIGTERM or SIGINT the scheduler asks its running jobs to stop (restic gets SIGINT and removes
its repository lock), waits for them up to `[server] graceful_timeout`, then exits.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import datetime

import schedule

from runner.configuration.config import Config
from runner.configuration.schedule import Schedule, parse_schedule, zone
from runner.engine.children import ended, exit_after, stop_children
from runner.engine.locks import NamedLock
from runner.engine.process import (
    CancelFlag,
    background_priority,
    cancel_on_stop_signals,
    fork_run_process,
)
from runner.errors import UserError

log = logging.getLogger("restic_runner.scheduler")
LOCK_RETRY = 10.0  # seconds between attempts to take over from another scheduler


class SchedulerBusy(UserError):
    """Another scheduler holds the state directory's scheduler lock."""


class _Tick(schedule.Job):  # type: ignore[misc]
    """A `schedule` job whose next run comes from a `Schedule` (cron or interval)."""

    def __init__(self, spec: Schedule, scheduler: schedule.Scheduler) -> None:
        super().__init__(1, scheduler)
        self.spec = spec
        self.unit = "seconds"

    def _schedule_next_run(self) -> None:
        upcoming = self.spec.next_after(datetime.now(zone()))
        # `schedule` compares naive local times; convert the aware tick to that
        self.next_run = upcoming.astimezone().replace(tzinfo=None)


def scheduled_jobs(config: Config) -> dict[str, Schedule]:
    return {name: parse_schedule(job.schedule) for name, job in config.jobs.items()
            if job.schedule}


def next_runs(config: Config, now: datetime | None = None) -> dict[str, datetime]:
    """When each scheduled job would run next, from `now`."""
    moment = now or datetime.now(zone())
    return {name: spec.next_after(moment) for name, spec in scheduled_jobs(config).items()}


class Scheduler:
    def __init__(self, config: Config, *, in_service: bool) -> None:
        self.config = config
        self.in_service = in_service  # the service's deliveries worker retries notifications
        self.lock = NamedLock(config.state_dir, "scheduler")
        self.children: dict[int, str] = {}
        self.stopping = False

    def acquire(self) -> bool:
        if not self.lock.try_acquire():
            return False
        self.lock.write_holder("scheduler")
        return True

    def holder_pid(self) -> int | None:
        holder = self.lock.holder()
        return holder.pid if holder else None

    def run(self) -> None:
        """Tick until SIGTERM/SIGINT; the lock must be held."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        sched = schedule.Scheduler()
        for name, spec in scheduled_jobs(self.config).items():
            tick = _Tick(spec, sched)
            tick.do(self._spawn, name)
            log.info("scheduler: %s (%s) next at %s", name, spec.text,
                     tick.next_run.isoformat(timespec="seconds"))
        while not self.stopping:
            sched.run_pending()
            self._reap()
            idle = sched.idle_seconds
            time.sleep(max(0.05, min(1.0, idle if idle is not None else 1.0)))
        self._shutdown()

    def announce(self) -> None:
        """Every job's Pushgateway group, pushed and retried by a child stopped like a run."""
        from notifiers.announce import start_announcer

        pid = start_announcer(self.config, deliver=True, in_child=self.lock.drop_inherited)
        if pid:
            self.children[pid] = "announce"

    def _stop(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def _spawn(self, name: str) -> None:
        pid = fork_run_process()
        if pid:
            self.children[pid] = name
            log.info("scheduler: started %s (pid %d)", name, pid)
            return

        def run() -> None:
            self.lock.drop_inherited()
            os.setsid()  # before the stop signals are let through: a Ctrl-C is the scheduler's
            cancel = cancel_on_stop_signals()
            background_priority(self.config.server.run_nice)
            run_scheduled(self.config, name, in_service=self.in_service, cancel=cancel)

        exit_after(run, f"scheduler: {name}")

    def _reap(self) -> None:
        for pid in ended(self.children):
            self.children.pop(pid, None)

    def _shutdown(self) -> None:
        """Running jobs get SIGTERM (their supervisor passes SIGINT to restic, which removes
        its locks and exits); wait for them, bounded."""
        stop_children(self.children, self.config.server.graceful_timeout)
        self.lock.release()


def run_scheduled(config: Config, name: str, *, in_service: bool, cancel: CancelFlag) -> None:
    """One scheduled run, in its own process (what `run` does, with trigger `schedule`)."""
    from notifiers.courier import run_notifier
    from runner.engine.recovery import open_history
    from runner.engine.runs import Engine

    engine = Engine(config, lambda: open_history(config.state_dir, config.history),
                    lambda: run_notifier(config, adopt=not in_service,
                                         wait=0.0 if in_service else None))
    try:
        engine.run(name, trigger={"source": "schedule", "client": None, "idempotency_key": None},
                   cancel=cancel)
    finally:
        engine.close()


def serve_scheduler(config: Config) -> None:
    """`restic-runner schedule`: the scheduler in the foreground; another one running is an
    error."""
    scheduler = Scheduler(config, in_service=False)
    if not scheduled_jobs(config):
        raise UserError("no job has a schedule (jobs.<name>.schedule)")
    if not scheduler.acquire():
        raise SchedulerBusy(f"another scheduler is running for {config.state_dir} "
                            f"(pid {scheduler.holder_pid()}); exactly one may run")
    scheduler.announce()
    scheduler.run()


def start_service_scheduler(config: Config) -> int | None:
    """Fork the service's scheduler (none when no job has a schedule); it exits with its
    parent, and waits to take over while another scheduler holds the lock."""
    if not scheduled_jobs(config):
        return None
    from runner.engine.children import fork_companion

    def main() -> None:
        scheduler = Scheduler(config, in_service=True)
        warned = False
        while not scheduler.acquire():
            if not warned:
                log.warning("scheduler: another scheduler (pid %s) holds %s; waiting to take "
                            "over", scheduler.holder_pid(), scheduler.lock.path)
                warned = True
            time.sleep(LOCK_RETRY)
        scheduler.run()

    return fork_companion(config, main, "scheduler")
