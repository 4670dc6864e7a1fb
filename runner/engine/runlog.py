"""The run log: tool output and the runner's own notes, masked, in one file per run.

Output goes stream → redactor → whole lines → parser (which drops restic's status lines, the
progress the record keeps instead) → file. The last lines are kept in memory for `log_tail`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO

from runner.engine.jobs.output import OutputParser
from runner.fsutil import open_private_file
from security.masking import REGISTRY, StreamRedactor

TAIL_BYTES = 16384
TAIL_LINES = 40
MAX_LINE = 1 << 20  # a "line" longer than this is written in pieces


class RunLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._tail = bytearray()
        # The first write that failed (a full disk, or a log path that is a symlink or not a
        # regular file, refused): the run goes on (restic's repository is elsewhere), the tail
        # stays in memory, and the record says the log is incomplete.
        self.write_error: OSError | None = None
        self._file: BinaryIO | None = None
        try:
            fd = open_private_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            self._file = os.fdopen(fd, "ab")
        except OSError as exc:
            self.write_error = exc

    def write(self, data: bytes) -> None:
        if data:
            try:
                if self._file is not None:
                    self._file.write(data)
                    self._file.flush()
            except OSError as exc:
                self.write_error = self.write_error or exc
            self._tail += data
            if len(self._tail) > 2 * TAIL_BYTES:
                del self._tail[:-TAIL_BYTES]

    def note(self, message: str) -> None:
        """A line of the runner's own, timestamped and masked."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.write(REGISTRY.redact(f"{stamp} restic-runner: {message}\n".encode()))

    def pipes(self, parser: OutputParser) -> dict[str, StreamPipe]:
        return {name: StreamPipe(self, parser, name) for name in ("stdout", "stderr")}

    def tail(self, lines: int = TAIL_LINES, limit: int = 4000) -> str:
        text = bytes(self._tail[-TAIL_BYTES:]).decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])[-limit:]

    def close(self) -> None:
        try:
            if self._file is not None:
                self._file.close()
        except OSError as exc:  # the buffer's last flush, on a full disk
            self.write_error = self.write_error or exc

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamPipe:
    """One output stream of one process: masked, cut into whole lines, parsed, logged."""

    def __init__(self, log: RunLog, parser: OutputParser, name: str) -> None:
        self.log, self.parser, self.name = log, parser, name
        self.redactor: StreamRedactor = REGISTRY.stream()
        self.pending = b""

    def feed(self, data: bytes) -> None:
        buf = self.pending + self.redactor.feed(data)
        cut = buf.rfind(b"\n") + 1
        if cut == 0 and len(buf) < MAX_LINE:
            self.pending = buf
            return
        cut = cut or len(buf)
        self.pending = buf[cut:]
        self.log.write(self.parser.feed(buf[:cut], self.name))

    def close(self) -> None:
        rest = self.pending + self.redactor.flush()
        self.pending = b""
        if rest:
            if not rest.endswith(b"\n"):
                rest += b"\n"
            self.log.write(self.parser.feed(rest, self.name))
