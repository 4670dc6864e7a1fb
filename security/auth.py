"""Inbound authentication (docs/security.md): Standard Webhooks HMAC signatures, bearer tokens.

A failure raises `AuthFailure`; its `reason` is for logs and metrics only, an HTTP answer says
401 and nothing more. Replay protection (`SeenIds`) and the failure rate limit (`FailureLimiter`)
share one SQLite file that every gunicorn worker opens for itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from security.database import Schema, connect

Reason = Literal[
    "malformed", "no-credentials", "bad-signature", "bad-token", "expired", "future", "replay"
]

MAX_HEADER = 8192
"""Longest credential header value accepted (characters); longer ones are `malformed`."""
WHSEC_PREFIX = "whsec_"
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64  # Standard Webhooks: 192 to 512 bits
WEBHOOK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_WANTED = frozenset((*WEBHOOK_HEADERS, "authorization"))
_MSG_ID = re.compile(r"[\x21-\x2d\x2f-\x7e]{1,256}")  # printable ASCII without "." (spec)
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_TOKEN = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class Client:
    """A `[[clients]]` entry: who may call, with which credentials, for which jobs."""

    name: str
    jobs: tuple[str, ...]  # "*" means all
    hmac_keys: tuple[bytes, ...] = field(default=(), repr=False)
    tokens: tuple[str, ...] = field(default=(), repr=False)

    def may_run(self, job: str) -> bool:
        """Whether this client may trigger (and see the runs of) `job`."""
        return "*" in self.jobs or job in self.jobs


class AuthFailure(Exception):
    """Authentication failed; `reason` and `client` are for logs, metrics and rate limits only."""

    def __init__(self, reason: Reason, client: str | None = None) -> None:
        super().__init__(reason if client is None else f"{reason} (client {client})")
        self.reason: Reason = reason
        self.client = client


def decode_base64(text: str) -> bytes | None:
    """Strict standard-alphabet base64 with optional padding; None when it is not that."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_whsec(secret: str) -> bytes:
    """The key bytes of a `whsec_<base64>` secret (surrounding whitespace and padding optional).

    The prefix is required: a bare base64 string is refused, so that a token or another kind of
    key put in a secret file by mistake is reported instead of quietly becoming an HMAC key.
    Error messages never contain the secret.
    """
    value = secret.strip()
    if not value.startswith(WHSEC_PREFIX):
        raise ValueError("a webhook secret must start with 'whsec_' "
                         "(make one with `restic-runner keys generate`)")
    key = decode_base64(value[len(WHSEC_PREFIX):])
    if key is None:
        raise ValueError("the part of the webhook secret after 'whsec_' is not valid base64")
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"a webhook secret must encode {MIN_KEY_BYTES} to {MAX_KEY_BYTES} "
                         f"bytes, this one has {len(key)}")
    return key


def _mac(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)
    return mac.digest()


