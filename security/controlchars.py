"""Control characters in text that came from outside — a file name or error message of restic's,
a receiver's answer, a Pushgateway label — written as JSON writes them (ESC: `\\u001b`, a
newline: `\\n`, a carriage return: `\\r`) before the text reaches a log, a terminal or the CLI's
output: a name holding a newline must not become a line of its own ("finished: succeeded"), and
an escape must not repaint the terminal of whoever reads it (docs/runs.md, "Control
characters"). In `security/`: the CLI, the notifiers and the engine all need it."""

from __future__ import annotations

import re

# C0, DEL, C1, and the Unicode line and paragraph separators
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {**{c: f"\\u{c:04x}" for c in (*range(0x20), *range(0x7f, 0xa0), 0x2028, 0x2029)},
            0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_KEEP_TABS = {c: e for c, e in _ESCAPES.items() if c != 0x09}


def printable(text: str) -> str:
    """`text` on one line, without control characters: a newline as `\\n`, a tab as `\\t`, a
    carriage return as `\\r`, any other C0 or C1 character (ESC: `\\u001b`) as JSON writes it."""
    return text.translate(_ESCAPES) if _CONTROL.search(text) else text


def printable_lines(text: str) -> str:
    """A text meant as several lines (rclone's stats block, the CLI's output): its line ends and
    tabs stay, every other control character is escaped as `printable` does."""
    return "\n".join(line.translate(_KEEP_TABS) for line in text.split("\n"))
