"""Reading restic's and rclone's JSON output: stats, live progress and error lines.

The output path is hot (a verbose backup prints hundreds of MB), so parsers look at whole blocks
of complete lines and split only when a block holds a line they care about. Numbers come from an
explicit list of fields, never from "anything that looks numeric". What the tools print as JSON
is logged as their own text (runner.engine.jobs.humantext): restic's summary lines, not its JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

from runner.engine.jobs.humantext import (
    backup_summary,
    check_summary,
    error_line,
    forget_groups,
    printable,
    rclone_line,
    restore_summary,
)

_STATUS = b'{"message_type":"status"'
_SUMMARY = b'"message_type":"summary"'
_ERROR = b'"message_type":"error"'
_EXIT_ERROR = b'"message_type":"exit_error"'
_VERBOSE = b'{"message_type":"verbose_status"'
_ERROR_PREFIXES = ("Fatal:", "Warning:", "ERROR", "error", "unable to")

BACKUP_STATS = ("snapshot_id", "files_new", "files_changed", "files_unmodified", "dirs_new",
                "dirs_changed", "dirs_unmodified", "data_blobs", "tree_blobs", "data_added",
                "data_added_packed", "total_files_processed", "total_bytes_processed",
                "total_duration")
_BACKUP_NUMBERS = BACKUP_STATS[1:]  # snapshot_id is a string, whatever a damaged line says
PROGRESS_FIELDS = ("percent_done", "files_done", "total_files", "bytes_done", "total_bytes",
                   "seconds_elapsed", "seconds_remaining", "error_count")
RCLONE_STATS = {"bytes": "transferred_bytes", "transfers": "transfers", "checks": "checks",
                "deletes": "deletes", "renames": "renames", "errors": "errors",
                "totalBytes": "total_bytes", "totalTransfers": "total_transfers",
                "elapsedTime": "elapsed_seconds", "serverSideCopies": "server_side_copies"}


def _loads(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: a line nested thousands deep
        return None


def _is_number(value: object) -> bool:
    """A JSON number we keep as a stat: not a bool (an int to Python), not NaN or Infinity
    (which json.loads accepts)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _numbers(source: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {n: source[n] for n in names if _is_number(source.get(n))}


def _count(value: object) -> int:
    return len(value) if isinstance(value, list) else 0


class OutputParser:
    """Base: logs everything, understands nothing. Subclasses pick out what they know."""

    markers: tuple[bytes, ...] = ()

    max_errors = 5

    def __init__(self) -> None:
        self.stats: dict[str, Any] = {}
        self.errors: list[str] = []

    @property
    def error(self) -> str | None:
        """The run's error text: the first few distinct error messages the tool printed."""
        return "; ".join(self.errors)[:1000] or None

    def add_error(self, message: str) -> None:
        """Remember one error message of the tool's, on one line without control characters
        (it becomes the record's `error`: the CLI prints it, notifications send it)."""
        message = printable(message.strip())
        if message and message not in self.errors and len(self.errors) < self.max_errors:
            self.errors.append(message[:500])

    def feed(self, block: bytes, stream: str) -> bytes:
        """Take a block of complete lines; return the part that belongs in the run log."""
        block = self.drop_progress(block)
        if not any(m in block for m in self.markers):
            self._note_plain(block, stream)
            return block
        return b"".join(self.line(line, stream) for line in block.splitlines(keepends=True))

    def drop_progress(self, block: bytes) -> bytes:
        """Take progress lines out of a block (they are kept as progress, not logged)."""
        return block

    def line(self, line: bytes, stream: str) -> bytes:
        """Handle one line of a block holding a marker; return what to log in its place."""
        self._note_plain(line, stream)
        return line

    def _note_plain(self, block: bytes, stream: str) -> None:
        """Text lines on stderr that say what went wrong (restic 0.14 prints no JSON errors)."""
        if stream != "stderr":
            return
        for raw in block.splitlines():
            text = raw.decode("utf-8", "replace").strip()
            if text.startswith(_ERROR_PREFIXES) or " error" in text:
                self.add_error(text)

    def progress(self) -> dict[str, Any] | None:
        return None

    def finish(self, exit_code: int) -> None:
        """Called once the process ended."""


class ResticOutput(OutputParser):
    """`restic <cmd> --json`: status lines become progress, not log; errors are remembered."""

    markers = (_SUMMARY, _ERROR, _EXIT_ERROR)

    def __init__(self) -> None:
        super().__init__()
        self._last_status: bytes | None = None
        self.summary: dict[str, Any] | None = None

    def drop_progress(self, block: bytes) -> bytes:
        """Cut status lines out with find(), not a split: they come every few KB of a verbose
        backup, and splitting every block into lines would halve the output path's speed."""
        start = block.find(_STATUS)
        if start < 0:
            return block
        kept, pos = [], 0
        while start >= 0:
            end = block.find(b"\n", start) + 1 or len(block)
            if start == 0 or block[start - 1] == 0x0A:  # only at the start of a line
                kept.append(block[pos:start])
                self._last_status = block[start:end]
                pos = end
            start = block.find(_STATUS, end)
        kept.append(block[pos:])
        return b"".join(kept)

    def line(self, line: bytes, stream: str) -> bytes:
        if _SUMMARY in line:
            doc = _loads(line)
            if isinstance(doc, dict):
                self.summary = doc
                self.on_summary(doc)
                text = self.summary_text(doc)
                return line if text is None else text.encode()
        elif _ERROR in line or _EXIT_ERROR in line:
            doc = _loads(line)
            if isinstance(doc, dict):
                message = _error_text(doc)
                self.add_error(message)
                return error_line(doc, message).encode()
        else:
            self._note_plain(line, stream)
        return line

    def on_summary(self, doc: dict[str, Any]) -> None:
        """Subclasses turn the summary into stats."""

    def summary_text(self, doc: dict[str, Any]) -> str | None:
        """What restic's text output says in place of the summary (subclasses know theirs; a
        restore's is known here, for every job that restores; None: logged as it came)."""
        return restore_summary(doc) if "files_restored" in doc else None

    def progress(self) -> dict[str, Any] | None:
        doc = _loads(self._last_status) if self._last_status else None
        return _numbers(doc, PROGRESS_FIELDS) if isinstance(doc, dict) else None


def _error_text(doc: dict[str, Any]) -> str:
    """restic 0.18: {"message": …}; 0.14: {"error": {"Op", "Path", "Err"}} or a plain string."""
    error = doc.get("error")
    if doc.get("message_type") == "exit_error":
        return str(doc.get("message", ""))
    if isinstance(error, dict):
        if "message" in error:
            return str(error["message"])
        return f"{error.get('Op', 'error')} {error.get('Path', doc.get('item', ''))}: " \
               f"errno {error.get('Err', '?')}"
    return str(error or doc.get("message", ""))


class BackupOutput(ResticOutput):
    """The summary is logged as restic's text. With -v, restic's per-file `verbose_status`
    lines stay its JSON, one line per file: rendering them would mean splitting every block of
    a verbose backup into lines, the hot path this module avoids."""

    def __init__(self) -> None:
        super().__init__()
        self.verbose = False  # -v: the summary also says the blob counts, as restic -v does

    def drop_progress(self, block: bytes) -> bytes:
        if not self.verbose and _VERBOSE in block:
            self.verbose = True
        return super().drop_progress(block)

    def summary_text(self, doc: dict[str, Any]) -> str:
        return backup_summary(doc, self.verbose)

    def on_summary(self, doc: dict[str, Any]) -> None:
        stats = _numbers(doc, _BACKUP_NUMBERS)
        if stats.get("total_duration", 0) < 0:  # 0.18 --skip-if-unchanged quirk
            del stats["total_duration"]
        if isinstance(doc.get("snapshot_id"), str):
            stats["snapshot_id"] = doc["snapshot_id"]
        self.stats = stats


class CheckOutput(ResticOutput):
    """0.18 prints a JSON summary; 0.14 prints text, so a clean exit means zero errors."""

    def on_summary(self, doc: dict[str, Any]) -> None:
        if _is_number(doc.get("num_errors")):
            self.stats["errors_found"] = doc["num_errors"]
        broken = doc.get("broken_packs")
        if isinstance(broken, list):
            self.stats["broken_packs"] = len(broken)

    def summary_text(self, doc: dict[str, Any]) -> str:
        return check_summary(doc)

    def finish(self, exit_code: int) -> None:
        if exit_code == 0 and "errors_found" not in self.stats:
            self.stats["errors_found"] = 0


class ForgetOutput(ResticOutput):
    """`forget --json` prints one JSON array of groups; with --prune, text follows it."""

    def __init__(self) -> None:
        super().__init__()
        self.markers = (*ResticOutput.markers, b"[")
        self._groups_seen = False

    def line(self, line: bytes, stream: str) -> bytes:
        if stream == "stdout" and not self._groups_seen and line.startswith(b"["):
            groups = _loads(line)
            if isinstance(groups, list):
                self._groups_seen = True
                kept = removed = 0
                for group in groups:
                    if isinstance(group, dict):
                        kept += _count(group.get("keep"))
                        removed += _count(group.get("remove"))
                self.stats = {"snapshots_kept": kept, "snapshots_removed": removed,
                              "groups": len(groups)}
                return forget_groups(groups).encode()
        return super().line(line, stream)


class RcloneOutput(OutputParser):
    """rclone with --use-json-log: periodic and final `stats` objects on stderr."""

    # every line is looked at alone, so what is noted never depends on how the output was cut
    # into blocks (rclone prints little)
    markers = (b"",)

    def __init__(self) -> None:
        super().__init__()
        self._stats: dict[str, Any] | None = None

    def line(self, line: bytes, stream: str) -> bytes:
        doc = _loads(line) if line.lstrip().startswith(b"{") else None
        if not isinstance(doc, dict):  # a text line: looked at the same wherever it fell
            self._note_plain(line, stream)
            return line
        if isinstance(doc.get("stats"), dict):
            self._stats = doc["stats"]
            self.stats = {new: self._stats[old] for old, new in RCLONE_STATS.items()
                          if _is_number(self._stats.get(old))}
        if doc.get("level") == "error":
            self.add_error(str(doc.get("msg", "")))
        return rclone_line(doc).encode()

    def progress(self) -> dict[str, Any] | None:
        if not self._stats:
            return None
        s = {k: v for k, v in self._stats.items() if _is_number(v)}
        total = s.get("totalBytes") or 0
        done = s.get("bytes") or 0
        return {"bytes_done": done, "total_bytes": total,
                "percent_done": round(done / total, 4) if total else None,
                "files_done": s.get("transfers"), "total_files": s.get("totalTransfers")}


class RestoreTestOutput(OutputParser):
    """`python -m runner.engine.jobs.restoretest verify`: one JSON line of stats and a verdict."""

    markers = (b'{"restore_test"',)

    def line(self, line: bytes, stream: str) -> bytes:
        # only a line holding the marker itself: its block is read line by line only when some
        # line in it holds the marker, and what is read must not depend on how blocks fell
        doc = _loads(line) if self.markers[0] in line else None
        if isinstance(doc, dict) and isinstance(doc.get("restore_test"), dict):
            self.stats = dict(doc["restore_test"])
        else:
            self._note_plain(line, stream)
        return line

    def _note_plain(self, block: bytes, stream: str) -> None:
        for raw in block.splitlines():
            text = raw.decode("utf-8", "replace").strip()
            if stream == "stderr" and text.startswith("restore-test error:"):
                self.add_error(text.removeprefix("restore-test error:").strip())
