"""Signing what we send (Standard Webhooks): `v1` HMAC-SHA256 with a target's `whsec_` secret,
`v1a` Ed25519 with the service's `whsk_` key (its `whpk_` public key is served at `/keys`).

Both sign `{webhook-id}.{webhook-timestamp}.{raw body}`; several signatures are space-separated
in one `webhook-signature` header, so a receiver verifies whichever it has a key for.
"""

from __future__ import annotations

from security.auth import sign_v1
from security.keys import sign_v1a


def signature_header(msg_id: str, timestamp: int, body: bytes, *,
                     hmac_keys: tuple[bytes, ...] = (), whsk: str | None = None) -> str | None:
    """The `webhook-signature` value, or None when there is nothing to sign with."""
    signatures = [sign_v1(key, msg_id, timestamp, body) for key in hmac_keys]
    if whsk:
        signatures.append(sign_v1a(whsk, msg_id, timestamp, body))
    return " ".join(signatures) or None
