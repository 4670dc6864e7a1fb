"""The courier: takes events into the outbox and delivers what is due, from a thread of its own.

A run's process starts one (`RunNotifier`): the start event is written and sent while the tool
runs; the end event as soon as the run is recorded, concurrently with the post hook; after the
job's lock is released the process waits, bounded, for its deliveries. The service runs one
more for good (`serve_forever`, in the deliveries worker) that retries whatever is still
pending, from any process, after any restart. A delivery never touches the job's lock, the
run's status or its exit code.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.engine.record import RunRecord

if TYPE_CHECKING:  # the rest is imported in the courier's thread, off the run's path
    from concurrent.futures import Future, ThreadPoolExecutor

    from notifiers.base import DeliveryContext, Outcome, Target
    from notifiers.outbox import Delivery, Outbox
    from runner.configuration.config import Config
    from runner.engine.history import History

LOGGER = "restic_runner.notify"
POLL = 1.0  # seconds between outbox scans of the long-running courier
PARALLEL = 8  # deliveries in flight at once
_FINISH = object()


class Courier:
    """Delivers from the outbox. `scope` None: every run's deliveries; else only those runs'."""

    def __init__(self, config: Config, *, scope: set[str] | None = None) -> None:
        self.config = config
        self.scope = scope
        self.policy = config.notify.retry
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._local = threading.local()
        self._histories: list[History] = []  # the delivery threads' connections
        self._thread: threading.Thread | None = None
        self.targets: dict[str, Target] = {}

    # --- what other threads call ---------------------------------------------------------------

    def post(self, event_type: str, record: RunRecord) -> None:
        """Hand an event over (written to the outbox by the courier's thread, right away);
        the first one starts that thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="courier", daemon=True)
            self._thread.start()
        self._queue.put((event_type, dict(record)))

    def finish(self, wait: float) -> None:
        """Deliver what is due, retry what falls due within `wait` seconds, then stop; return
        within `wait` (plus one attempt's timeout) whatever happens."""
        if self._thread is None:
            return
        deadline = time.monotonic() + wait
        self._queue.put((_FINISH, deadline))
        self._thread.join(max(0.0, wait) + self._longest_timeout())

    # --- the courier's thread ------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._loop(forever=False)
        except Exception:  # never take the run down with us
            _log_exception("notifications: the courier stopped")

    def serve_forever(self) -> None:
        """The deliveries worker of `serve`: retry whatever is due, from every process. A
        failure (the database busy for too long, a bug) is logged and the loop starts over."""
        while True:
            try:
                self._loop(forever=True)
            except Exception:
                _log_exception("notifications: deliveries worker error; starting over in 5 s")
                time.sleep(5)

    def _loop(self, *, forever: bool) -> None:
        # imported here, in the courier's thread, while the tool runs: not on the run's path
        from concurrent.futures import ThreadPoolExecutor

        from notifiers.leases import lease_holder
        from notifiers.outbox import Outbox
        from notifiers.registry import build_targets
        from runner.engine.history import History

        history = History(self.config.state_dir)
        outbox = Outbox(history.db, lease_holder(self.config.state_dir / "leases"))
        self.targets = {t.name: t for t in build_targets(self.config)}
        try:
            with ThreadPoolExecutor(PARALLEL, thread_name_prefix="deliver") as pool:
                self._serve(outbox, history, pool, forever)
        finally:
            for h in [history, *self._histories]:
                h.close()

    def _serve(self, outbox: Outbox, history: History, pool: ThreadPoolExecutor,
               forever: bool) -> None:
        finish_by: float | None = None
        last_recovery = 0.0
        while True:
            if self.scope is None and time.monotonic() - last_recovery > 30:
                last_recovery = time.monotonic()
                outbox.enqueue_unreported(list(self.targets.values()),
                                          since=time.time() - self.policy.give_up_after)
            finish_by = self._take_events(outbox, finish_by, timeout=0.0)
            self._deliver_due(outbox, history, pool)
            scope = tuple(self.scope) if self.scope is not None else None
            due = outbox.next_due(scope)
            if finish_by is not None and not forever:
                remaining = finish_by - time.monotonic()
                if due is None or due - time.time() > remaining:
                    return
            wait = POLL if due is None else min(POLL, max(0.0, due - time.time()))
            finish_by = self._take_events(outbox, finish_by, timeout=wait)


    def _take_events(self, outbox: Outbox, finish_by: float | None, timeout: float
                     ) -> float | None:
        """Write posted events to the outbox; waits up to `timeout` for the first one."""
        block = timeout > 0
        while True:
            try:
                item = self._queue.get(block, timeout if block else None)
            except queue.Empty:
                return finish_by
            block = False
            if item[0] is _FINISH:
                finish_by = item[1]
                continue
            from notifiers.outbox import new_event

            event_type, record = item
            if self.scope is not None:
                self.scope.add(record["run_id"])
            outbox.enqueue(new_event(event_type, record), list(self.targets.values()))

    def _deliver_due(self, outbox: Outbox, history: History, pool: ThreadPoolExecutor) -> None:
        scope = tuple(self.scope) if self.scope is not None else None
        while True:
            claimed = outbox.claim(run_ids=scope)
            if not claimed:
                return
            futures: list[tuple[Delivery, Future[tuple[Outcome, float]]]] = []
            for delivery in claimed:
                target = self.targets.get(delivery.target)
                memory = outbox.memory(delivery.target)
                futures.append((delivery, pool.submit(self._attempt, target, delivery, memory)))
            touched: set[tuple[str, str]] = set()
            for delivery, future in futures:
                outcome, seconds = future.result()
                state = outbox.settle(delivery, outcome, seconds, policy=self.policy,
                                      target=self.targets.get(delivery.target))
                touched.add((delivery.event.job, delivery.event.run_id))
                if not outcome.delivered:
                    said = f"; it said: {outcome.said}" if outcome.said else ""
                    _log_warning("notifications: %s of run %s to %s: %s (%s)%s",
                                delivery.event.type, delivery.event.run_id, delivery.target,
                                outcome.error or outcome.detail, state, said)
            for job, run_id in touched:
                latest = history.last_ended(job)
                if latest is not None and latest["run_id"] == run_id:
                    history.write_last(latest)

    def _attempt(self, target: Target | None, delivery: Delivery, memory: dict[str, Any]
                 ) -> tuple[Outcome, float]:
        from notifiers.base import Outcome, PermanentError
        from security.masking import redact_text

        if target is None:
            return Outcome.failed("not sent", f"target {delivery.target} is no longer "
                                              "configured", retry=False), 0.0
        started = time.monotonic()
        try:
            outcome = target.deliver(delivery.event, self._context(memory))
        except PermanentError as exc:
            outcome = Outcome.failed("not sent", str(exc), retry=False)
        except Exception as exc:  # a secret file gone, a bug: retried, and said why
            outcome = Outcome.failed("not sent", redact_text(f"{type(exc).__name__}: {exc}"))
        return outcome, time.monotonic() - started

    def _context(self, memory: dict[str, Any]) -> DeliveryContext:
        """Each delivery thread reads the history through a connection of its own."""
        from notifiers.base import DeliveryContext

        history = getattr(self._local, "history", None)
        if history is None:
            from runner.engine.history import History

            history = self._local.history = History(self.config.state_dir)
            self._histories.append(history)
        return DeliveryContext(self.config, history, memory)

    def _longest_timeout(self) -> float:
        return max((t.timeout for t in self.config.notify.targets()), default=1.0) + 1.0


