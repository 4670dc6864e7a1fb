"""Secret values for tests: the canary that has broken masking before, 0600 secret files, and
the common encodings a leaked secret may take."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote, quote_plus

# A canary with every character that has broken masking before: / @ : % space, non-ASCII.
CANARY = "pä/ss@w:rd%20 ünï-🔑"


def secret_file(path: Path, value: str) -> Path:
    """`value` and a newline in a file only its owner may read (what restic-runner requires)."""
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def encodings(secret: str) -> set[bytes]:
    """The secret raw, URL-encoded, base64 (standard and URL-safe) and JSON-escaped. The leak
    suite (tests/support/leaks.py) looks for many more forms, at every base64 offset."""
    raw = secret.encode()
    return {raw, quote(secret, safe="").encode(), quote(secret, safe="/").encode(),
            quote_plus(secret).encode(), base64.b64encode(raw), base64.urlsafe_b64encode(raw),
            json.dumps(secret).encode()[1:-1],
            json.dumps(secret, ensure_ascii=False).encode()[1:-1]}
