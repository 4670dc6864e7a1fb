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
    "register_header_credential",
    "register_secret",
    "url_password",
    "url_secrets",
]

REGISTRY = SecretRegistry()


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
