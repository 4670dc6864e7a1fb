"""Supervising a run's process (runner/engine/process.py): a stop sent between the fork of a
run and its own signal handlers reaches the run. (Timeouts, cancellation and a dying supervisor
with real restic under the real CLI: tests/e2e/cli/test_supervision.py.)"""

from __future__ import annotations

HELD_STOP_DRIVER = """
import os, signal
from runner.engine.process import cancel_on_stop_signals, fork_run_process

parents_handler_ran = []
signal.signal(signal.SIGTERM, lambda *_: parents_handler_ran.append(os.getpid()))
read_end, write_end = os.pipe()
pid = fork_run_process()
if pid == 0:
    os.kill(os.getpid(), signal.SIGTERM)  # before the run's own handlers
    cancel = cancel_on_stop_signals()
    blocked = sorted(signal.pthread_sigmask(signal.SIG_BLOCK, []))
    os.write(write_end, f"{cancel.reason} {blocked} {parents_handler_ran}".encode())
    os._exit(0)
os.close(write_end)
print(os.read(read_end, 1000).decode(), sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
os.waitpid(pid, 0)
"""


def test_a_stop_sent_between_fork_and_the_runs_handlers_reaches_the_run() -> None:
    """fork_run_process holds SIGINT/SIGTERM until the child's cancel_on_stop_signals: the stop
    sets the run's flag instead of running the parent's handler (inherited by a plain fork).
    Afterwards no signal is blocked, in the child (its tools inherit its mask) or the parent."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", HELD_STOP_DRIVER], capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.split() == ["SIGTERM", "[]", "[]", "[]"]
    plain = subprocess.run([sys.executable, "-c", HELD_STOP_DRIVER.replace(
        "pid = fork_run_process()", "pid = os.fork()")], capture_output=True, text=True,
        timeout=60, check=True)
    assert plain.stdout.split()[0] == "None"  # the stop went to the parent's handler
