"""Child processes: forking one that runs a function and whose failure, however early, is
logged with its reason; and stopping children (SIGTERM, reap, wait, bounded). Used by `serve`
for its companions (launcher, deliveries worker, scheduler), by the scheduler for its runs and
by the launcher for its supervisors."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from runner.configuration.config import Config

log = logging.getLogger("restic_runner")


def exit_after(main: Callable[[], None], what: str) -> NoReturn:
    """In a forked child: run `main`, then exit. An error a user can act on is logged as one
    line with its reason and exits 2; anything else is logged with its (masked) traceback and
    exits 1. Never returns: the parent's code must not go on in the child."""
    from security.errors import UserError
    from security.masking import redact_text

    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except UserError as exc:
        log.error("%s: %s", what, redact_text(str(exc)))
        code = exc.exit_code
    except BaseException:
        import traceback

        log.error("%s failed: %s", what, redact_text(traceback.format_exc().rstrip()))
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def fork_companion(config: Config, main: Callable[[], None], what: str) -> int:
    """Fork a companion of `serve` that runs `main` and exits; returns its pid to the parent.
    Forked before gunicorn's workers (no SQLite handle is open yet), logging like the service,
    and ending when the service's master does."""
    pid = os.fork()
    if pid:
        return pid

    def companion() -> None:
        from runner.engine.process import die_with_parent
        from runner.eventlog import setup_logging

        die_with_parent(signal.SIGTERM)  # the master is gone: so are we (SIGTERM handlers run)
        setup_logging(config.server.log_format)
        main()

    exit_after(companion, what)


def signal_children(pids: Iterable[int]) -> None:
    """SIGTERM to every one at once: a run's supervisor passes SIGINT to restic (which removes
    its repository lock) and records the run `cancelled`; a companion stops what it does."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def ended(pids: Iterable[int]) -> set[int]:
    """Those of `pids` that have ended: reaped now when they are our children, gone from the
    system when they are not (a supervisor reparented to a subreaper)."""
    from runner.engine.locks import process_exists

    done = set()
    for pid in pids:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                done.add(pid)
        except ChildProcessError:
            if not process_exists(pid):
                done.add(pid)
    return done


def wait_children(pids: Iterable[int], deadline: float) -> set[int]:
    """Wait until every one has ended or `deadline` (time.monotonic) passes; those still alive."""
    alive = set(pids)
    while alive:
        alive -= ended(alive)
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return alive


def stop_children(pids: Iterable[int], timeout: float) -> set[int]:
    """SIGTERM, then wait at most `timeout` seconds; those still alive."""
    pids = set(pids)
    signal_children(pids)
    return wait_children(pids, time.monotonic() + timeout)
