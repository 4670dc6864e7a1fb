"""Reading a run's log for the API: never through a symlink, never more than a block in memory
(a verbose backup's log can be hundreds of MB), masked again on the way out (the log was masked
when written, but a secret registered since, or a file put there by someone else, is not)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

BLOCK = 64 * 1024
MAX_TAIL_LINES = 100_000


def open_log(path: Path) -> int | None:
    """A read-only descriptor of the log file, or None when there is none; a symlink or
    anything but a regular file put in its place raises `runner.fsutil.NotRegularFile`."""
    from runner.fsutil import open_private_file

    try:
        return open_private_file(path, os.O_RDONLY)
    except FileNotFoundError:
        return None


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
