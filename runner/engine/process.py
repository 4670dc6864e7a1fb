"""Supervising one tool process: argv (never a shell), its own process group, a minimal
environment, output streamed to a sink, a deadline, and a graceful stop.

Stopping (timeout or cancel) is SIGINT to the whole group (restic then removes its repository
lock), SIGTERM after `grace` seconds, SIGKILL after another `grace`. Whatever is left in the group
when the tool has exited is killed, so no process outlives its run. If the supervisor itself dies,
the kernel sends the tool SIGINT (PR_SET_PDEATHSIG, through `setpriv`), so even then restic
cleans up its lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping

Sink = Callable[[bytes, str], None]
TICK = 0.2  # how often the loop looks at the deadline and the cancel flag
DRAIN_AFTER_EXIT = 1.0  # seconds to wait for grandchildren holding the pipes after the exit


class ProcessOutcome:
    """How a tool process ended (filled in as it runs). A plain class: a dataclass would cost
    the cron path the `dataclasses` import before the tool starts."""

    __slots__ = ("cancelled", "duration", "exit_code", "killed_by", "not_started", "timed_out")

    def __init__(self, exit_code: int, duration: float, *, timed_out: bool = False,
                 cancelled: bool = False, not_started: str | None = None,
                 killed_by: int | None = None) -> None:
        self.exit_code = exit_code
        self.duration = duration
        self.timed_out = timed_out
        self.cancelled = cancelled
        self.not_started = not_started  # why the process could not be started
        self.killed_by = killed_by  # the signal that ended the process, if one did

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"ProcessOutcome({fields})"

    @property
    def stopped(self) -> bool:
        return self.timed_out or self.cancelled


class CancelFlag:
    """Set from a signal handler or another thread; read by the supervision loop."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def set(self, reason: str = "cancelled") -> None:
        self.reason = self.reason or reason

    def is_set(self) -> bool:
        return self.reason is not None


STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def fork_run_process() -> int:
    """`os.fork()` for a process that will run a job, which must call `cancel_on_stop_signals`.

    SIGINT and SIGTERM are held from just before the fork until the child has its own handlers:
    a stop sent in between would otherwise run the parent's handler in the child (a scheduler's
    or launcher's, which only sets a flag of that process) and the job would run to its end.
    """
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    return pid


def cancel_on_stop_signals() -> CancelFlag:
    """A flag that SIGINT and SIGTERM set from now on, in this process (one that runs a job).

    Also lets through the stop signals held since `fork_run_process`, so one sent before now
    sets the flag at once, and tools started later are not born with them blocked.
    """
    cancel = CancelFlag()
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: cancel.set(signal.Signals(signum).name))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return cancel


_libc_prctl: Callable[..., int] | None = None


def _die_with_supervisor() -> None:
    """Child side, before exec: get SIGINT if the supervising process dies."""
    if _libc_prctl is not None:
        _libc_prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG


def become_subreaper() -> None:
    """Orphaned descendants get reparented to this process (PR_SET_CHILD_SUBREAPER), which then
    must reap them: not every PID 1 does (a container without an init, some sandboxes)."""
    _load_prctl()
    assert _libc_prctl is not None
    _libc_prctl(36, 1)


