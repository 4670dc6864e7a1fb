"""Masking of credentials: the one engine every output of restic-runner goes through.

* `security.urlmask`: pure functions for strings the runner prints about itself
  (`mask_repository`, `mask_endpoint`, `mask_webhook_url`) and `url_password` / `url_secrets`
  so a caller can register the password found in a URL.
* `security.redactor`: a `SecretRegistry` of known secret values and a byte-oriented redactor
  (one-shot `redact` and a `StreamRedactor`) through which all tool output passes.

This module is the public face: the process-wide `REGISTRY` and the functions the rest of the
program uses. Every secret read anywhere is registered here the moment it is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from security.redactor import MASK, MIN_SECRET_LEN, SecretRegistry, StreamRedactor, encoded_forms
from security.urlmask import (
    mask_endpoint,
    mask_repository,
    mask_webhook_url,
    url_password,
    url_secrets,
)

__all__ = [
    "MASK",
    "MIN_SECRET_LEN",
    "REGISTRY",
    "SecretRegistry",
    "StreamRedactor",
    "encoded_forms",
    "mask_endpoint",
    "mask_repository",
    "mask_webhook_url",
    "redact",
    "redact_text",
    "register_environment",
    "register_header_credential",
    "register_secret",
    "register_variable",
    "secret_name",
    "secret_variable",
    "url_password",
    "url_secrets",
]

REGISTRY = SecretRegistry()

# "This variable holds a secret", one rule for environment mode's tool variables (routed through
# 0600 files) and for the variables hooks see with `hook_env = ["*"]` (registered for masking):
# a part of the name (split at `_`) that starts with one of these...
SECRET_PREFIXES = ("PASSWORD", "PASSWD", "SECRET", "CREDENTIAL", "TOKEN", "AUTH", "APIKEY",
                   "PRIVATEKEY", "COOKIE")
# ...or is one of these
SECRET_PARTS = frozenset({"PASS", "PASSPHRASE", "PW", "PWD", "KEY", "KEYS", "SAS", "HEADER",
                          "HEADERS", "ACCESSKEY", "SECRETKEY", "BEARER", "SIGNATURE"})
# a name ending so names a file, a command or a setting about the secret, not the secret
NOT_SECRET_ENDINGS = frozenset({"FILE", "COMMAND", "CMD", "HINT", "URL", "DIR", "PATH", "TYPE",
                                "VERSION", "METHOD", "MODE", "SOCK", "SOCKET"})
NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD", "GOOGLE_APPLICATION_CREDENTIALS",
                              "SSH_AUTH_SOCK", "XAUTHORITY"})
# values too common to mask without masking ordinary output (`true` in every JSON document)
_PLAIN_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null"})


def secret_name(name: str) -> bool:
    """Whether a variable's name says it holds a secret (docs/security.md#secret-variables)."""
    upper = name.upper()
    if upper in NOT_SECRET_NAMES:
        return False
    parts = [part for part in re.split(r"[_\-.]", upper) if part]
    if not parts or parts[-1] in NOT_SECRET_ENDINGS:
        return False
    return any(part in SECRET_PARTS or part.startswith(SECRET_PREFIXES) for part in parts)


def secret_variable(name: str, value: str) -> bool:
    """Whether a variable holds a secret: its name says so, or its value carries a
    `user:password@` (a proxy, a repository or an rclone endpoint URL)."""
    return bool(value) and (secret_name(name) or bool(url_secrets(value)))


def register_variable(name: str, value: str) -> None:
    """Register what a secret variable holds: the whole value when its name says secret, the
    password of any `user:password@` in it (raw and percent-decoded), and for an HTTP header
    list (`Authorization,Bearer …`, rclone's `*_HEADERS`) each header's credential."""
    if not value:
        return
    if secret_name(name) and value.strip().lower() not in _PLAIN_VALUES and not (
            value.strip().isdecimal()):
        register_secret(value)
        if "HEADER" in name.upper():
            _register_headers(value)
    for secret in url_secrets(value):
        register_secret(secret)


def register_environment(environ: Mapping[str, str]) -> None:
    """Register every secret variable of an environment (hooks given all of it)."""
    for name, value in environ.items():
        if secret_variable(name, value):
            register_variable(name, value)


def _register_headers(value: str) -> None:
    """rclone's header lists: `Name,Value` pairs, comma-separated."""
    fields = value.split(",")
    for index in range(1, len(fields), 2):
        register_header_credential(fields[index])


def register_secret(secret: str | bytes) -> None:
    """Register a secret with the process-wide registry."""
    REGISTRY.register(secret)


def register_header_credential(value: str) -> None:
    """An `Authorization`-style value: the whole of it, and its credential after the scheme
    (`Bearer <token>`: a receiver's error page may echo the token alone)."""
    register_secret(value)
    _scheme, _, credential = value.strip().partition(" ")
    if credential.strip():
        register_secret(credential.strip())


def redact(data: bytes) -> bytes:
    """Redact bytes with the process-wide registry."""
    return REGISTRY.redact(data)


def redact_text(s: str) -> str:
    """Redact text with the process-wide registry."""
    return REGISTRY.redact_text(s)
