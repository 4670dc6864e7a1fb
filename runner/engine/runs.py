"""The engine: the one path every run takes (CLI, API, scheduler), and the only place that
changes run state. Take the job's lock, record the run, run its steps under supervision with
output masked into the run log, finish the record, write `last-<job>.json`, run the post hook.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from runner import __version__
from runner.configuration.config import Config, JobConfig
from runner.configuration.notify import read_notify_secrets
from runner.engine.childenv import ToolEnvironment, hook_environment, resolve_environment
from runner.engine.jobs import StepSpec, is_dry_run, plan, unlock_step
from runner.engine.jobs.output import OutputParser
from runner.engine.locks import NamedLock
from runner.engine.process import CancelFlag, ProcessOutcome, supervise
from runner.engine.record import RunRecord, Status, finish, new_record, not_started, skip
from runner.engine.runlog import RunLog
from runner.engine.statedir import StateDir, StateError
from security.errors import UserError
from security.masking import redact_text

if TYPE_CHECKING:
    from pathlib import Path

    from runner.engine.history import History

SKIP_WAIT = 2.0  # how long a contender waits to learn which run holds the lock
PROGRESS_EVERY = 1.0  # seconds between progress updates in the store
FINISH_ATTEMPTS = 3  # saving the final record, a second apart
EXIT_TIMED_OUT = 124
EXIT_CANCELLED = 130
EXIT_NOT_EXECUTABLE = 126


class JobBusy(Exception):
    """The job is running; raised instead of recording a `skipped` run when asked to."""

    def __init__(self, running_run_id: str) -> None:
        super().__init__(running_run_id)
        self.running_run_id = running_run_id


def cli_trigger() -> dict[str, Any]:
    try:
        user: str | None = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no passwd entry for this uid (containers)
        user = os.environ.get("USER")
    return {"source": "cli", "client": user, "idempotency_key": None}


class Notifier(Protocol):
    """Hears of a run's start and end (`notifiers.courier.RunNotifier`); `close` waits, bounded,
    for the deliveries once the job's lock is released."""

    def started(self, record: RunRecord) -> None: ...

    def ended(self, record: RunRecord) -> None: ...

    def close(self) -> None: ...