def sign_v1(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}." + body>` (a `webhook-signature` entry).

    Raises ValueError for an id that `authenticate` would refuse (empty, over 256 characters,
    not printable ASCII, or containing "."), or a negative timestamp.
    """
    if not _MSG_ID.fullmatch(msg_id) or timestamp < 0:
        raise ValueError("webhook id must be 1-256 printable ASCII characters without '.', "
                         "and the timestamp not negative")
    return "v1," + base64.b64encode(_mac(key, msg_id, timestamp, body)).decode()


def parse_signature_header(value: str) -> tuple[bytes, ...]:
    """The decoded `v1` signatures of a `webhook-signature` value (space-separated entries).

    Entries of other versions (`v1a`, …) and undecodable ones are skipped; a value longer than
    MAX_HEADER raises AuthFailure("malformed"). Nothing else is raised.
    """
    if len(value) > MAX_HEADER:
        raise AuthFailure("malformed")
    found = []
    for entry in value.split():
        version, comma, encoded = entry.partition(",")
        if version == "v1" and comma:
            signature = decode_base64(encoded)
            if signature is not None and len(signature) == hashlib.sha256().digest_size:
                found.append(signature)
    return tuple(found)


def _credential_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The credential headers by lower-case name; a repeated or oversized one is `malformed`."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in _WANTED:
            if key in found or not isinstance(value, str) or len(value) > MAX_HEADER:
                raise AuthFailure("malformed")
            found[key] = value
    return found


def authenticate(clients: Sequence[Client], headers: Mapping[str, str], body: bytes, *,
                 now: float, seen: SeenIds, tolerance: float = 300) -> Client:
    """The client whose credential the request carries; AuthFailure otherwise.

    Standard Webhooks headers (all three, or it is `malformed`) take precedence over
    `Authorization: Bearer`. Header names are matched case-insensitively. For a signed request the
    signature is checked first (`bad-signature`), then the timestamp (`expired`/`future`, beyond
    ±tolerance seconds), then the id (`replay`); failures after the signature name the client.
    """
    found = _credential_headers(headers)
    if any(name in found for name in WEBHOOK_HEADERS):
        return _standard_webhook(clients, found, body, now=now, seen=seen, tolerance=tolerance)
    if "authorization" in found:
        return _bearer(clients, found["authorization"])
    raise AuthFailure("no-credentials")


def _standard_webhook(clients: Sequence[Client], found: dict[str, str], body: bytes, *,
                      now: float, seen: SeenIds, tolerance: float) -> Client:
    if not all(name in found for name in WEBHOOK_HEADERS):
        raise AuthFailure("malformed")
    msg_id, stamp = found["webhook-id"], found["webhook-timestamp"]
    if not _MSG_ID.fullmatch(msg_id) or not _TIMESTAMP.fullmatch(stamp):
        raise AuthFailure("malformed")
    timestamp = int(stamp)
    signatures = parse_signature_header(found["webhook-signature"])
    client = _signed_by(clients, msg_id, timestamp, body, signatures)
    if client is None:
        raise AuthFailure("bad-signature")
    if now - timestamp > tolerance:
        raise AuthFailure("expired", client.name)
    if timestamp - now > tolerance:
        raise AuthFailure("future", client.name)
    # A message first seen at t (timestamp up to t + tolerance) stays acceptable until
    # timestamp + tolerance <= t + 2 * tolerance: remember its id that long.
    if not seen.remember(client.name, msg_id, now, window=2 * tolerance):
        raise AuthFailure("replay", client.name)
    return client


def _signed_by(clients: Sequence[Client], msg_id: str, timestamp: int, body: bytes,
               signatures: tuple[bytes, ...]) -> Client | None:
    if not signatures:
        return None
    for client in clients:
        for key in client.hmac_keys:
            expected = _mac(key, msg_id, timestamp, body)
            if any(hmac.compare_digest(expected, signature) for signature in signatures):
                return client
    return None


def _bearer(clients: Sequence[Client], value: str) -> Client:
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
        raise AuthFailure("malformed")
    digest = hashlib.sha256(token.encode()).digest()
    match: Client | None = None
    for client in clients:  # every candidate is compared: the time taken says nothing
        for candidate in client.tokens:
            same = hmac.compare_digest(digest, hashlib.sha256(candidate.encode()).digest())
            if same and candidate and match is None:
                match = client
    if match is None:
        raise AuthFailure("bad-token")
    return match


# auth.db: the replay store's message ids and the failure limiter's attempts (one schema)
AUTH_SCHEMA = Schema(1, """
    CREATE TABLE IF NOT EXISTS seen_message_ids (
        client TEXT NOT NULL, msg_id TEXT NOT NULL, seen_at REAL NOT NULL,
        seen_elapsed REAL NOT NULL, boot_id TEXT NOT NULL,
        PRIMARY KEY (client, msg_id)
    ) WITHOUT ROWID;
    DROP TABLE IF EXISTS seen_ids;
    CREATE TABLE IF NOT EXISTS auth_failures (key TEXT NOT NULL, at REAL NOT NULL);
    CREATE INDEX IF NOT EXISTS auth_failures_key_at ON auth_failures (key, at);
