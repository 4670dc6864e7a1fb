"""Companion processes of `serve`: forked before gunicorn's workers (no SQLite handle is open
yet), logging like the service, and ending when the service's master does."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from runner.configuration.config import Config


def fork_companion(config: Config, main: Callable[[], None]) -> int:
    """Fork a process that runs `main` and exits; returns its pid to the parent."""
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        from runner.engine.process import die_with_parent
        from runner.eventlog import setup_logging

        die_with_parent(signal.SIGTERM)  # the master is gone: so are we (SIGTERM handlers run)
        setup_logging(config.server.log_format)
        main()
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def signal_companions(pids: list[int]) -> None:
    """SIGTERM to every companion at once: the launcher stops the runs it started, the scheduler
    its jobs, the deliveries worker its attempt, all within the one graceful budget."""
    import contextlib

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def wait_companions(pids: list[int], deadline: float) -> list[int]:
    """Reap the companions until they have all ended or `deadline` (time.monotonic) passes;
    the pids still alive then."""
    import time

    alive = list(pids)
    while alive:
        for pid in list(alive):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                alive.remove(pid)
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return alive
