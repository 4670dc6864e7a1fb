"""Reading a run's log for the API: never through a symlink, never more than a block in memory
(a verbose backup's log can be hundreds of MB), masked again on the way out (the log was masked
when written, but a secret registered since, or a file put there by someone else, is not)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

BLOCK = 64 * 1024
MAX_TAIL_LINES = 100_000


class NotARegularFile(Exception):
    """The log's path is a symlink, a directory, a FIFO...: not served."""


def open_log(path: Path) -> int | None:
    """A read-only descriptor of the log file, or None when there is none.
    O_NOFOLLOW: a symlink put in its place is refused, not followed; O_NONBLOCK: a FIFO does not
    hang the worker."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotARegularFile() from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFile()
    return fd


def tail_offset(fd: int, lines: int) -> int:
    """Where the last `lines` lines of the file start (read backwards, a block at a time)."""
    end = os.fstat(fd).st_size
    position, seen = end, 0
    if end and os.pread(fd, 1, end - 1) == b"\n":
        seen = -1  # the file's final newline ends the last line, it does not start one
    while position > 0:
        start = max(0, position - BLOCK)
        block = os.pread(fd, position - start, start)
        index = len(block)
        while True:
            index = block.rfind(b"\n", 0, index)
            if index < 0:
                break
            seen += 1
            if seen == lines:
                return start + index + 1
        position = start
    return 0


def masked_chunks(fd: int, offset: int = 0) -> Iterator[bytes]:
    """The file from `offset`, masked, a block at a time; closes `fd` at the end."""
    from security.masking import REGISTRY

    redactor = REGISTRY.stream()
    try:
        while block := os.pread(fd, BLOCK, offset):
            offset += len(block)
            if out := redactor.feed(block):
                yield out
        if rest := redactor.flush():
            yield rest
    finally:
        os.close(fd)


class LogStream:
    """A response body: the masked file from `offset`, then `on_close` once, however the
    response ends (read to its end, cut off, or never started: WSGI servers call `close`)."""

    def __init__(self, fd: int, offset: int, on_close: Callable[[], None]) -> None:
        self._chunks = masked_chunks(fd, offset)
        self._fd = fd
        self._on_close: Callable[[], None] | None = on_close

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._chunks.close()
        with suppress(OSError):
            os.close(self._fd)  # if the generator never started, it did not close it
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()
