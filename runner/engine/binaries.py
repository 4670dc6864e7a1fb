"""The external tools: find them, ask their versions, probe a repository (never `init`)."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from security.masking import redact_text

_VERSION = re.compile(r"v?(\d+\.\d+\.\d+)")


@dataclass(frozen=True, slots=True)
class ToolInfo:
    binary: str
    path: str | None
    version: str | None  # "0.18.0"
    banner: str | None  # the first line the tool printed
    error: str | None = None


def tool_info(binary: str) -> ToolInfo:
    path = shutil.which(binary)
    if path is None:
        return ToolInfo(binary, None, None, None, f"{binary}: not found on PATH")
    try:
        done = subprocess.run([path, "version"], capture_output=True, timeout=20, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ToolInfo(binary, path, None, None, f"{binary}: cannot run: {exc}")
    banner = done.stdout.decode("utf-8", "replace").strip().splitlines()[:1]
    match = _VERSION.search(banner[0]) if banner else None
    if done.returncode != 0 or not match:
        return ToolInfo(binary, path, None, banner[0] if banner else None,
                        f"{binary}: 'version' exited {done.returncode}")
    return ToolInfo(binary, path, match.group(1), banner[0])


RETRY_LOCK_SINCE = (0, 16, 0)


@functools.lru_cache(maxsize=8)
def supports_retry_lock(binary: str) -> bool:
    """Whether this restic has `--retry-lock` (0.16 and later); asked once per process."""
    version = tool_info(binary).version
    return version is not None and tuple(int(x) for x in version.split(".")) >= RETRY_LOCK_SINCE


@dataclass(frozen=True, slots=True)
class RepositoryProbe:
    status: str  # "ok" | "missing" | "wrong-password" | "locked" | "error"
    exit_code: int | None
    message: str


# restic < 0.17 exits 1 for every failure to open a repository, and prints "Is there a
# repository at the following location?" after a refused connection too. "Missing" is decided
# on the error itself: the config file could not be opened *because it does not exist*
# (a local "no such file or directory", a REST/S3/B2 "does not exist" / 404 / NoSuchKey), and
# nothing in it speaks of the network. Paths and URLs are left out of both checks: a repository
# at /backups/pytest-403/ or /srv/timeout/ says nothing about the network.
_CONFIG_ERROR = "unable to open config file"
_NOT_EXIST = ("no such file or directory", "does not exist", "404", "NoSuchKey",
              "The specified key does not exist")
_NETWORK = ("connection refused", "dial tcp", "i/o timeout", "no such host", "timeout",
            "connection reset", "EOF", "TLS", "x509", "certificate", "403", "401", "500",
            "502", "503", "504", "permission denied", "access denied")


def _says_missing(fatal: str, repository: str | None = None) -> bool:
    """Whether restic's `Fatal:` line says the repository does not exist."""
    if repository:
        fatal = fatal.replace(repository, " ")
    words = " ".join(word for word in fatal.split() if "/" not in word)  # paths, URLs
    return (_CONFIG_ERROR in words and any(t in words for t in _NOT_EXIST)
            and not any(t.lower() in words.lower() for t in _NETWORK))


def probe_repository(binary: str, env: Mapping[str, str], timeout: float = 120) -> RepositoryProbe:
    """`restic cat config`: is the repository there and does the password open it?"""
    try:
        done = subprocess.run([binary, "cat", "config", "--no-lock"], env=dict(env),
                              capture_output=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return RepositoryProbe("error", None, redact_text(f"cannot run restic: {exc}"))
    stderr = redact_text(done.stderr.decode("utf-8", "replace")).strip()
    # the reason: restic's "Fatal:" line, not the location it prints last ("Is there a
    # repository at the following location?\n<location>")
    fatal = next((line for line in stderr.splitlines() if line.startswith("Fatal:")), "")
    reason = fatal or (stderr.splitlines()[-1] if stderr else "")
    code = done.returncode
    if code == 0:
        return RepositoryProbe("ok", 0, "repository opened")
    if code == 10 or (code == 1 and _says_missing(fatal, env.get("RESTIC_REPOSITORY"))):
        return RepositoryProbe("missing", code, "no repository at this location (restic init "
                                                "creates one; restic-runner never does here)")
    if code == 12 or "wrong password" in stderr:
        return RepositoryProbe("wrong-password", code, "wrong password or no key found")
    if code == 11 or "already locked" in stderr:
        return RepositoryProbe("locked", code, "repository is locked")
    return RepositoryProbe("error", code, reason or f"restic exited {code}")