""")


class _SqliteStore:
    """One SQLite connection per process (opened again after a fork), serialised by a lock."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = 0
        self._inherited: list[sqlite3.Connection] = []
        self._purged_at = float("-inf")

    def _conn(self) -> sqlite3.Connection:
        if self._db is not None and self._pid == os.getpid():
            return self._db
        if self._db is not None:
            # Inherited across fork: never use or close it here (closing may checkpoint or
            # unlink the parent's WAL); keep a reference so garbage collection does not either.
            self._inherited.append(self._db)
        db = connect(self.path, AUTH_SCHEMA, timeout=10)
        self._db, self._pid = db, os.getpid()
        self._purged_at = float("-inf")
        return db

    def close(self) -> None:
        """Close this process's connection (it is opened again on the next use)."""
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _elapsed() -> float:
    """Seconds since boot, the same in every process and never stepped with the wall clock."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class SeenIds(_SqliteStore):
    """The `webhook-id`s seen per client, shared by every process that opens the same file.

    How long an id is kept is measured on the boot clock, not the wall clock: a wall clock
    stepped forward (NTP, a VM resumed) must not purge ids that become acceptable again once it
    is corrected, or a captured request could be replayed then. Ids from an earlier boot age
    by the wall clock.
    """


    def __init__(self, path: Path | str, *, elapsed: Callable[[], float] = _elapsed,
                 boot_id: str | None = None) -> None:
        super().__init__(path)
        self._elapsed, self._boot = elapsed, boot_id or _boot_id()

    def remember(self, client: str, msg_id: str, now: float, window: float = 300) -> bool:
        """Record `msg_id` for `client`; False when it was already seen within `window` seconds
        (of elapsed time).

        Atomic across processes (the primary key decides). Rows older than 2 * window are
        purged at most once per window per process.
        """
        elapsed = self._elapsed()
        stale = ("(boot_id = :boot AND seen_elapsed < :elapsed - :age) "
                 "OR (boot_id != :boot AND seen_at < :now - :age)")
        args = {"boot": self._boot, "elapsed": elapsed, "now": now}
        with self._lock:
            db = self._conn()
            if elapsed - self._purged_at >= window:
                db.execute(f"DELETE FROM seen_message_ids WHERE {stale}",
                           {**args, "age": 2 * window})
                self._purged_at = elapsed
            try:
                db.execute("INSERT INTO seen_message_ids VALUES (?, ?, ?, ?, ?)",
                           (client, msg_id, now, elapsed, self._boot))
                return True
            except sqlite3.IntegrityError:
                refreshed = db.execute(
                    "UPDATE seen_message_ids SET seen_at = :now, seen_elapsed = :elapsed, "
                    f"boot_id = :boot WHERE client = :client AND msg_id = :msg AND ({stale})",
                    {**args, "age": window, "client": client, "msg": msg_id})
                return refreshed.rowcount == 1


class FailureLimiter(_SqliteStore):
    """Rate limit of failed authentications per key, shared by every process using the file.

    Policy: a key with more than `max_failures` failures in the last `window` seconds (a sliding
    window) is blocked until enough of them are older than `window` that at most `max_failures`
    remain. Keys are free-form, e.g. "client:airflow" and "addr:192.0.2.7". While a key is
    blocked, a request whose credentials fail is answered 429 and records nothing, so a
    blocked caller gets at most `max_failures` guesses per window; valid credentials still pass
    (the gatekeeper checks them first, so a flood cannot lock a good client out). Successes
    clear nothing.
    A key made from the client named by an AuthFailure ("expired", "future", "replay") can be
    driven by anyone holding a captured request; key by source address too.
    """


    def __init__(self, path: Path | str, max_failures: int = 10, window: float = 60) -> None:
        super().__init__(path)
        self.max_failures = max_failures
        self.window = window

    def blocked(self, key: str, now: float, limit: int | None = None) -> float | None:
        """Seconds until `key` may try again, or None when it is not blocked; `limit` for this
        key instead of `max_failures` (a key shared by every address gets a higher one)."""
        with self._lock:
            row = self._conn().execute(
                "SELECT at FROM auth_failures WHERE key = ? AND at > ? "
                "ORDER BY at DESC LIMIT 1 OFFSET ?",
                (key, now - self.window, self.max_failures if limit is None else limit)
            ).fetchone()
        return None if row is None else row[0] + self.window - now

    def record_failure(self, key: str, now: float) -> None:
        """Count one failed attempt for `key` at `now`."""
        with self._lock:
            db = self._conn()
            if now - self._purged_at >= self.window:
                db.execute("DELETE FROM auth_failures WHERE at <= ?", (now - self.window,))
                self._purged_at = now
            db.execute("INSERT INTO auth_failures (key, at) VALUES (?, ?)", (key, now))


MIN_TOKEN_LENGTH = 16


def check_token_lines(text: str) -> None:
    """Every non-blank line a bearer token the API can match: printable ASCII without spaces
    (a token with other characters could never arrive in an `Authorization` header)."""
    for number, line in enumerate(text.splitlines(), 1):
        token = line.strip()
        if token and not (token.isascii() and token.isprintable() and " " not in token):
            raise ValueError(f"line {number}: a bearer token must be printable ASCII "
                             "without spaces")
        if token and len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"line {number}: a bearer token must have at least "
                             f"{MIN_TOKEN_LENGTH} characters (guessable, and too short to be "
                             "masked; `restic-runner keys generate token` makes one)")
