"""Text that came from outside (a receiver's answer, a Pushgateway label, a file name in restic's
error line) may carry terminal control sequences: ESC to clear a screen, set a window title or
hide the rest of a line, CR to overwrite it, a newline to forge a log line of its own. Before
such text reaches a terminal or a log line, every control character but tab (and, where lines
are meant, newline) is written as a visible `\\xNN` escape."""

from __future__ import annotations

import re

_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0 but tab, DEL, C1
_CONTROLS_BUT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with its control characters shown as `\\xNN` (newlines kept when asked)."""
    pattern = _CONTROLS_BUT_NEWLINE if keep_newlines else _CONTROLS
    return pattern.sub(_escape, text)
