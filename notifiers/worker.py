"""The deliveries worker of `serve`: one process, forked before gunicorn's workers, that retries
every pending delivery when it falls due (whichever process enqueued it, before or after a
restart) and notifies runs found `interrupted`. It exits with its parent."""

from __future__ import annotations

import os
import signal

from runner.configuration.config import Config


def start_deliveries_worker(config: Config) -> int | None:
    """Fork the worker; its pid, or None when no target is configured."""
    if not config.notify.any_target:
        return None
    from runner.engine.children import fork_companion

    def main() -> None:
        from notifiers.courier import Courier

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on serve: the master handles it
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # leases expire; nothing lost
        Courier(config).serve_forever()

    return fork_companion(config, main, "notifications: the deliveries worker")