class Engine:
    """Runs jobs. `open_history` and `open_notifier` are called once a run's first process has
    started (or could not start), so the store, the notifiers and their imports cost nothing
    before the tool starts: only the config, the secret files, the job's lock and the run log
    come first (docs/architecture.md, the cron path)."""

    def __init__(self, config: Config, open_history: Callable[[], History],
                 open_notifier: Callable[[], Notifier | None] | None = None) -> None:
        self.config = config
        self.open_history = open_history
        self.open_notifier = open_notifier or (lambda: None)
        self._history: History | None = None

    def history(self) -> History:
        """The store, opened on first use and kept for the engine's life."""
        if self._history is None:
            self._history = self.open_history()
        return self._history

    def close(self) -> None:
        if self._history is not None:
            self._history.close()
            self._history = None

    def run(self, job_name: str, *, trigger: dict[str, Any] | None = None,
            params: Mapping[str, Any] | None = None, cancel: CancelFlag | None = None,
            on_start: Callable[[RunRecord], None] | None = None,
            record_skipped: bool = True) -> RunRecord:
        """Run a job to its end and return its final record.

        When the job is already running: a `skipped` record, or `JobBusy` with
        `record_skipped=False` (an API caller gets a 409 instead of a history entry).
        """
        job = self.config.job(job_name)
        trigger = trigger or cli_trigger()
        try:  # secret-file problems stop the run before anything runs; it is recorded failed
            tool = resolve_environment(job)
            if self.config.notify.any_target:
                read_notify_secrets(self.config.notify, self.config.signing)
        except UserError as exc:
            self._not_started(job, trigger, params, str(exc), exc.exit_code)
            raise
        state = StateDir(self.config.state_dir)
        lock = NamedLock(state.lock_dir, job.name)
        if not lock.try_acquire():
            skipped = self._busy(job, tool, trigger, lock, params, record_skipped)
            if skipped is not None:
                return skipped
        run: _Run | None = None
        try:
            record = self._new_record(job, tool, trigger, params)
            if params:
                record["params"] = dict(params)
            lock.write_holder(record["run_id"])
            run = _Run(self, state, job, record, tool, params or {}, cancel or CancelFlag(),
                       lock, on_start)
            try:
                run.execute()
            except StateError as exc:
                if run.history is not None:  # recorded as running: its end goes to the lock
                    lock.write_end(record, str(exc))
                raise
        finally:
            lock.release()
            if run is not None and run.notifier:  # deliveries wait here, after the lock
                run.notifier.close()
        return record

    def _new_record(self, job: JobConfig, tool: ToolEnvironment, trigger: dict[str, Any],
                    params: Mapping[str, Any] | None) -> RunRecord:
        return new_record(job=job.name, kind=job.kind, hostname=self.config.hostname,
                          repository=tool.repository, trigger=trigger, version=__version__,
                          dry_run=is_dry_run(job, params))

    def _busy(self, job: JobConfig, tool: ToolEnvironment, trigger: dict[str, Any],
              lock: NamedLock, params: Mapping[str, Any] | None,
              record_skipped: bool) -> RunRecord | None:
        """The lock was taken: by a running run (a `skipped` record, or `JobBusy`), or for an
        instant by a process checking for dead runs (None: we hold it now, the run goes on)."""
        history = self.history()
        history.check_writable()
        holder = self._holder(lock, history)
        if holder is None:
            return None
        if not record_skipped:
            raise JobBusy(holder)
        notifier = self.open_notifier()
        record = self._skipped(history, notifier, job, tool, trigger, holder, params)
        if notifier:
            notifier.close()
        return record

    def _not_started(self, job: JobConfig, trigger: dict[str, Any],
                     params: Mapping[str, Any] | None, reason: str, exit_code: int) -> None:
        """Record a run that could not start (a secret file missing or readable by everyone), so
        that it shows in the history, `last-<job>.json`, the metrics and the notifications like
        any failed run. A state directory that cannot take it leaves only the error."""
        import sqlite3

        record = new_record(job=job.name, kind=job.kind, hostname=self.config.hostname,
                            repository=None, trigger=trigger, version=__version__,
                            dry_run=is_dry_run(job, params))
        not_started(record, redact_text(reason), exit_code)
        _add_peer_fields(record, job, self.config)
        try:
            history = self.history()
            repeated = _same_failure(history.last_ended(job.name), record)
            with RunLog(history.log_path(job.name, record["run_id"])) as log:
                log.note(record["error"] or reason)
            history.insert(record)
            _write_compat_logs(self.config, record, history.write_last(record),
                               history.log_path(job.name, record["run_id"]))
            history.prune_logs(job.name, job.keep_logs)  # a trigger loop must not fill the disk
            history.prune_retained(job.name)
        except (UserError, sqlite3.Error, OSError):
            return
        if repeated:  # the same failure as the job's last run: told once, not at every attempt
            return
        try:  # the notifiers, unless their own secret files are what is wrong
            read_notify_secrets(self.config.notify, self.config.signing)
        except UserError:
            return
        notifier = self.open_notifier()
        if notifier:
            notifier.ended(record)
            notifier.close()

    def _holder(self, lock: NamedLock, history: History) -> str | None:
        """None when we now hold the lock; else the run id of the run that holds it.

        The lock may also be held for an instant by a process checking for dead runs; a
        contender waits briefly until it either gets the lock or sees a running holder.
        """
        give_up = time.monotonic() + SKIP_WAIT
        while not lock.try_acquire():
            holder = lock.holder()
            current = history.get(holder.run_id) if holder else None
            if holder and current and current["status"] == Status.RUNNING:
                return holder.run_id
            if time.monotonic() >= give_up:
                return str((lock.read_holder() or {}).get("run_id") or "unknown")
            time.sleep(0.02)
        return None

    def _skipped(self, history: History, notifier: Notifier | None, job: JobConfig,
                 tool: ToolEnvironment, trigger: dict[str, Any], holder: str,
                 params: Mapping[str, Any] | None) -> RunRecord:
        record = self._new_record(job, tool, trigger, params)
        message = f"skipped: previous run of {job.name} still active (run {holder})"
        skip(record, holder, message)
        _add_peer_fields(record, job, self.config)
        with RunLog(history.log_path(job.name, record["run_id"])) as log:
            log.note(message)
        history.insert(record)
        _write_compat_logs(self.config, record, history.write_last(record),
                           history.log_path(job.name, record["run_id"]))
        if notifier:
            notifier.ended(record)
        return record


