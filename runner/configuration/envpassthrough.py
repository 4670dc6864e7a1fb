"""Environment mode: the variables restic and rclone read themselves, handed to them as the
restic-backup-helper container's environment handed them (docs/migration.md). Everything else
of the runner's environment stays out of the tools' (runner.engine.childenv); secret values go
through mode-0600 files (`env_files`), so they are registered and masked."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from security.masking import register_variable, secret_variable

# Backend credentials and settings (restic's backends, and rclone's RCLONE_* options).
BACKEND_PREFIXES = ("AWS_", "B2_", "AZURE_", "GOOGLE_", "OS_", "ST_", "RCLONE_")
# restic's own variables (its documentation's "Environment Variables", 0.14 to 0.18), except
# those environment mode maps to settings (RESTIC_REPOSITORY(_FILE), RESTIC_PASSWORD(_FILE),
# RESTIC_CACHE_DIR, RESTIC_CACERT, RESTIC_PROGRESS_FPS).
RESTIC_OWN = frozenset({
    "RESTIC_PASSWORD_COMMAND", "RESTIC_KEY_HINT", "RESTIC_COMPRESSION", "RESTIC_PACK_SIZE",
    "RESTIC_READ_CONCURRENCY", "RESTIC_HOST", "RESTIC_FEATURES", "RESTIC_TLS_CLIENT_CERT",
    "RESTIC_REST_USERNAME", "RESTIC_REST_PASSWORD",
    "RESTIC_FROM_REPOSITORY", "RESTIC_FROM_REPOSITORY_FILE", "RESTIC_FROM_PASSWORD",
    "RESTIC_FROM_PASSWORD_FILE", "RESTIC_FROM_PASSWORD_COMMAND", "RESTIC_FROM_KEY_HINT",
    "GOMAXPROCS", "GODEBUG", "XDG_CACHE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR"})
# Go (restic) and rclone read both spellings
PROXIES = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
                     "http_proxy", "https_proxy", "no_proxy", "all_proxy"})
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_tool_variable(name: str) -> bool:
    return name.startswith(BACKEND_PREFIXES) or name in RESTIC_OWN or name in PROXIES


def is_secret(name: str, value: str) -> bool:
    """The one rule (security.masking.secret_variable): the name says secret (PASSWORD*, KEY,
    TOKEN*, HEADERS, …), or the value carries a `user:password@`."""
    return secret_variable(name, value)


def tool_environment(environ: Mapping[str, str], write_secret: Callable[[str, str], str]
                     ) -> tuple[dict[str, str], dict[str, str]]:
    """The tool variables set (non-empty): plain ones, and secret ones as name -> 0600 file
    (`write_secret(name, value)` writes one and returns its path)."""
    plain: dict[str, str] = {}
    from_files: dict[str, str] = {}
    for name in sorted(environ):
        value = environ[name]
        if not value or not is_tool_variable(name) or not _VARIABLE_NAME.fullmatch(name):
            continue  # no tool reads a name of other characters (nor may it name a file)
        if is_secret(name, value):
            register_variable(name, value)  # the password inside a URL too, raw and decoded
            from_files[name] = write_secret(name, value)
        else:
            plain[name] = value
    return plain, from_files
