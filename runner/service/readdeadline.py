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
from collections import Counter
from collections.abc import Callable
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
        self.release_slow: Callable[[], None] | None = None  # set while counted as slow

    @property
    def expired(self) -> bool:
        return self._state == "expired"

    def disarm(self) -> bool:
        """Stop the clock; False when the deadline had already passed (the request is void)."""
        with self._lock:
            if self._state == "armed":
                self._state = "disarmed"
            disarmed = self._state == "disarmed"
        self._stop_counting()
        return disarmed

    def _stop_counting(self) -> None:
        with self._lock:
            release, self.release_slow = self.release_slow, None
        if release is not None:
            release()

    def expire(self) -> None:
        """Answer 408 and cut the connection, so a thread blocked reading it gets EOF."""
        with self._lock:
            if self._state != "armed":
                return
            self._state = "expired"
        self._stop_counting()
        address = None
        with suppress(OSError, IndexError, TypeError):
            address = self.sock.getpeername()[0]
        with suppress(OSError):  # never block the watchdog on a client that does not read
            self.sock.send(self._answer, socket.MSG_DONTWAIT)
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        from runner.service.refusals import note_refusal

        note_refusal(address, 408, "the request was not read in time")


GRACE = 0.2  # a thread still waiting for its client's bytes after this is a slow read


class ReadDeadlines:
    """The watchdog of one worker process. Besides each request's deadline it bounds *slow
    reads*: a thread that has waited `GRACE` for bytes its client has not sent counts as slow;
    an address group may have `per_group` of them and all together `total` (half the threads);
    a read beyond those is cut at once with the 408. So clients that trickle their requests
    cannot hold the threads `/healthz` and other clients need, even by reconnecting."""

    def __init__(self, timeout: float, answer: bytes, *, per_group: int = 1_000_000,
                 total: int = 1_000_000) -> None:
        self.timeout = timeout
        self._answer = answer
        self.per_group, self.total = per_group, total
        self._slow: Counter[str] = Counter()
        self._heap: list[tuple[float, int, ReadWatch, str | None]] = []
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
            self._push(watch.deadline, watch, None)
        return watch

    def reading_started(self, watch: ReadWatch, group: str) -> None:
        """A thread has begun reading `watch`'s request from a client of `group`."""
        with self._wake:
            self._push(time.monotonic() + GRACE, watch, group)

    def _push(self, when: float, watch: ReadWatch, group: str | None) -> None:
        heapq.heappush(self._heap, (when, next(self._order), watch, group))
        if self._heap[0][2] is watch:
            self._wake.notify()

    def _release(self, group: str) -> None:
        with self._wake:
            self._slow[group] -= 1
            if self._slow[group] <= 0:
                del self._slow[group]

    def _check_slow(self, watch: ReadWatch, group: str, now: float) -> bool:
        """Under the lock: count a read that waits on its client as slow; True to cut it."""
        if watch.release_slow is not None or watch._state != "armed":
            return False
        if _bytes_waiting(watch.sock):  # its thread is busy, not waiting: look again later
            self._push(now + GRACE, watch, group)
            return False
        if self._slow[group] >= self.per_group or self._slow.total() >= self.total:
            return True
        self._slow[group] += 1
        watch.release_slow = lambda: self._release(group)
        return False

    def _watch(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    _, _, watch, group = heapq.heappop(self._heap)
                    if group is None or self._check_slow(watch, group, now):
                        due.append(watch)
                if not due:
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
                    continue
            for watch in due:  # outside the condition: arming never waits on a send
                watch.expire()


def _bytes_waiting(sock: socket.socket) -> bool:
    """Whether the client's bytes wait in the socket, unread by its thread."""
    import fcntl
    import struct
    import termios

    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0] > 0
    except (OSError, ValueError):
        return False


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
