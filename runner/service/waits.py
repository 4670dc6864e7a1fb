"""Bounded long requests: a `?wait=` long-poll or a streamed run log holds a worker thread for
as long as it lasts, so each worker process lets a client hold at most `[server]
max_waits_per_client` of them, and all clients together at most half its threads. The rest of
the threads stay free for `/healthz`, `/readyz` and other clients; a wait over either cap is
answered at once, as if no wait had been asked for, and a log over a cap gets `429`."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class WaitSlots:
    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total  # 0: no long requests at all (a worker with one thread)
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def try_acquire(self, client: str) -> bool:
        """Take a slot for `client` if both caps allow; `release` gives it back."""
        with self._lock:
            if self._held[client] >= self.per_client or self._held.total() >= self.total:
                return False
            self._held[client] += 1
            return True

    def release(self, client: str) -> None:
        with self._lock:
            self._held[client] -= 1
            if not self._held[client]:
                del self._held[client]

    @contextmanager
    def slot(self, client: str) -> Iterator[bool]:
        """Yields whether `client` may wait now; the slot is given back on leaving."""
        granted = self.try_acquire(client)
        try:
            yield granted
        finally:
            if granted:
                self.release(client)
