"""Starting runs from the HTTP service so that each run outlives the worker that accepted it.

A *launcher* process is forked by `serve` before gunicorn starts its workers. It holds no SQLite
handle and no thread: a clean process to fork from (SQLite's per-process lock state must never be
inherited into a process that opens the same database). A worker that accepts a trigger connects
to the launcher's UNIX socket (in `state_dir`, mode 0600) and sends the request; the launcher
forks the run's supervisor, a session of its own outside gunicorn's process tree, which takes the
job lock, runs the engine and holds the lock until the end. The supervisor answers on the
worker's connection as soon as the lock decided (started or busy), so the HTTP answer (202 or
409) is exactly what the lock said. The launcher is a child subreaper: it reaps its supervisors,
and if it dies first they are reparented and go on. No interpreter starts per run: a fork of a
warm process reaches `exec restic` in milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from runner.configuration.config import Config
from runner.engine.process import (
    CancelFlag,
    background_priority,
    cancel_on_stop_signals,
    fork_run_process,
)
from runner.errors import UserError

if TYPE_CHECKING:
    from runner.engine.history import History

REPORT_TIMEOUT = 30.0  # seconds to wait for the supervisor to say started/busy


@dataclass(frozen=True, slots=True)
class StartResult:
    status: str  # "started" | "busy" | "error"
    run_id: str | None = None
    message: str | None = None


def request_start(socket_path: Path, job: str, *, trigger: dict[str, Any],
                  params: Mapping[str, Any] | None = None) -> StartResult:
    """Ask the launcher to start `job`; return once the job lock decided."""
    request = json.dumps({"job": job, "trigger": trigger, "params": dict(params or {})})
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(REPORT_TIMEOUT)
            conn.connect(str(socket_path))
            conn.sendall(request.encode() + b"\n")
            data = conn.makefile("rb").readline()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return StartResult("error", message=f"the launcher is not reachable ({reason})")
    return _start_result(data)


def _start_result(data: bytes) -> StartResult:
    """The supervisor's report, checked: a line that is not one is no report."""
    try:
        report = json.loads(data)
    except ValueError:
        report = None
    if not isinstance(report, dict) or report.get("status") not in ("started", "busy", "error"):
        return StartResult("error", message="the run's supervisor did not report back")
    run_id, message = report.get("run_id"), report.get("message")
    return StartResult(report["status"], run_id if isinstance(run_id, str) else None,
                       message if isinstance(message, str) else None)


def launcher_socket_path(config: Config) -> Path:
    return config.state_dir / "launcher.sock"


def start_launcher(config: Config) -> int:
    """Fork the launcher; returns its pid. It exits when its parent (gunicorn's master) dies."""
    path = launcher_socket_path(config)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        path.unlink(missing_ok=True)
        listener.bind(str(path))
    except OSError as exc:
        listener.close()
        raise UserError(f"state_dir: {config.state_dir} is not writable: cannot create "
                        f"{path.name} ({exc.strerror})") from None
    finally:
        os.umask(old_umask)
    listener.listen(128)
    parent = os.getpid()
    pid = os.fork()
    if pid:
        listener.close()
        return pid
    from runner.engine.children import exit_after

    exit_after(lambda: _launcher_loop(config, listener, parent), "launcher")


def _launcher_loop(config: Config, listener: socket.socket, parent: int) -> None:
    from runner.engine import history, runs  # noqa: F401 - imported once here, not in every run

    if config.notify.any_target:
        from notifiers import courier, registry  # noqa: F401
        from notifiers.registry import build_targets

        build_targets(config)  # imports every configured target's module, once
    from runner.engine.process import become_subreaper, die_with_parent

    die_with_parent(signal.SIGTERM)
    become_subreaper()  # supervisors that end while we live are ours to reap
    _warm_up(config)
    stopping: list[int] = []
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on serve: the master handles it
    signal.signal(signal.SIGTERM, lambda signum, _f: stopping.append(signum))
    listener.settimeout(1.0)
    spare = _Spare(config)
    running: set[int] = set()  # supervisors of runs
    while os.getppid() == parent and not stopping:
        running -= _reap()
        try:
            conn, _ = listener.accept()
        except (TimeoutError, InterruptedError):
            continue
        with conn:
            conn.settimeout(10)
            try:
                line = conn.makefile("rb").readline()
                json.loads(line)  # the spare parses it again; garbage is dropped here
            except (OSError, ValueError):
                continue
            if not spare.hand_over(line, conn):  # it died while waiting: fork another
                spare = _Spare(config)
                spare.hand_over(line, conn)
            running.add(spare.pid)
            spare = _Spare(config)
    with contextlib.suppress(ProcessLookupError):
        os.kill(spare.pid, signal.SIGKILL)  # waiting for a run that will not come
    from runner.engine.children import stop_children

    # each run's supervisor passes SIGINT to restic and records the run `cancelled`
    stop_children(running | {spare.pid}, config.server.graceful_timeout)


