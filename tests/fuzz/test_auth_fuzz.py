"""Hostile credentials: security/auth.py's Standard Webhooks and Bearer parsing and verification
fed arbitrary header names, values (text, and raw bytes as a WSGI server hands them over) and
bodies. Properties: the verifier answers with its own refusal (`AuthFailure` and a known reason),
never another exception, never accepts a request it has no key for; a valid request with one bit
flipped in the id, the timestamp, the body or the signature is refused; the unchanged request is
accepted (so the refusals are not an accident of the set-up)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
import re
from collections.abc import ItemsView, Iterator, Mapping
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from werkzeug.datastructures import EnvironHeaders

from security.auth import (
    MAX_KEY_BYTES,
    MIN_KEY_BYTES,
    WEBHOOK_HEADERS,
    AuthFailure,
    Client,
    Reason,
    SeenIds,
    authenticate,
    parse_signature_header,
    parse_whsec,
)
from tests.support.fuzzing import fuzz, hard_deadline

NOW = 1_700_000_000.0
KEY, ROTATED_KEY = os.urandom(32), os.urandom(64)  # nobody but the verifier knows them
TOKEN = "rrt_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
SIGNER = Client("signer", ("*",), hmac_keys=(ROTATED_KEY, KEY))
BEARER = Client("cron", ("*",), tokens=(TOKEN,))
NOBODY = Client("nobody", ("*",))  # a client without credentials matches nothing
CLIENTS = (NOBODY, SIGNER, BEARER)
REASONS = frozenset(get_args(Reason))
_ids = itertools.count()


@pytest.fixture(scope="module")
def fuzz_seen(tmp_path_factory: pytest.TempPathFactory) -> SeenIds:
    return SeenIds(Path(tmp_path_factory.mktemp("auth-fuzz")) / "auth.db")


def mac(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def signature(digest: bytes) -> str:
    return "v1," + base64.b64encode(digest).decode()


def verify(headers: Mapping[str, str], body: bytes, seen: SeenIds) -> Client | AuthFailure:
    """The client, or the AuthFailure; any other exception fails the test, and so does a hang."""
    with hard_deadline():
        try:
            return authenticate(CLIENTS, headers, body, now=NOW, seen=seen)
        except AuthFailure as failure:
            assert failure.reason in REASONS, failure.reason
            return failure


def refused(outcome: Client | AuthFailure) -> bool:
    return isinstance(outcome, AuthFailure)


class Pairs(Mapping[str, str]):
    """Headers exactly as sent: repeats kept, any characters (what a framework other than
    werkzeug might hand over; werkzeug's own Headers refuses newlines)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def __getitem__(self, name: str) -> str:
        return next(v for k, v in self.pairs if k.lower() == name.lower())

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def items(self) -> ItemsView[str, str]:
        return self.pairs  # type: ignore[return-value]


def wsgi_headers(pairs: list[tuple[str, str]]) -> EnvironHeaders:
    """The headers as gunicorn puts them into the WSGI environ: bytes on the wire read as
    latin-1, names upper-cased with '-' as '_', names with '_' dropped, repeats joined by ','."""
    environ: dict[str, str] = {}
    for name, value in pairs:
        if "_" in name:
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        wire = value.encode("utf-8", "surrogatepass").decode("latin-1").strip(" \t")
        environ[key] = f"{environ[key]},{wire}" if key in environ else wire
    return EnvironHeaders(environ)


def unique_id(suffix: str = "") -> str:
    return f"msg_{next(_ids)}_{os.getpid()}{suffix}"[:256]


# --------------------------------------------------------------------------- strategies


@st.composite
def any_case(draw: st.DrawFn, name: str) -> str:
    flags = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if up else c for c, up in zip(name, flags, strict=True))


CREDENTIAL_NAMES = st.sampled_from([*WEBHOOK_HEADERS, "authorization"]).flatmap(any_case)
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
OTHER_NAMES = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=24)
WIRE_TEXT = st.binary(max_size=300).map(lambda b: b.decode("latin-1"))
B64 = st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
VALUES = (st.text(max_size=300) | WIRE_TEXT
          | st.builds(lambda v, s: f"{v},{s}", st.sampled_from(["v1", "v1a", "V1", "v2", ""]),
                      B64 | st.text(max_size=60))
          | st.lists(B64.map(lambda s: "v1," + s), max_size=6).map(" ".join)
          | st.integers(min_value=-(10**14), max_value=10**14).map(str)
          | st.builds(lambda s, t: f"{s} {t}", st.sampled_from(["Bearer", "bearer", "Basic", ""]),
                      st.text(max_size=80))
          | st.text(alphabet="\x21\x2d\x2f\x7e", min_size=257, max_size=300)
          | st.just("x" * 8193))
