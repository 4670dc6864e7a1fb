"""`/readyz`: can this service run jobs right now? Named checks, cached briefly."""

from __future__ import annotations

import os
import time
from typing import Any

from runner.configuration.config import Config
from runner.engine.binaries import tool_info

CACHE_SECONDS = 30.0
_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def _binary_check(binary: str) -> dict[str, Any]:
    hit = _cache.get(binary)
    if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    info = tool_info(binary)
    check = {"name": f"binary:{binary}", "ok": info.error is None,
             "detail": info.error or info.banner}
    _cache[binary] = (time.monotonic(), check)
    return check


def readiness(config: Config) -> list[dict[str, Any]]:
    checks = [{"name": "config", "ok": True, "detail": f"{len(config.jobs)} job(s) loaded"}]
    needed = {j.restic.binary if j.uses_restic else j.rclone.binary for j in config.jobs.values()}
    checks += [_binary_check(b) for b in sorted(needed)]
    from runner.service.launcher import launcher_socket_path

    sock = launcher_socket_path(config)
    checks.append({"name": "launcher", "ok": sock.is_socket(),
                   "detail": "accepting runs" if sock.is_socket() else "not running"})
    writable = os.access(config.state_dir, os.W_OK)
    checks.append({"name": "state_dir", "ok": writable,
                   "detail": "writable" if writable else "not writable"})
    return checks
