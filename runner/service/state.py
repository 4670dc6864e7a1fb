"""What one worker process of the API shares between its requests: the config, the clients,
the replay and failure stores, and a history connection per thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from flask import current_app

from runner.configuration.config import Config
from runner.engine.history import History
from runner.service.idempotency import IdempotencyStore
from runner.service.waits import WaitSlots
from security.auth import Client, FailureLimiter, SeenIds


@dataclass
class ApiState:
    """What the app shares between requests of one worker process."""

    config: Config
    clients: tuple[Client, ...]
    seen: SeenIds
    limiter: FailureLimiter
    local: threading.local
    waits: WaitSlots

    def history(self) -> History:
        """One SQLite connection per thread (gthread workers serve requests in threads)."""
        if not hasattr(self.local, "history"):
            self.local.history = History(self.config.state_dir)
        return self.local.history

    def idempotency(self) -> IdempotencyStore:
        if not hasattr(self.local, "idempotency"):
            self.local.idempotency = IdempotencyStore(self.config.state_dir / "history.db")
        return self.local.idempotency


def state() -> ApiState:
    return current_app.extensions["restic_runner"]
