"""Companion processes of `serve`: forked before gunicorn's workers (no SQLite handle is open
yet), logging like the service, and ending when the service's master does."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from runner.config import Config


def fork_companion(config: Config, main: Callable[[], None]) -> int:
    """Fork a process that runs `main` and exits; returns its pid to the parent."""
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        from runner.execute import die_with_parent
        from runner.logs import setup_logging

        die_with_parent(signal.SIGTERM)  # the master is gone: so are we (SIGTERM handlers run)
        setup_logging(config.server.log_format)
        main()
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def stop_companion(pid: int, timeout: float) -> None:
    """SIGTERM a companion (the launcher stops the runs it started, the scheduler its jobs) and
    wait for it to end, bounded."""
    import contextlib
    import time

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout + 5
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.05)
