"""Key material for `restic-runner keys generate`, in the Standard Webhooks formats.

- `whsec_` + base64 of 32 random bytes: the HMAC secret of `v1` signatures.
- `whsk_` + base64 of the 32-byte Ed25519 private key (the RFC 8032 seed) and `whpk_` + base64 of
  the 32-byte raw public key: the `v1a` pair, as the reference library reads them
  (libraries/go/webhook_asymmetric.go: prefix stripped, standard base64, `NewKeyFromSeed`).
- `rrt_` + 43 url-safe characters (32 random bytes): a bearer token.

`cryptography` is imported only by the functions that need it.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import secrets
from pathlib import Path

from security.auth import WHSEC_PREFIX, decode_base64

WHSK_PREFIX = "whsk_"
WHPK_PREFIX = "whpk_"
TOKEN_PREFIX = "rrt_"
ED25519_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_whsec() -> str:
    """A new HMAC secret: `whsec_` + base64 of 32 random bytes."""
    return WHSEC_PREFIX + _b64(secrets.token_bytes(32))


def new_token() -> str:
    """A new bearer token: `rrt_` + url-safe base64 of 32 random bytes."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _parse(value: str, prefix: str, what: str) -> bytes:
    text = value.strip()
    if not text.startswith(prefix):
        raise ValueError(f"an Ed25519 {what} key must start with '{prefix}'")
    raw = decode_base64(text[len(prefix):])
    if raw is None or len(raw) != ED25519_BYTES:
        raise ValueError(f"an Ed25519 {what} key must be '{prefix}' and the base64 of "
                         f"{ED25519_BYTES} bytes")
    return raw


def parse_whsk(whsk: str) -> bytes:
    """The 32-byte Ed25519 private key (seed) of a `whsk_…` string; ValueError otherwise."""
    return _parse(whsk, WHSK_PREFIX, "private")


def parse_whpk(whpk: str) -> bytes:
    """The 32-byte raw Ed25519 public key of a `whpk_…` string; ValueError otherwise."""
    return _parse(whpk, WHPK_PREFIX, "public")


def new_ed25519() -> tuple[str, str]:
    """A new Ed25519 signing pair: (`whsk_…` private, `whpk_…` public)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    return (WHSK_PREFIX + _b64(private.private_bytes_raw()),
            WHPK_PREFIX + _b64(private.public_key().public_bytes_raw()))


def public_from_whsk(whsk: str) -> str:
    """The `whpk_…` public key belonging to a `whsk_…` private key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.from_private_bytes(parse_whsk(whsk))
    return WHPK_PREFIX + _b64(private.public_key().public_bytes_raw())


def sign_v1a(whsk: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1a,<base64 Ed25519 signature of "{msg_id}.{timestamp}." + body>`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.from_private_bytes(parse_whsk(whsk))
    return "v1a," + _b64(private.sign(f"{msg_id}.{timestamp}.".encode() + body))


def write_secret_file(path: Path, value: str, *, force: bool = False) -> None:
    """Write `value` and a newline to `path`, mode 0600, atomically.

    The content goes to a temporary file in the same directory first, which is then linked into
    place (an existing `path`, even a dangling symlink, raises FileExistsError) or, with `force`,
    renamed over it (a symlink is replaced, never followed).
    """
    import tempfile  # pulls in shutil and the compression modules: only when writing

    path = Path(path)
    data = (value if value.endswith("\n") else value + "\n").encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if force:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path, data)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _sync_dir(path.parent)


def _link_new(tmp: str, path: Path, data: bytes) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "refusing to overwrite an existing file",
                              str(path)) from None
    except OSError:  # no hard links here (some FUSE or vfat mounts): exclusive create instead
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, "refusing to overwrite an existing file",
                                  str(path)) from None
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(data)
            os.fsync(out.fileno())


def _sync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
