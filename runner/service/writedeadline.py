"""Deadlines for taking an answer. A thread writes an answer to its client; a client that takes
it slowly (a tiny receive window, a byte now and then) holds the thread. An answer still being
written after `GRACE` seconds, with bytes in its socket's send queue that the client has not
taken, is slow (a loaded CPU makes answers late, not slow). Each worker lets an address group
have at most `per_group` slow answers and all groups together at most `total` (half the
threads); beyond those, a slow answer is cut at once, and none may take longer than `budget`
seconds. So slow readers can never hold the threads `/healthz` and other clients need."""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections import Counter
from contextlib import suppress

GRACE = 0.5  # an answer still being written after this is slow


def _waiting_on_client(sock: socket.socket) -> bool:
    """Whether answer bytes sit in the socket's send queue, not yet taken by the client (a
    client that reads promptly empties it within microseconds on any real link)."""
    import fcntl
    import struct
    import termios

    try:
        queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    except (OSError, ValueError):
        return False  # closed meanwhile
    return queued > 0


class WriteWatch:
    """One answer's clock; `done` when the server has finished (or given up) writing it."""

    def __init__(self, sock: socket.socket, group: str) -> None:
        self.sock, self.group = sock, group
        self.slow = False
        self.finished = False


class WriteDeadlines:
    """The watchdog of one worker process."""

    def __init__(self, budget: float, per_group: int, total: int) -> None:
        self.budget, self.per_group, self.total = budget, per_group, total
        self._slow: Counter[str] = Counter()
        self._heap: list[tuple[float, int, WriteWatch]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, sock: socket.socket, group: str) -> WriteWatch:
        watch = WriteWatch(sock, group)
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="write-deadlines",
                                                daemon=True)
                self._thread.start()
            self._push(time.monotonic() + GRACE, watch)
        return watch

    def done(self, watch: WriteWatch) -> None:
        with self._wake:
            watch.finished = True
            if watch.slow:
                watch.slow = False
                self._release(watch.group)

    def _push(self, when: float, watch: WriteWatch) -> None:
        heapq.heappush(self._heap, (when, next(self._order), watch))
        if self._heap[0][2] is watch:
            self._wake.notify()

    def _release(self, group: str) -> None:
        self._slow[group] -= 1
        if self._slow[group] <= 0:
            del self._slow[group]

    def _run(self) -> None:
        while True:
            cut = []
            with self._wake:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    watch = heapq.heappop(self._heap)[2]
                    if watch.finished:
                        continue
                    if not watch.slow and not _waiting_on_client(watch.sock):
                        # not held up by its client (a loaded CPU, a large answer being
                        # made): look again later, it is not slow
                        self._push(now + GRACE, watch)
                        continue
                    if watch.slow:  # its whole budget is spent
                        watch.finished, watch.slow = True, False
                        self._release(watch.group)
                        cut.append(watch)
                    elif (self._slow[watch.group] >= self.per_group
                          or self._slow.total() >= self.total):
                        watch.finished = True
                        cut.append(watch)
                    else:
                        watch.slow = True
                        self._slow[watch.group] += 1
                        self._push(now + self.budget - GRACE, watch)
                if not cut:
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
                    continue
            for watch in cut:  # outside the lock: a shutdown never waits on anything
                with suppress(OSError):
                    watch.sock.shutdown(socket.SHUT_RDWR)
                from runner.service.refusals import note_refusal

                note_refusal(watch.group, 408, "the answer was not taken in time")
