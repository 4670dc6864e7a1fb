"""A deadline for reading a request: its head and body must arrive within `[server]
read_timeout` of the worker taking the connection up (accepted, or back from waiting idle with
data), or it is answered 408 and closed.

gunicorn's gthread worker gives a connection a thread as soon as it sends its first bytes and
then reads the head with no overall limit, so clients that trickle header lines (slowloris)
could hold every thread. One watchdog thread per worker process keeps the deadlines; the worker
arms one when it queues a connection, and the API disarms it once the request is read
(`request_read`), before any handler runs. A request whose deadline passed first is refused
by both sides: the watchdog answers 408, and `request_read` says so, so nothing it asked for
is done.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from contextlib import suppress

_current = threading.local()  # the watch of the request this worker thread is reading


class ReadWatch:
    """One request's deadline. Exactly one of `disarm` and `expire` wins."""

    def __init__(self, sock: socket.socket, deadline: float, answer: bytes) -> None:
        self.sock = sock
        self.deadline = deadline
        self._answer = answer
        self._lock = threading.Lock()
        self._state = "armed"

    @property
    def expired(self) -> bool:
        return self._state == "expired"

    def disarm(self) -> bool:
        """Stop the clock; False when the deadline had already passed (the request is void)."""
        with self._lock:
            if self._state == "armed":
                self._state = "disarmed"
            return self._state == "disarmed"

    def expire(self) -> None:
        """Answer 408 and cut the connection, so a thread blocked reading it gets EOF."""
        with self._lock:
            if self._state != "armed":
                return
            self._state = "expired"
        address = None
        with suppress(OSError, IndexError, TypeError):
            address = self.sock.getpeername()[0]
        with suppress(OSError):  # never block the watchdog on a client that does not read
            self.sock.send(self._answer, socket.MSG_DONTWAIT)
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        from runner.refusals import note_refusal

        note_refusal(address, 408, "the request was not read in time")


class ReadDeadlines:
    """The watchdog of one worker process."""

    def __init__(self, timeout: float, answer: bytes) -> None:
        self.timeout = timeout
        self._answer = answer
        self._heap: list[tuple[float, int, ReadWatch]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, sock: socket.socket) -> ReadWatch:
        watch = ReadWatch(sock, time.monotonic() + self.timeout, self._answer)
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="read-deadlines",
                                                daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            if self._heap[0][2] is watch:
                self._wake.notify()
        return watch

    def _watch(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                if not due:
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
                    continue
            for watch in due:  # outside the condition: arming never waits on a send
                watch.expire()


def reading(watch: ReadWatch | None) -> None:
    """This thread now reads the request `watch` guards (None: no deadline)."""
    _current.watch = watch


def request_read() -> bool:
    """The request is read: stop its clock. False when its deadline passed first."""
    watch: ReadWatch | None = getattr(_current, "watch", None)
    _current.watch = None
    return True if watch is None else watch.disarm()


def request_timeout(timeout: float) -> tuple[int, str, str]:
    """The refusal of a request that was not read in time: status, reason, detail."""
    return 408, "Request Timeout", f"the request was not sent within {timeout:g} s " \
                                   "([server] read_timeout)"
