"""The deliveries worker of `serve`: one process, forked before gunicorn's workers, that retries
every pending delivery when it falls due (whichever process enqueued it, before or after a
restart) and notifies runs found `interrupted`. It exits with its parent."""

from __future__ import annotations

import os
import signal

from runner.config import Config


def start_deliveries_worker(config: Config) -> int | None:
    """Fork the worker; its pid, or None when no target is configured."""
    if not config.notify.any_target:
        return None
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        from notifiers.courier import Courier
        from runner.execute import die_with_parent

        die_with_parent(signal.SIGTERM)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on serve: the master handles it
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        from runner.logs import setup_logging

        setup_logging(config.server.log_format)
        Courier(config).serve_forever()
    except BaseException:
        code = 1
    finally:
        os._exit(code)
