"""The leak suite's canaries and scanners: one distinct canary per secret the deployment holds,
which secrets each role of process may hold, every encoding a leaked secret is looked for in
(`encoded_forms`), and the evidence the scenario (tests/support/leak_scenario.py) collects."""

from __future__ import annotations

import base64
import functools
import json
import quopri
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

from tests.support.secrets import CANARY

# --- the canaries ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Canary:
    name: str
    value: str


def _whsec(key: str) -> str:
    return "whsec_" + base64.b64encode(key.encode()).decode()


URL_PASSWORD = Canary("repository-url-password", "url-" + CANARY)
REPO_PASSWORD = Canary("repository-password", "pw-" + CANARY)
WRONG_PASSWORD = Canary("wrong-repository-password", "wrong-" + CANARY)
ENV_VALUE = Canary("env_files-value", "env-" + CANARY)
CLIENT_KEY = Canary("client-whsec-key", "client-" + CANARY)  # the bytes the whsec_ encodes
CLIENT_WHSEC = Canary("client-whsec", _whsec(CLIENT_KEY.value))
# HTTP header values are ASCII, a bearer token has no spaces either: these keep / @ : % and
# carry the non-ASCII part percent-encoded or in base64.
CLIENT_TOKEN = Canary("client-token", "rrt_tok-pa/ss@w:rd%20-%C3%BCn%C3%AF-%F0%9F%94%91")
WEBHOOK_KEY = Canary("webhook-secret-key", "hook-" + CANARY)
WEBHOOK_WHSEC = Canary("webhook-secret", _whsec(WEBHOOK_KEY.value))
AUTH_CREDENTIAL = Canary("webhook-auth-credential",
                         "hdr-pa/ss@w:rd%20-" + base64.b64encode(CANARY.encode()).decode())
AUTH_HEADER = Canary("webhook-auth-header", "Bearer " + AUTH_CREDENTIAL.value)
SMTP_PASSWORD = Canary("smtp-password", "smtp-" + CANARY)
PG_PASSWORD = Canary("pushgateway-password", "pg-" + CANARY)
HC_TOKEN = Canary("healthchecks-url-token", "hc-" + CANARY)  # the ping URL's secret segment

STATIC_CANARIES = (URL_PASSWORD, REPO_PASSWORD, WRONG_PASSWORD, ENV_VALUE, CLIENT_KEY,
                   CLIENT_WHSEC, CLIENT_TOKEN, WEBHOOK_KEY, WEBHOOK_WHSEC, AUTH_CREDENTIAL,
                   AUTH_HEADER, SMTP_PASSWORD, PG_PASSWORD, HC_TOKEN)

# Which secrets a process may hold in its environment (see test_leak_suite.py's docstring).
ROLE_ALLOWED: dict[str, frozenset[str]] = {
    "service": frozenset(),  # serve, gunicorn workers, launcher, supervisors, companions
    "cli-run": frozenset(),  # `restic-runner run`
    "restic": frozenset({URL_PASSWORD.name, ENV_VALUE.name}),
    "cli-trigger": frozenset(),  # `restic-runner trigger --wait`
    "hook:gate-env": frozenset({ENV_VALUE.name}),  # hook_env = ["AWS_SECRET_ACCESS_KEY"]
    "hook:gate-none": frozenset(),  # no hook_env
    "hook:leaky": frozenset({URL_PASSWORD.name, REPO_PASSWORD.name, ENV_VALUE.name}),
}


# --- the detector ----------------------------------------------------------------------------

def _b64_inner(raw: bytes) -> list[tuple[str, bytes]]:
    """Base64 (standard and URL-safe) of `raw` at each of the three byte offsets it can have
    inside a larger blob, keeping only the characters made of `raw`'s bits alone."""
    out = []
    for alphabet, encode in (("standard", base64.b64encode),
                             ("url-safe", base64.urlsafe_b64encode)):
        for k in range(3):
            text = encode(b"\0" * k + raw).rstrip(b"=")
            start, end = -(-8 * k // 6), 8 * (k + len(raw)) // 6
            out.append((f"base64 {alphabet}, offset {k}", text[start:end]))
    return out


@functools.lru_cache(maxsize=64)
def encoded_forms(value: str) -> list[tuple[str, bytes]]:
    """(label, bytes) of every encoding the suite looks for; the first label of a duplicate
    form wins."""
    raw = value.encode()
    forms: list[tuple[str, bytes]] = [("raw UTF-8", raw)]
    for label, text in (("URL-encoded quote", quote(value, safe="")),
                        ("URL-encoded quote safe='/'", quote(value, safe="/")),
                        ("URL-encoded quote_plus", quote_plus(value)),
                        ("URL-encoded quote_plus safe='/'", quote_plus(value, safe="/"))):
        forms.append((label, text.encode()))
        forms.append((label + " lower-case hex", _lower_hex(text).encode()))
    ascii_json = json.dumps(value)[1:-1]
    forms += [("JSON ensure_ascii=True", ascii_json.encode()),
              ("JSON ensure_ascii=False", json.dumps(value, ensure_ascii=False)[1:-1].encode()),
              ("JSON with \\/", ascii_json.replace("/", "\\/").encode())]
    forms += _b64_inner(raw)
    forms += [("quoted-printable", quopri.encodestring(raw).rstrip(b"\n")),
              ("quoted-printable header", quopri.encodestring(raw, header=True).rstrip(b"\n"))]
    for sep in (":", "@"):  # what a parser keeps of a credential it splits (Basic, userinfo)
        forms.append((f"raw UTF-8, cut at the first {sep!r}", raw.split(sep.encode())[0]))
    seen: set[bytes] = set()
    unique = []
    for label, form in forms:
        if form not in seen and len(form) >= 8:
            seen.add(form)
            unique.append((label, form))
    return unique


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def leaks_in(data: bytes, canaries: list[Canary], allowed: frozenset[str] = frozenset()
             ) -> dict[str, list[str]]:
    """{canary name: [labels of the forms found]} for every canary not allowed here."""
    found: dict[str, list[str]] = {}
    for canary in canaries:
        if canary.name in allowed:
            continue
        labels = [label for label, form in encoded_forms(canary.value) if form in data]
        if labels:
            found[canary.name] = labels
    return found


# --- evidence ----------------------------------------------------------------------------------

@dataclass
class Item:
    """One piece of output: its surface (for the parametrised test), where it came from, its
    bytes, and the canaries that legitimately appear in it."""

    surface: str
    where: str
    data: bytes
    allowed: frozenset[str] = frozenset()
    role: str = ""


@dataclass
class Evidence:
    canaries: list[Canary]
    items: list[Item] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)  # GET /runs, once settled
    exits: dict[str, int] = field(default_factory=dict)  # command label -> exit status
    auth: list[tuple[str, int]] = field(default_factory=list)  # probe -> HTTP status
    webhooks: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    pings: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    mails: list[bytes] = field(default_factory=list)
    smtp_logins: list[tuple[str, str]] = field(default_factory=list)
    pushgateway_groups: list[dict[str, Any]] = field(default_factory=list)
    snapshots: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    control_cmdline: bytes = b""  # the REST server's argv: it does hold the URL password
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