MSG_IDS = st.text(alphabet=[chr(c) for c in range(0x21, 0x7F) if c != 0x2E], min_size=1,
                  max_size=200)


# --------------------------------------------------------------------------- properties


@fuzz(400)
@given(pairs=st.lists(st.tuples(CREDENTIAL_NAMES | OTHER_NAMES, VALUES), max_size=8),
       body=st.binary(max_size=300))
def test_arbitrary_headers_are_refused_by_the_verifier_itself(
        fuzz_seen: SeenIds, pairs: list[tuple[str, str]], body: bytes) -> None:
    for headers in (Pairs(pairs), wsgi_headers(pairs)):
        outcome = verify(headers, body, fuzz_seen)
        assert refused(outcome), f"accepted as {outcome} without its key: {pairs!r}"


@fuzz(300)
@given(which=st.sampled_from(WEBHOOK_HEADERS), value=VALUES, body=st.binary(max_size=200),
       skew=st.integers(min_value=-300, max_value=300))
def test_one_webhook_header_replaced_by_anything_is_refused(
        fuzz_seen: SeenIds, which: str, value: str, body: bytes, skew: int) -> None:
    msg_id, stamp = unique_id(), int(NOW) + skew
    digest = mac(KEY, msg_id, stamp, body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
               "webhook-signature": signature(digest)}
    assume(value != headers[which])
    headers[which] = value
    outcome = verify(headers, body, fuzz_seen)
    # The only replacements that may pass are those that say the same thing: the same number
    # written with leading zeros, or a signature list that still holds the right signature.
    same = (which == "webhook-timestamp" and re.fullmatch("[0-9]{1,12}", value) is not None
            and int(value) == stamp) or (
        which == "webhook-signature" and len(value) <= 8192
        and digest in parse_signature_header(value))
    assert refused(outcome) or same, f"accepted with {which}: {value!r}"


@fuzz(400)
@given(msg_id=MSG_IDS, body=st.binary(max_size=400), skew=st.integers(-300, 300),
       part=st.sampled_from(["id", "timestamp", "body", "signature", "signature-text"]),
       position=st.integers(min_value=0, max_value=10**6))
def test_one_flipped_bit_is_refused_and_the_original_accepted(
        fuzz_seen: SeenIds, msg_id: str, body: bytes, skew: int, part: str, position: int) -> None:
    msg_id, stamp = unique_id("_" + msg_id), int(NOW) + skew
    digest = mac(KEY, msg_id, stamp, body)
    valid = {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
             "webhook-signature": signature(digest)}

    def flip(data: bytes) -> bytes:
        index = position // 8 % len(data)
        return data[:index] + bytes([data[index] ^ (1 << position % 8)]) + data[index + 1:]

    headers, sent_body = dict(valid), body
    if part == "id":
        headers["webhook-id"] = flip(msg_id.encode()).decode("latin-1")
    elif part == "timestamp":
        headers["webhook-timestamp"] = flip(str(stamp).encode()).decode("latin-1")
    elif part == "body":
        sent_body = flip(body) if body else b"\x00"
    elif part == "signature":
        headers["webhook-signature"] = signature(flip(digest))
    else:
        headers["webhook-signature"] = flip(valid["webhook-signature"].encode()).decode("latin-1")
    outcome = verify(headers, sent_body, fuzz_seen)
    if part == "signature-text" and not refused(outcome):
        # base64 ignores the two unused low bits of the last character ('B' and 'C' decode
        # alike there): the same MAC, so the same message, not a forgery; its id is now used
        assert digest in parse_signature_header(headers["webhook-signature"])
        control = verify(valid, body, fuzz_seen)
        assert isinstance(control, AuthFailure) and control.reason == "replay"
        return
    assert refused(outcome), f"accepted with a flipped bit in the {part}: {headers!r}"
    assert verify(valid, body, fuzz_seen) is SIGNER  # the control: unchanged, it passes


