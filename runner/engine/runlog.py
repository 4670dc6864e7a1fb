"""The run log: tool output and the runner's own notes, masked, in one file per run.

Output goes stream → redactor → whole lines → parser (which drops restic's status lines, the
progress the record keeps instead) → control characters escaped → file. The last lines are kept
in memory for `log_tail`.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import BinaryIO

from runner.engine.jobs.output import OutputParser
from runner.fsutil import open_private_file
from security.controlchars import printable
from security.masking import REGISTRY, StreamRedactor

TAIL_BYTES = 16384
TAIL_LINES = 40
MAX_LINE = 1 << 20  # a "line" longer than this is written in pieces

# What the tools print as text (restic's plain lines, rclone's, the hooks') keeps its tabs and
# line ends, but no other control character reaches the log raw: a terminal escape in a file
# name, a carriage return that hides the start of a line, a C1 CSI (UTF-8 C2 9B). A block is
# looked at closely only when it holds one of these bytes (C2 and E2 start many ordinary
# characters too); `translate` screens a block at over 1 GB/s, the close look at ~60 MB/s.
_SCREEN = bytes([*range(0x09), *range(0x0B, 0x20), 0x7F, 0xC2, 0xE2])
_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]")


# A line of a tool's (or hook's) that reads like one of the runner's own notes: a file name
# holding a newline in restic's plain text ("<name> does not exist, skipping") can start one,
# and escaping cannot tell that newline from a line end. Such a line is marked.
_LIKE_A_NOTE = re.compile(rb"(?m)^(?=[^\n]{0,64}?(?<!\S)restic-runner: )")
NOT_OURS = b"[tool output] "


def tool_text(block: bytes) -> bytes:
    """What a tool printed, as the run log takes it: control characters escaped, and a line
    that reads like a note of the runner's marked `[tool output]`."""
    block = escape_controls(block)
    return _LIKE_A_NOTE.sub(NOT_OURS, block) if b"restic-runner: " in block else block


def escape_controls(block: bytes) -> bytes:
    """`block` with every control character but tab and newline written as
    `humantext.printable` writes it (ESC: `\\u001b`, CR: `\\r`, U+009B: `\\u009b`)."""
    if len(block.translate(None, _SCREEN)) == len(block):
        return block
    return _CONTROL.sub(lambda m: printable(m.group().decode()).encode(), block)


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
        line = f"{stamp} restic-runner: {message}\n".encode()
        # masked first (a secret is registered as it is), then on one line
        self.write(escape_controls(REGISTRY.redact(line)[:-1].replace(b"\n", b"\\n")) + b"\n")

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
        self.log.write(tool_text(self.parser.feed(buf[:cut], self.name)))

    def close(self) -> None:
        rest = self.pending + self.redactor.flush()
        self.pending = b""
        if rest:
            if not rest.endswith(b"\n"):
                rest += b"\n"
            self.log.write(tool_text(self.parser.feed(rest, self.name)))