class _Spare:
    """A supervisor forked ahead of its run, in its own session, its history connection already
    open, waiting for a request and the worker's connection (passed as a file descriptor): the
    fork and the SQLite open are off the path from trigger to `exec restic`."""

    def __init__(self, config: Config) -> None:
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = fork_run_process()
        if self.pid == 0:
            from runner.engine.children import exit_after

            exit_after(lambda: self._wait_for_its_run(config, child), "launcher: a spare")
        child.close()

    def _wait_for_its_run(self, config: Config, child: socket.socket) -> None:
        """In the spare: get ready, wait for the request, supervise its run (never returns once
        a request came)."""
        self.sock.close()
        os.setsid()  # before the stop signals are let through: serve's Ctrl-C is not ours
        cancel = cancel_on_stop_signals()
        background_priority(config.server.run_nice)
        _detach_fds(child.fileno())
        from runner.engine.history import History

        try:
            history: History | None = History(config.state_dir, config.history)
        except UserError:  # unusable now: _supervise opens it again, and reports
            history = None
        message, fds, _, _ = socket.recv_fds(child, 1 << 16, 1)
        if message and fds:
            request = json.loads(message)
            _supervise(config, request["job"], request["trigger"], request["params"], fds[0],
                       cancel, history=history)

    def hand_over(self, request_line: bytes, conn: socket.socket) -> bool:
        try:
            socket.send_fds(self.sock, [request_line], [conn.fileno()])
            return True
        except OSError:
            return False
        finally:
            self.sock.close()


def _warm_up(config: Config) -> None:
    """Do once here what every forked supervisor would otherwise do first: read the jobs'
    secrets (registering them) and compile the redactor, so a run starts in milliseconds."""
    from runner.engine.childenv import resolve_environment
    from security.masking import REGISTRY

    for job in config.jobs.values():
        with contextlib.suppress(Exception):
            resolve_environment(job)
    if config.notify.any_target:
        from runner.configuration.notify import read_notify_secrets

        with contextlib.suppress(Exception):
            read_notify_secrets(config.notify, config.signing)
    REGISTRY.redact(b"warm-up\n")


def _reap() -> set[int]:
    """Collect every ended child (supervisors reparented to us included); their pids."""
    ended: set[int] = set()
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.add(pid)


def _detach_fds(keep: int) -> None:
    """Close everything inherited from the worker (listening sockets, database handles) but
    the report pipe; stdio goes to /dev/null."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


def _still_writable(history: History) -> History | None:
    """A spare's history was opened when it was forked, maybe while the state directory was
    read-only (then SQLite keeps the connection read-only): open it again if so."""
    try:
        history.check_writable()
        return history
    except UserError:
        history.close()  # else SQLite hands the new connection this one's read-only descriptor
        return None  # _supervise opens it again, and reports if it still cannot be used


def _supervise(config: Config, job: str, trigger: dict[str, Any], params: Mapping[str, Any],
               report_fd: int, cancel: CancelFlag, history: History | None = None) -> NoReturn:
    """The supervisor process: never returns. A spare comes with its fds already detached and
    its history open."""
    reported = False

    def report(**fields: Any) -> None:
        """Tell the waiting worker; one that stopped listening (it timed out, it was recycled)
        must not stop the run, which outlives it by design."""
        nonlocal reported
        if not reported:
            reported = True
            with contextlib.suppress(OSError):
                os.write(report_fd, json.dumps(fields).encode() + b"\n")
            os.close(report_fd)

    def supervise() -> None:
        try:
            _run_reporting(config, job, trigger, params, report_fd, cancel, history, report)
        except BaseException as exc:  # reported to the request; logged by exit_after
            from security.masking import redact_text

            text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            report(status="error", message=redact_text(text))
            raise

    from runner.engine.children import exit_after

    exit_after(supervise, f"run of {job}")


def _run_reporting(config: Config, job: str, trigger: dict[str, Any],
                   params: Mapping[str, Any], report_fd: int, cancel: CancelFlag,
                   history: History | None, report: Callable[..., None]) -> None:
    """The run, in the supervisor: its start (or that the job is busy) is reported at once."""
    if history is None:
        _detach_fds(report_fd)
    else:
        history = _still_writable(history)
    os.set_blocking(report_fd, True)
    from notifiers.courier import run_notifier
    from runner.engine.history import History
    from runner.engine.runs import Engine, JobBusy

    for sig in (signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGWINCH, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    spare_history = history
    # first attempts only: the service's deliveries worker retries the rest
    engine = Engine(config,
                    lambda: spare_history or History(config.state_dir, config.history),
                    lambda: run_notifier(config, adopt=False, wait=0.0))
    try:
        engine.run(job, trigger=trigger, params=params, cancel=cancel, record_skipped=False,
                   on_start=lambda record: report(status="started", run_id=record["run_id"]))
    except JobBusy as busy:
        report(status="busy", run_id=busy.running_run_id)
