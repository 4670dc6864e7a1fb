"""Environment mode: the variables restic and rclone read themselves, handed to them as the
restic-backup-helper container's environment handed them (docs/migration.md). Everything else
of the runner's environment stays out of the tools' (runner.engine.childenv); secret values go
through mode-0600 files (`env_files`), so they are registered and masked."""

from __future__ import annotations

from collections.abc import Callable, Mapping

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
SECRET_WORDS = frozenset({"SECRET", "KEY", "TOKEN", "PASSWORD", "PASS", "SAS", "CREDENTIALS"})
# not secrets although a word says so (a hint names a key, it is not one)
NOT_SECRET = frozenset({"RESTIC_KEY_HINT", "RESTIC_FROM_KEY_HINT", "RESTIC_PASSWORD_COMMAND",
                        "RESTIC_FROM_PASSWORD_COMMAND", "RESTIC_FROM_PASSWORD_FILE",
                        "AWS_SHARED_CREDENTIALS_FILE", "GOOGLE_APPLICATION_CREDENTIALS"})
# the URL may hold a password
URL_SECRETS = frozenset({"RESTIC_FROM_REPOSITORY"})


def is_tool_variable(name: str) -> bool:
    return name.startswith(BACKEND_PREFIXES) or name in RESTIC_OWN or name in PROXIES


def is_secret(name: str, value: str) -> bool:
    if name in NOT_SECRET:
        return False
    if name in PROXIES or name in URL_SECRETS:
        return "@" in value  # user:password@host
    return bool(SECRET_WORDS & set(name.split("_")))


def tool_environment(environ: Mapping[str, str], write_secret: Callable[[str, str], str]
                     ) -> tuple[dict[str, str], dict[str, str]]:
    """The tool variables set (non-empty): plain ones, and secret ones as name -> 0600 file
    (`write_secret(name, value)` writes one and returns its path)."""
    plain: dict[str, str] = {}
    from_files: dict[str, str] = {}
    for name in sorted(environ):
        value = environ[name]
        if not value or not is_tool_variable(name):
            continue
        if is_secret(name, value):
            from_files[name] = write_secret(name, value)
        else:
            plain[name] = value
    return plain, from_files