@fuzz(300)
@given(value=VALUES | st.builds(
    lambda scheme, sep, token, pad: f"{pad}{scheme}{sep}{token}{pad}",
    st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", "Bearer:", ""]),
    st.sampled_from([" ", "  ", "\t", "", " \x0b", "\u2003"]),
    st.sampled_from([TOKEN[:-1], TOKEN + "x", TOKEN.upper(), TOKEN.lower(), TOKEN + " x",
                     "x" + TOKEN, TOKEN[1:], TOKEN.replace("_", "-"), ""]) | st.text(max_size=60),
    st.sampled_from(["", " ", "\t", "\x1c", "\xa0"])))
def test_authorization_values_other_than_bearer_and_the_token_are_refused(
        fuzz_seen: SeenIds, value: str) -> None:
    outcome = verify({"Authorization": value}, b"", fuzz_seen)
    if not refused(outcome):
        words = value.split()
        assert outcome is BEARER and len(words) == 2 and words[0].lower() == "bearer" \
            and words[1] == TOKEN, f"accepted: {value!r}"


@fuzz(100)
@given(scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR"]),
       before=st.sampled_from(["", " ", "\t"]), between=st.sampled_from([" ", "   ", " \t"]),
       after=st.sampled_from(["", " ", "\t", "\r"]))
def test_the_token_is_accepted_however_it_is_spaced(fuzz_seen: SeenIds, scheme: str, before: str,
                                                    between: str, after: str) -> None:
    value = f"{before}{scheme}{between}{TOKEN}{after}"
    assert verify({"authorization": value}, b"", fuzz_seen) is BEARER
    for pairs in ([("Authorization", value)], [("Authorization", value), ("X-Other", "1")]):
        assert verify(wsgi_headers(pairs), os.urandom(16), fuzz_seen) is BEARER


def _repeats(kind: str, names: list[str]) -> st.SearchStrategy[tuple[str, list[tuple[str, str]]]]:
    """(kind, 1-3 extra copies of that kind's credential headers, any spelling, any value)."""
    spelled = st.sampled_from(names).flatmap(
        lambda name: st.sampled_from([name, name.lower(), name.upper(), name.title()]))
    return st.tuples(st.just(kind), st.lists(st.tuples(spelled, VALUES), min_size=1,
                                             max_size=3))


@fuzz(200)
@given(repeat=_repeats("signature", ["webhook-id", "webhook-timestamp", "webhook-signature"])
       | _repeats("bearer", ["Authorization"]))
def test_a_repeated_credential_header_is_refused(
        fuzz_seen: SeenIds, repeat: tuple[str, list[tuple[str, str]]]) -> None:
    """A valid request plus a second copy of one of its credential headers (a proxy adding
    one, a client sending two): refused, whether the copies arrive apart or joined by ','.
    (Each example draws copies of its own kind's headers: drawing any and filtering out the
    examples without a repeat discarded so many that hypothesis's health check failed.)"""
    kind, extra = repeat
    msg_id, stamp, body = unique_id(), int(NOW), b"{}"
    base = [("webhook-id", msg_id), ("webhook-timestamp", str(stamp)),
            ("webhook-signature", signature(mac(KEY, msg_id, stamp, body)))] \
        if kind == "signature" else [("Authorization", f"Bearer {TOKEN}")]
    for headers in (Pairs(base + extra), wsgi_headers(base + extra)):
        outcome = verify(headers, body, fuzz_seen)
        assert refused(outcome), f"accepted with a repeated header: {base + extra!r}"


@fuzz(300)
@given(secret=st.text(max_size=120) | st.builds(
    lambda prefix, key, pad: prefix + base64.b64encode(key).decode().rstrip("=" if pad else ""),
    st.sampled_from(["whsec_", "WHSEC_", "whsec", " whsec_", ""]), st.binary(max_size=80),
    st.booleans()))
def test_webhook_secrets_parse_or_fail_without_echoing_the_secret(secret: str) -> None:
    with hard_deadline():
        try:
            key = parse_whsec(secret)
        except ValueError as error:
            payload = secret.strip()[6:]
            if len(payload) >= 12:
                assert payload not in str(error)
        else:
            assert MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES
            assert secret.strip().startswith("whsec_")