def _killed_message(spec: StepSpec, outcome: ProcessOutcome) -> str | None:
    """Why a step that printed no error ended: a signal from outside restic-runner (ours, on a
    timeout or cancel, are reported as such before this is asked)."""
    import signal

    if outcome.killed_by is None:
        return None
    try:
        name = signal.Signals(outcome.killed_by).name
    except ValueError:
        name = "a signal"
    message = (f"{spec.name} was killed by {name} (signal {outcome.killed_by}) from outside "
               "restic-runner")
    if "restic" in os.path.basename(spec.argv[0]):
        message += "; its repository lock may remain: `restic list locks`, then an unlock job"
    return message


class _Run:
    """One run in progress: its record, its log, its steps. The record enters the history when
    the run's first process has started (`_begin`), while that process already runs."""

    def __init__(self, engine: Engine, state: StateDir, job: JobConfig, record: RunRecord,
                 tool: ToolEnvironment, params: Mapping[str, Any], cancel: CancelFlag,
                 lock: NamedLock, on_start: Callable[[RunRecord], None] | None) -> None:
        self.engine, self.job, self.record = engine, job, record
        self.tool, self.params, self.cancel = tool, params, cancel
        self.lock, self.on_start = lock, on_start
        self.history: History | None = None
        self.notifier: Notifier | None = None
        self.begin_error: StateError | None = None
        self.log = RunLog(state.log_path(job.name, record["run_id"]))
        self.deadline = time.monotonic() + job.timeout if job.timeout else None
        self._last_progress = 0.0

    def execute(self) -> None:
        r = self.record
        try:
            self.log.note(f"run {r['run_id']} of job {self.job.name} ({self.job.kind}) on "
                          f"{r['hostname']}, trigger {r['trigger']['source']}, "
                          f"restic-runner {__version__}")
            if self.tool.repository:
                self.log.note(f"repository {self.tool.repository}")
            if r.get("dry_run"):
                self.log.note("dry run: nothing is written or removed, and a success does not "
                              "count as the job's last success")
            if self.job.uses_restic and self.job.restic.retry_lock:
                from runner.engine.binaries import supports_retry_lock

                if not supports_retry_lock(self.job.restic.binary):
                    self.log.note("retry_lock is set, but this restic has no --retry-lock "
                                  "(restic 0.16 or later): a locked repository fails at once")
            status, exit_code = self._steps()
        except StateError:
            raise
        except Exception as exc:  # a bug or an OS error: the run is marked, never left running
            r["error"] = redact_text(f"internal error: {type(exc).__name__}: {exc}")
            self.log.note(r["error"])
            status, exit_code = Status.FAILED, 1
        finally:
            self._begin()  # no process started at all (a bug, or nothing to run): now
        if self.begin_error is not None:
            self.log.close()
            raise self.begin_error
        self._finish(status, exit_code)
        if self.job.post_hook:
            self._post_hook()
        self._compat_logs()
        self.log.close()
        assert self.history is not None
        self.history.prune_retained(self.job.name)  # after the end: it may be the newest success

    def _begin(self) -> None:
        """Once: open the history, mark the job's dead runs, record this run as running, tell
        whoever waits for its start and the notifiers. The tool already runs: a state directory
        that fails here stops it with SIGINT (restic removes its repository lock) and the run
        with it. Pruning never ends the run; anything else that fails here stops the tool the
        same graceful way (runner.engine.process) and fails the run."""
        if self.history is not None or self.begin_error is not None:
            return
        import sqlite3  # here, not at the top: SQLite loads while the tool already runs

        from runner.engine.recovery import mark_dead_runs_of

        try:
            history = self.engine.history()
            history.check_writable()
            mark_dead_runs_of(history, self.job.name)
            history.insert(self.record)
        except StateError as exc:
            self.begin_error = exc
        except (sqlite3.Error, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            self.begin_error = StateError(f"state_dir {self.engine.config.state_dir}: cannot "
                                          f"record run {self.record['run_id']}: {reason}")
        if self.begin_error is not None:
            self.cancel.set("state_dir unusable")
            return
        self.history = history
        with contextlib.suppress(sqlite3.Error, OSError):  # pruning never fails a run
            history.prune_logs(self.job.name, self.job.keep_logs)  # this run's log counts
            history.prune_orphan_events()
        if self.on_start:
            self.on_start(self.record)
        self.notifier = self.engine.open_notifier()
        if self.notifier:
            self.notifier.started(self.record)

    # --- steps ---------------------------------------------------------------------------------

    def _steps(self) -> tuple[Status, int]:
        """Run the pre hook and the planned steps. A success needs every main step (one that
        decides the outcome) to have run to its end: a stop before or during one never is."""
        planned = plan(self.job, self.params)
        unfinished = [spec.name for spec in planned if spec.decides_outcome]
        if self.job.pre_hook:
            hook = self._hook("pre_hook", self.job.pre_hook, {})
            if hook.cancelled:
                return self._stopped_status(hook, unfinished)
            if hook.exit_code != 0:
                if self.job.pre_hook_on_error == "fail":
                    self.record["error"] = f"pre_hook failed with exit code {hook.exit_code}"
                    self.log.note(f"{self.record['error']}; the run stops here")
                    return Status.FAILED, hook.exit_code
                self.log.note(f"pre_hook failed (exit {hook.exit_code}); continuing "
                              "(pre_hook_on_error = \"continue\")")
        if self.job.replicate_lines:
            return self._replicate_lines()
        status, exit_code = Status.SUCCEEDED, 0
        for spec in planned:
            if status == Status.FAILED and not spec.always:
                continue
            if spec.needs_success and status != Status.SUCCEEDED:
                self.log.note(f"{spec.name} not run: the previous step did not succeed")
                continue
            outcome, parser = self._tool_step(spec)
            if spec.decides_outcome:
                self.record["stats"].update(parser.stats)
                if _ran_to_its_end(outcome):
                    unfinished.remove(spec.name)
                if outcome.stopped:
                    return self._stopped_status(outcome, unfinished)
                status, exit_code = _status_of(spec, outcome)
                if outcome.not_started:
                    self.record["error"] = outcome.not_started
                elif status != Status.SUCCEEDED:
                    self.record["error"] = parser.error or _killed_message(spec, outcome)
            elif outcome.stopped:
                return self._stopped_status(outcome, unfinished)
            if outcome.exit_code != 0 and self.job.uses_restic and self.job.restic.auto_unlock \
                    and _is_lock_failure(outcome.exit_code, parser.error):
                self.log.note("repository is locked and auto_unlock is on: removing stale locks")
                self._tool_step(unlock_step(self.job))
        if status == Status.SUCCEEDED and unfinished:  # no path leads here; the rule holds anyway
            self.record["error"] = f"{', '.join(unfinished)} did not run to its end"
            return Status.FAILED, 1
        return status, exit_code

    def _tool_step(self, spec: StepSpec) -> tuple[ProcessOutcome, OutputParser]:
        parser = spec.parser()
        self.log.note("$ " + " ".join(spec.argv))
        outcome = self._supervise(spec.name, spec.argv, self.tool.env, parser, self.deadline)
        parser.finish(outcome.exit_code)
        # a follow-up step's stats, and each replicate line's, are kept in its step
        keep_stats = not spec.decides_outcome or spec.line is not None
        stats = parser.stats if keep_stats and parser.stats else None
        self._record_step(spec.name, outcome, stats, line=spec.line)
        return outcome, parser

    def _replicate_lines(self) -> tuple[Status, int]:
        """A replicate job made of job-file lines: every line in turn, a failed one does not
        stop the others (runner.engine.jobs.replicatelines)."""
        from runner.engine.jobs.replicatelines import run_lines

        result = run_lines(self.job, bool(self.record.get("dry_run")), self._tool_step,
                           self.log.note, self.record["steps"].append)
        self.record["stats"].update(result.stats)
        if result.stopped is not None:
            return self._stopped_status(result.stopped, list(result.unfinished))
        if result.exit_code != 0:
            self.record["error"] = result.error
            return Status.FAILED, result.exit_code
        return Status.SUCCEEDED, 0

    def _hook(self, name: str, argv: tuple[str, ...], extra: dict[str, str],
              cancel: CancelFlag | None = None) -> ProcessOutcome:
        """Run a hook under the same supervision; a hook that times out exits 124. A hook file
        that is there but not executable is not run: reported, exit 126 (as a shell would)."""
        env = hook_environment(self.job, self.tool, {
            "RESTIC_RUNNER_JOB": self.job.name, "RESTIC_RUNNER_RUN_ID": self.record["run_id"],
            **extra})
        timeout = self.job.hook_timeout
        self.log.note(f"{name}: $ " + " ".join(argv) + f" (hook_timeout {timeout:g}s)")
        if _not_executable(argv[0]):
            self.log.note(f"{name}: {argv[0]} is not executable (chmod +x it): not run")
            outcome = ProcessOutcome(EXIT_NOT_EXECUTABLE, 0.0)
        else:
            outcome = self._supervise(name, argv, env, OutputParser(),
                                      time.monotonic() + timeout, cancel)
        if outcome.timed_out:
            outcome.exit_code = EXIT_TIMED_OUT
            self.log.note(f"{name} timed out after {timeout:g}s (exit {EXIT_TIMED_OUT})")
        self._record_step(name, outcome)
        return outcome

    def _record_step(self, name: str, outcome: ProcessOutcome,
                     stats: dict[str, Any] | None = None, line: int | None = None) -> None:
        step: dict[str, Any] = {"name": name, "exit_code": outcome.exit_code,
                                "duration_seconds": round(outcome.duration, 3)}
        if line is not None:
            step["line"] = line
        if stats:
            step["stats"] = stats
        self.record["steps"].append(step)
        if outcome.not_started:
            self.log.note(outcome.not_started)
        self.log.note(f"{name} exited {outcome.exit_code} after {outcome.duration:.2f}s"
                      + (" (timed out)" if outcome.timed_out else "")
                      + (" (cancelled)" if outcome.cancelled else ""))

    def _supervise(self, name: str, argv: tuple[str, ...], env: dict[str, str],
                   parser: OutputParser, deadline: float | None,
                   cancel: CancelFlag | None = None) -> ProcessOutcome:
        pipes = self.log.pipes(parser)

        def sink(data: bytes, stream: str) -> None:
            pipes[stream].feed(data)
            now = time.monotonic()
            if now - self._last_progress >= PROGRESS_EVERY:
                self._last_progress = now
                progress = parser.progress()
                if progress is not None and self.history is not None:
                    import sqlite3

                    self.record["progress"] = dict(progress, step=name)
                    with contextlib.suppress(sqlite3.Error):  # live progress is best effort
                        self.history.save(self.record)

        try:
            return supervise(argv, env, sink, deadline=deadline, grace=self.job.stop_grace,
                             cancel=cancel or self.cancel, when_started=self._begin)
        finally:
            for pipe in pipes.values():
                pipe.close()

    def _stopped_status(self, outcome: ProcessOutcome,
                        unfinished: list[str]) -> tuple[Status, int]:
        """The status of a run stopped (timeout or cancel) while `outcome`'s process ran. It
        is a success only if that process still exited 0 and no main step is left unfinished
        (a pre hook that ignores the stop and exits 0 leaves the backup unfinished)."""
        if outcome.timed_out:
            self.record["error"] = f"timed out after {self.job.timeout:g}s"
            return Status.TIMED_OUT, EXIT_TIMED_OUT
        if outcome.exit_code == 0 and not unfinished:
            return Status.SUCCEEDED, 0
        if unfinished:
            self.log.note(f"not run to its end: {', '.join(unfinished)}")
        self.record["error"] = f"cancelled ({self.cancel.reason})"
        return Status.CANCELLED, EXIT_CANCELLED

    # --- the end ---------------------------------------------------------------------------------

    def _finish(self, status: Status, exit_code: int) -> None:
        r = self.record
        finish(r, status, exit_code)
        _add_peer_fields(r, self.job, self.engine.config)
        self.log.note(f"finished: {status} (exit {exit_code}) in {r['duration_seconds']:.2f}s")
        if self.log.write_error is not None and not r.get("error"):
            r["error"] = (f"the run log {self.log.path} is incomplete: "
                          f"{self.log.write_error.strerror or self.log.write_error}")
        r["log_tail"] = self.log.tail()
        self._record_end(r)
        if self.notifier:  # deliveries start now, while the post hook runs
            self.notifier.ended(r)

    def _record_end(self, r: RunRecord) -> None:
        """Save the final record and last-<job>.json; a full or read-only state directory gets
        a few seconds to recover, then one clear error (the caller releases the job lock)."""
        assert self.history is not None
        import sqlite3

        for attempt in range(FINISH_ATTEMPTS):
            try:
                self.history.save(r)
                self.result_file = self.history.write_last(r)
                return
            except (sqlite3.Error, OSError) as exc:
                if attempt == FINISH_ATTEMPTS - 1:
                    reason = getattr(exc, "strerror", None) or str(exc)
                    raise StateError(
                        f"state_dir {self.history.state_dir}: run {r['run_id']} ended "
                        f"{r['status']} (exit {r['exit_code']}) but could not be recorded: "
                        f"{reason}") from None
                time.sleep(1.0)

    def _compat_logs(self) -> None:
        """restic-backup-helper's outputs in `compat_log_dir` (runner.engine.compatlogs)."""
        run_log = None if self.log.write_error else self.log.path
        problem = _write_compat_logs(self.engine.config, self.record,
                                     getattr(self, "result_file", None), run_log,
                                     self.log.tail())
        if problem:
            self.log.note(f"compat_log_dir: not written: {problem}")

    def _post_hook(self) -> None:
        r = self.record
        assert self.history is not None
        import sqlite3

        # the run's exit code is its last argument, `$1` when it has none of its own (as
        # restic-backup-helper's post hooks get it)
        argv = (*self.job.post_hook, str(r["exit_code"]))
        hook = self._hook("post_hook", argv, {
            "RESTIC_RUNNER_STATUS": r["status"],
            "RESTIC_RUNNER_EXIT_CODE": str(r["exit_code"]),
            "RESTIC_RUNNER_RESULT_FILE": str(self.result_file),
        }, cancel=CancelFlag())  # runs even after a cancel; hook_timeout bounds it
        if hook.exit_code != 0:
            self.log.note(f"post_hook failed (exit {hook.exit_code}); the run's outcome stands")
        r["log_tail"] = self.log.tail()
        with contextlib.suppress(sqlite3.Error, OSError):  # the end itself is recorded already
            self.history.save(r)
            self.history.write_last(r)


def _add_peer_fields(record: RunRecord, job: JobConfig, config: Config) -> None:
    """restic-backup-helper's fields of `last-<job>.json` (runner.engine.peerfields)."""
    from runner.engine.peerfields import add_peer_fields

    with contextlib.suppress(Exception):  # extra fields never keep a run from being recorded
        add_peer_fields(record, job, config.state_dir)


def _write_compat_logs(config: Config, record: RunRecord, last_json: Path | None,
                       run_log: Path | None, tail: str = "") -> str | None:
    """restic-backup-helper's outputs in `compat_log_dir`, when set (runner.engine.compatlogs);
    what failed, in words, or None."""
    if config.compat_log_dir is None:
        return None
    from runner.engine.compatlogs import write_compat_logs

    return write_compat_logs(config.compat_log_dir, record, last_json, run_log,
                             tail or record.get("log_tail", ""))


def _same_failure(last: RunRecord | None, record: RunRecord) -> bool:
    """Whether the job's last run also failed before it started, for the same reason."""
    return (last is not None and last["status"] == Status.FAILED and not last["steps"]
            and last.get("error") == record["error"])


def _not_executable(program: str) -> bool:
    """A hook path that names a file which cannot be executed (a bare name is looked up on
    PATH when it runs; a missing file is the supervisor's "cannot start")."""
    return "/" in program and os.path.isfile(program) and not os.access(program, os.X_OK)


def _ran_to_its_end(outcome: ProcessOutcome) -> bool:
    """The process started and ended by itself: not stopped by us (or it exited 0 anyway)."""
    if outcome.not_started:
        return False
    return not outcome.stopped or outcome.exit_code == 0


def _status_of(spec: StepSpec, outcome: ProcessOutcome) -> tuple[Status, int]:
    if outcome.exit_code == 0:
        return Status.SUCCEEDED, 0
    if outcome.exit_code in spec.warning_codes:
        return Status.WARNING, outcome.exit_code
    return Status.FAILED, outcome.exit_code


def _is_lock_failure(exit_code: int, error: str | None) -> bool:
    """restic 0.18 says 11; 0.14 says 1 and only its message tells a lock failure apart."""
    return exit_code == 11 or (exit_code == 1 and "already locked" in (error or ""))