def die_with_parent(sig: int) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies."""
    _load_prctl()
    assert _libc_prctl is not None
    _libc_prctl(1, sig)


def _load_prctl() -> None:
    global _libc_prctl
    if _libc_prctl is None:
        import ctypes

        _libc_prctl = ctypes.CDLL(None, use_errno=True).prctl


def find_program(name: str, path: str) -> str | None:
    """`shutil.which`, without importing `shutil` (and with it bz2 and lzma) before the tool
    starts: a name with a slash as it is, else the first executable file of that name on
    `path`."""
    candidates = [name] if "/" in name else [os.path.join(d or ".", name)
                                             for d in path.split(os.pathsep)]
    for candidate in candidates:
        if os.access(candidate, os.X_OK) and os.path.isfile(candidate):
            return candidate
    return None


# util-linux's setpriv sets the parent-death signal and execs the tool. Python must fork (not
# vfork) to run a preexec_fn, which costs ~1.5 ms in a process of this size; setpriv is the
# faster path where it exists, preexec_fn the fallback.
SETPRIV = find_program("setpriv", os.environ.get("PATH", os.defpath))


def _with_death_signal(argv: tuple[str, ...]) -> tuple[str, ...]:
    if SETPRIV is None:
        _load_prctl()
        return argv
    return (SETPRIV, "--pdeathsig", "INT", "--", *argv)


def background_priority(niceness: int) -> None:
    """Make this process (a run's supervisor, just after `setsid`, before it starts anything)
    and all it starts `niceness` nicer: a service's runs yield the CPU to its API ([server]
    run_nice). Where the kernel groups CPU time by session (autogroup), a process's own nice
    counts only within its session, so the session's autogroup is made nicer as well (the
    kernel allows one such change per 100 ms without CAP_SYS_ADMIN: a few tries, then as is)."""
    if not niceness:
        return
    with contextlib.suppress(OSError):
        os.nice(niceness)
    for _ in range(3):
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(niceness))
            return
        except BlockingIOError:  # EAGAIN: another session's change in the last 100 ms
            time.sleep(0.11)
        except OSError:  # no autogroup here (or /proc read-only): the process nice suffices
            return


PIPE_SIZE = 1 << 20  # room for what a dying tool still writes when nobody reads any more


def _output_pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return read_end, write_end


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def supervise(argv: tuple[str, ...], env: Mapping[str, str], sink: Sink, *,
              deadline: float | None = None, grace: float = 30.0,
              cancel: CancelFlag | None = None, cwd: str | None = None,
              when_started: Callable[[], None] | None = None) -> ProcessOutcome:
    """Run `argv` to its end (or stop it); stream stdout/stderr chunks to `sink`. `when_started`
    is called once the process runs, before its output is read: work that can overlap the tool
    (its output waits in the pipe, up to `PIPE_SIZE`)."""
    started = time.monotonic()
    program = find_program(argv[0], env.get("PATH") or os.environ.get("PATH", os.defpath))
    if program is None:
        return ProcessOutcome(127, time.monotonic() - started,
                              not_started=f"cannot start {argv[0]}: not found or not executable")
    pipes = {name: _output_pipe() for name in ("stdout", "stderr")}
    try:
        # The child also holds the read ends (pass_fds): if the supervisor dies, restic's
        # writes do not hit a broken pipe, which would kill it (SIGPIPE) before it can remove
        # its repository lock on the SIGINT the kernel sends it.
        proc = subprocess.Popen(
            _with_death_signal((program, *argv[1:])), stdin=subprocess.DEVNULL,
            stdout=pipes["stdout"][1], stderr=pipes["stderr"][1],
            pass_fds=tuple(r for r, _ in pipes.values()), env=dict(env), cwd=cwd,
            # a process group of its own (signals go to the group), in the supervisor's session:
            # a session of its own would give it an autogroup of its own, with nice 0
            process_group=0, close_fds=True,
            preexec_fn=None if SETPRIV else _die_with_supervisor,
        )
    except OSError as exc:
        for r, w in pipes.values():
            os.close(r)
            os.close(w)
        reason = f"cannot start {argv[0]}: {exc.strerror or exc}"
        return ProcessOutcome(127 if isinstance(exc, FileNotFoundError) else 126,
                              time.monotonic() - started, not_started=reason)
    pgid = proc.pid
    outcome = ProcessOutcome(exit_code=-1, duration=0.0)
    selector = selectors.DefaultSelector()
    for name, (read_end, write_end) in pipes.items():
        os.close(write_end)
        selector.register(read_end, selectors.EVENT_READ, name)
    stop_stage, next_signal_at, exited_at = 0, 0.0, None
    escalation = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
    started_error: Exception | None = None
    try:
        if when_started is not None:
            try:
                when_started()
            except Exception as exc:  # stop the tool the graceful way, then raise it
                started_error = exc
        while True:
            if selector.get_map():
                for key, _ in selector.select(TICK):
                    data = os.read(key.fd, 65536)
                    if data:
                        sink(data, key.data)
                    else:
                        selector.unregister(key.fileobj)
                        os.close(key.fd)
            else:  # the tool closed its output; wait for its exit, still honouring the deadline
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=TICK)
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and (
                not selector.get_map() or now - exited_at > DRAIN_AFTER_EXIT
            ):
                break  # done; or the tool is gone and something it started holds the pipes
            if stop_stage == 0:
                if started_error is not None or (cancel is not None and cancel.is_set()):
                    outcome.cancelled = True
                elif deadline is not None and now >= deadline:
                    outcome.timed_out = True
                else:
                    continue
                stop_stage, next_signal_at = 1, now + grace
                _signal_group(pgid, escalation[0])
            elif stop_stage < len(escalation) and now >= next_signal_at:
                _signal_group(pgid, escalation[stop_stage])
                stop_stage, next_signal_at = stop_stage + 1, now + grace
        code = proc.wait()
        outcome.exit_code = 128 - code if code < 0 else code
        outcome.killed_by = -code if code < 0 else None
    finally:
        for key in list(selector.get_map().values()):
            os.close(key.fd)
        selector.close()
        _signal_group(pgid, signal.SIGKILL)  # nothing of this run outlives it
    outcome.duration = time.monotonic() - started
    if started_error is not None:
        raise started_error
    return outcome

