"""Service logs: one line per event on stdout, as text or JSON lines (`[server] log_format`),
for container log collectors. Every line is masked, whatever logged it (gunicorn, Flask, the
scheduler, the deliveries worker)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from security.controlchars import printable
from security.masking import redact_text

TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


class MaskedText(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT, "%Y-%m-%dT%H:%M:%S%z")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """One event, one line: a newline or ESC in a message (a label value, a receiver's
        answer) is written as JSON writes it (`\\n`, `\\u001b`), never as a forged line of its
        own. A traceback, added after, keeps its lines."""
        record.message = printable(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class JsonLines(logging.Formatter):
    """`{"time", "level", "logger", "pid", "message"[, "exception"]}`, one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return redact_text(json.dumps(doc, ensure_ascii=False))


def formatter(log_format: str) -> logging.Formatter:
    return JsonLines() if log_format == "json" else MaskedText()


def setup_logging(log_format: str, *, level: int = logging.INFO) -> None:
    """Route the root logger (and so every `restic_runner.*` and Flask logger) to stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
