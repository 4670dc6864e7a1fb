"""`/readyz`: can this service run jobs right now? Named checks, cached briefly."""

from __future__ import annotations

import os
import time
from typing import Any

from runner.checks import Check
from runner.configuration.config import Config
from runner.engine.binaries import tool_info

CACHE_SECONDS = 30.0
_cache: dict[str, tuple[float, Check]] = {}


def _binary_check(binary: str) -> Check:
    hit = _cache.get(binary)
    if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    info = tool_info(binary)
    check = Check.of(f"binary:{binary}", info.error is None, info.error or info.banner)
    _cache[binary] = (time.monotonic(), check)
    return check


def readiness(config: Config) -> list[dict[str, Any]]:
    """The checks as /readyz answers them: `name`, `ok`, `detail`."""
    checks = [Check.of("config", True, f"{len(config.jobs)} job(s) loaded")]
    needed = {j.restic.binary if j.uses_restic else j.rclone.binary for j in config.jobs.values()}
    checks += [_binary_check(b) for b in sorted(needed)]
    from runner.service.launcher import launcher_socket_path

    sock = launcher_socket_path(config).is_socket()
    checks.append(Check.of("launcher", sock, "accepting runs" if sock else "not running"))
    writable = os.access(config.state_dir, os.W_OK)
    checks.append(Check.of("state_dir", writable, "writable" if writable else "not writable"))
    return [{"name": c.name, "ok": c.ok, "detail": c.message} for c in checks]
