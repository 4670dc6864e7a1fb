"""Bounded long-polls: a `?wait=` holds a worker thread, so each worker process lets a client hold
at most `[server] max_waits_per_client` of them, and all clients together at most half its
threads. The rest of the threads stay free for `/healthz`, `/readyz` and other clients; a wait
over either cap is answered at once, as if no wait had been asked for."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class WaitSlots:
    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total  # 0: no waits at all (a worker with one thread)
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, client: str) -> Iterator[bool]:
        """Yields whether `client` may wait now; the slot is given back on leaving."""
        with self._lock:
            granted = (self._held[client] < self.per_client
                       and sum(self._held.values()) < self.total)
            if granted:
                self._held[client] += 1
        try:
            yield granted
        finally:
            if granted:
                with self._lock:
                    self._held[client] -= 1
                    if not self._held[client]:
                        del self._held[client]