def _log_warning(message: str, *args: object) -> None:
    import logging

    from security.controlchars import printable_lines
    from security.masking import redact_text

    # escaped here too: `run` has no service log to format it (a traceback keeps its lines)
    logging.getLogger(LOGGER).warning(
        "%s", printable_lines(redact_text(message % args)))


def _log_exception(message: str) -> None:
    """The traceback, masked like every other output (it may quote a secret's value)."""
    import traceback

    _log_warning("%s\n%s", message, traceback.format_exc().rstrip())


class RunNotifier:
    """What the engine calls for one run. `adopt` also delivers what earlier runs left due (a
    CLI `run` with no service around); `wait` bounds how long the process waits at the end."""

    def __init__(self, config: Config, *, adopt: bool, wait: float) -> None:
        self.courier = Courier(config, scope=None if adopt else set())
        self.wait = wait

    def started(self, record: RunRecord) -> None:
        self.courier.post("run.started", record)

    def ended(self, record: RunRecord) -> None:
        self.courier.post(f"run.{record['status']}", record)

    def close(self) -> None:
        self.courier.finish(self.wait)


def run_notifier(config: Config, *, adopt: bool, wait: float | None = None
                 ) -> RunNotifier | None:
    """A notifier for one run, or None when nothing is configured to hear about it."""
    if not config.notify.any_target:
        return None
    return RunNotifier(config, adopt=adopt,
                       wait=config.notify.cli_wait if wait is None else wait)
