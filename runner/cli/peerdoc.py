"""`last-<command>.json` of the compat commands that run no job (`init-repo`, `notify-test`,
`sources-report`; docs/compat-commands.md): restic-backup-helper's document for them, with its
field names and types (its extras are JSON strings), written where it wrote it
(`compat_log_dir`) and in `state_dir`, masked like every other output."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner import __version__
from runner.configuration.config import Config
from security.masking import redact_text

COMPAT_LOG_MODE = 0o644  # as the engine's copies there (runner.engine.compatlogs)


def on_off(value: object) -> str:
    """The helper's switches: ON or OFF."""
    return "ON" if value else "OFF"


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def peer_document(config: Config, command: str, exit_code: int, started: float,
                  extras: Mapping[str, object], details: Mapping[str, Any] | None = None,
                  finished: float | None = None) -> dict[str, Any]:
    """The document: the common fields, `extras` as strings, `exit_code`, then `details`
    (nested values the helper appended after its flat fields)."""
    ended = time.time() if finished is None else finished
    return {"job": command, "hostname": config.hostname, "release": __version__,
            "started_at": _stamp(started), "finished_at": _stamp(ended),
            "duration_seconds": int(ended - started), "started_epoch": int(started),
            "finished_epoch": int(ended), **{k: _text(v) for k, v in extras.items()},
            "exit_code": exit_code, **(details or {})}


def write_peer_document(config: Config, document: Mapping[str, Any]) -> list[str]:
    """Write `last-<job>.json` to `state_dir` (0600) and `compat_log_dir` (0644, when set);
    the problems, in words (a write that fails never changes the command's exit code)."""
    from runner.fsutil import atomic_write, private_dir

    data = (redact_text(json.dumps(document, indent=2)) + "\n").encode()
    name = f"last-{document['job']}.json"
    problems = []
    places: list[tuple[Path, int]] = [(config.state_dir, 0o600)]
    if config.compat_log_dir is not None:
        places.append((config.compat_log_dir, COMPAT_LOG_MODE))
    for directory, mode in places:
        try:
            if mode == COMPAT_LOG_MODE:
                os.makedirs(directory, exist_ok=True)
            else:
                private_dir(directory)
            atomic_write(directory / name, data, mode=mode)
        except OSError as exc:
            problems.append(f"{directory / name}: {exc.strerror or exc}")
    return problems
