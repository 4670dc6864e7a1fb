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


# --- validation of the secret files' content, at config load (messages never quote a value) ---

def _lines(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def check_whsec_lines(text: str) -> None:
    """Every non-blank line a valid `whsec_` secret (several lines: rotation); ValueError
    naming the line otherwise."""
    from security.auth import parse_whsec

    for number, line in _lines(text):
        try:
            parse_whsec(line)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None


def check_header_value(text: str) -> None:
    """An HTTP header value (e.g. `Authorization`) is one line of printable ASCII: anything
    else could never be sent, and every delivery would fail."""
    value = text.strip()
    if not (value.isascii() and value.isprintable()):
        raise ValueError("an HTTP header value must be one line of printable ASCII "
                         "(encode it, e.g. base64)")


def check_whsk(text: str) -> None:
    """A `whsk_` Ed25519 private key (`restic-runner keys generate ed25519`)."""
    from security.keys import parse_whsk

    parse_whsk(text)
