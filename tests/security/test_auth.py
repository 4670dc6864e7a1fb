"""Inbound authentication: Standard Webhooks (against the reference `standardwebhooks` library),
bearer tokens, the shared replay store and the failure limiter."""

from __future__ import annotations

import base64
import json
import multiprocessing
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook
from werkzeug.datastructures import EnvironHeaders, Headers

from security.auth import (
    MAX_HEADER,
    AuthFailure,
    Client,
    FailureLimiter,
    SeenIds,
    authenticate,
    parse_signature_header,
    parse_whsec,
    sign_v1,
)

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NOW = 1_700_000_000.0
KEY = bytes(range(32))
WHSEC = "whsec_" + base64.b64encode(KEY).decode()
OTHER_KEY = b"\x07" * 32
TOKEN = "rrt_" + "A" * 43
BODY = b'{"params": {"tags": ["weekly"]}}'

AIRFLOW = Client("airflow", ("nightly",), hmac_keys=(KEY,))
OTHER = Client("other", ("*",), hmac_keys=(OTHER_KEY, b"\x09" * 32))
CRON = Client("cron", ("*",), tokens=("rrt_" + "B" * 43, TOKEN))
CLIENTS = (OTHER, AIRFLOW, CRON)


@pytest.fixture
def seen(tmp_path: Path) -> SeenIds:
    return SeenIds(tmp_path / "auth.sqlite")


def signed(key: bytes = KEY, body: bytes = BODY, *, msg_id: str = "msg_1",
           timestamp: int = int(NOW)) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_v1(key, msg_id, timestamp, body)}


def failure(headers: object, seen: SeenIds, *, body: bytes = BODY, now: float = NOW,
            clients: tuple[Client, ...] = CLIENTS) -> AuthFailure:
    with pytest.raises(AuthFailure) as caught:
        authenticate(clients, headers, body, now=now, seen=seen)  # type: ignore[arg-type]
    return caught.value


# --------------------------------------------------------------------------- Client, secrets


def test_client_may_run() -> None:
    assert AIRFLOW.may_run("nightly")
    assert not AIRFLOW.may_run("offsite")
    assert CRON.may_run("anything")


def test_client_repr_hides_credentials() -> None:
    text = repr(CRON) + repr(AIRFLOW)
    assert TOKEN not in text and repr(KEY) not in text and "airflow" in text


def test_parse_whsec() -> None:
    assert parse_whsec(WHSEC) == KEY
    assert parse_whsec(f"  {WHSEC}\n") == KEY
    assert parse_whsec(WHSEC.rstrip("=")) == KEY  # padding optional, as the reference library
    assert Webhook(WHSEC)._whsecret == KEY


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (base64.b64encode(KEY).decode(), "must start with 'whsec_'"),
        (TOKEN, "must start with 'whsec_'"),
        ("whsec_not*base64!", "not valid base64"),
        ("whsec_" + base64.b64encode(b"x" * 23).decode(), "24 to 64 bytes, this one has 23"),
        ("whsec_" + base64.b64encode(b"x" * 65).decode(), "this one has 65"),
        ("whsec_", "this one has 0"),
    ],
)
def test_parse_whsec_refuses(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_whsec(secret)
    payload = secret.removeprefix("whsec_")
    assert not payload or payload not in str(caught.value)  # never echoes the secret


def test_sign_v1_refuses_ids_authenticate_would_refuse() -> None:
    for msg_id in ("", "a.b", "with space", "x" * 257, "ünï"):
        with pytest.raises(ValueError, match="webhook id"):
            sign_v1(KEY, msg_id, int(NOW), BODY)


# --------------------------------------------------------------------------- interoperability


def test_reference_library_signature_verifies(seen: SeenIds) -> None:
    when = datetime.fromtimestamp(NOW, tz=UTC)
    signature = Webhook(WHSEC).sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", when, BODY.decode())
    headers = {"webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
               "webhook-timestamp": str(int(NOW)), "webhook-signature": signature}
    assert authenticate(CLIENTS, headers, BODY, now=NOW, seen=seen) is AIRFLOW
    assert signature == sign_v1(KEY, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", int(NOW), BODY)


def test_our_signature_verifies_with_reference_library() -> None:
    now = int(time.time())  # the library checks against the real clock
    body = json.dumps({"params": {"dry_run": True}, "note": "ünïcode"}).encode()
    headers = signed(body=body, msg_id="msg_ours", timestamp=now)
    assert Webhook(WHSEC).verify(body, headers) == json.loads(body)


def test_utf8_body_and_binary_body(seen: SeenIds) -> None:
    for i, body in enumerate(("ünï 🔑".encode(), bytes(range(256)))):
        headers = signed(body=body, msg_id=f"msg_{i}")
        assert authenticate(CLIENTS, headers, body, now=NOW, seen=seen) is AIRFLOW


# --------------------------------------------------------------------------- signatures


def test_several_signatures_one_bad_one_good(seen: SeenIds) -> None:
    headers = signed()
    good = headers["webhook-signature"]
    bad = sign_v1(b"\x01" * 32, "msg_1", int(NOW), BODY)
    headers["webhook-signature"] = f"{bad} v1a,{good[3:]} v2,{good[3:]} junk {good}"
    assert authenticate(CLIENTS, headers, BODY, now=NOW, seen=seen) is AIRFLOW


def test_second_key_of_a_client_verifies(seen: SeenIds) -> None:
    headers = signed(b"\x09" * 32)
    assert authenticate(CLIENTS, headers, BODY, now=NOW, seen=seen) is OTHER


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h: h | {"webhook-signature": sign_v1(b"\x01" * 32, "msg_1", int(NOW), BODY)},
        lambda h: h | {"webhook-signature": h["webhook-signature"].replace("v1,", "v1a,")},
        lambda h: h | {"webhook-signature": "v1,"},
        lambda h: h | {"webhook-signature": ""},
        lambda h: h | {"webhook-id": "msg_2"},
        lambda h: h | {"webhook-timestamp": str(int(NOW) + 1)},
    ],
)
def test_bad_signature(seen: SeenIds, tamper: object) -> None:
    error = failure(tamper(signed()), seen)  # type: ignore[operator]
    assert (error.reason, error.client) == ("bad-signature", None)


def test_tampered_body_is_a_bad_signature(seen: SeenIds) -> None:
    assert failure(signed(), seen, body=BODY + b" ").reason == "bad-signature"


def test_client_without_keys_never_matches_a_signature(seen: SeenIds) -> None:
    error = failure(signed(), seen, clients=(CRON, Client("nokeys", ("*",))))
    assert error.reason == "bad-signature"


# --------------------------------------------------------------------------- timestamps


def test_timestamp_at_the_edges_of_the_tolerance(seen: SeenIds) -> None:
    old = signed(msg_id="msg_old", timestamp=int(NOW) - 300)
    new = signed(msg_id="msg_new", timestamp=int(NOW) + 300)
    assert authenticate(CLIENTS, old, BODY, now=NOW, seen=seen) is AIRFLOW
    assert authenticate(CLIENTS, new, BODY, now=NOW, seen=seen) is AIRFLOW


def test_expired(seen: SeenIds) -> None:
    error = failure(signed(timestamp=int(NOW) - 301), seen)
    assert (error.reason, error.client) == ("expired", "airflow")


def test_future(seen: SeenIds) -> None:
    error = failure(signed(timestamp=int(NOW) + 301), seen)
    assert (error.reason, error.client) == ("future", "airflow")


def test_custom_tolerance(seen: SeenIds) -> None:
    with pytest.raises(AuthFailure, match="expired"):
        authenticate(CLIENTS, signed(timestamp=int(NOW) - 31), BODY, now=NOW, seen=seen,
                     tolerance=30)


@pytest.mark.parametrize(
    "stamp", ["1700000000.5", "1.7e9", "abc", "", " 1700000000", "+1700000000", "-1",
              "1_700_000_000", "١٧٠٠٠٠٠٠٠٠", "1700000000\n", "9" * 13],
)
def test_non_integer_timestamp_is_malformed(seen: SeenIds, stamp: str) -> None:
    headers = signed() | {"webhook-timestamp": stamp}
    assert failure(headers, seen).reason == "malformed"


def test_expired_and_failed_requests_are_not_remembered(seen: SeenIds) -> None:
    failure(signed(timestamp=int(NOW) - 301), seen)
    failure(signed(timestamp=int(NOW)) | {"webhook-signature": "v1,AAAA"}, seen)
    assert authenticate(CLIENTS, signed(), BODY, now=NOW, seen=seen) is AIRFLOW


# --------------------------------------------------------------------------- replay


def test_replay_is_refused(seen: SeenIds) -> None:
    assert authenticate(CLIENTS, signed(), BODY, now=NOW, seen=seen) is AIRFLOW
    error = failure(signed(), seen, now=NOW + 1)
    assert (error.reason, error.client) == ("replay", "airflow")


def test_same_id_from_another_client_is_not_a_replay(seen: SeenIds) -> None:
    assert authenticate(CLIENTS, signed(KEY), BODY, now=NOW, seen=seen) is AIRFLOW
    assert authenticate(CLIENTS, signed(OTHER_KEY), BODY, now=NOW, seen=seen) is OTHER


def test_replay_refused_for_as_long_as_the_timestamp_is_accepted(seen: SeenIds) -> None:
    # Stamped 300 s ahead and first seen now: its timestamp stays acceptable for 600 s.
    headers = signed(timestamp=int(NOW) + 300)
    assert authenticate(CLIENTS, headers, BODY, now=NOW, seen=seen) is AIRFLOW
    assert failure(headers, seen, now=NOW + 600).reason == "replay"
    assert failure(headers, seen, now=NOW + 601).reason == "expired"


def test_replay_store_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "auth.sqlite"
    assert authenticate(CLIENTS, signed(), BODY, now=NOW, seen=SeenIds(path)) is AIRFLOW
    assert failure(signed(), SeenIds(path)).reason == "replay"


def test_remember_window_and_purge(tmp_path: Path) -> None:
    clock = [0.0]  # seconds since boot, moved along with the wall clock here
    seen = SeenIds(tmp_path / "auth.sqlite", elapsed=lambda: clock[0], boot_id="b")

    def remember(msg_id: str, after: float) -> bool:
        clock[0] = after
        return seen.remember("c", msg_id, NOW + after)

    assert remember("id", 0)
    assert not remember("id", 300)
    assert remember("id", 300.5)  # older than the window: new again
    assert not remember("id", 301)
    assert remember("other", 10_000)  # purges rows older than 2 * window
    rows = seen._conn().execute("SELECT client, msg_id FROM seen_message_ids").fetchall()
    assert rows == [("c", "other")]


def _race(path: str, ids: list[str], start: Any, out: Any) -> None:
    store = SeenIds(path)
    start.wait()
    out.put([msg_id for msg_id in ids if store.remember("airflow", msg_id, time.time())])


def test_replay_store_is_shared_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ids = [f"msg_{i}" for i in range(300)]
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path / "auth.sqlite"), ids, start, out))
             for _ in range(2)]
    for proc in procs:
        proc.start()
    wins = [out.get(timeout=30) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert sorted(wins[0] + wins[1]) == sorted(ids)  # every id won exactly once
    assert not set(wins[0]) & set(wins[1])


def _use_inherited(store: SeenIds, out: Any) -> None:
    out.put((store.remember("c", "parent", NOW), store.remember("c", "child", NOW)))


def test_store_opened_before_fork_reconnects_in_the_child(seen: SeenIds) -> None:
    assert seen.remember("c", "parent", NOW)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    proc = ctx.Process(target=_use_inherited, args=(seen, out))
    proc.start()
    assert out.get(timeout=30) == (False, True)
    proc.join(timeout=30)
    assert not seen.remember("c", "child", NOW)


# --------------------------------------------------------------------------- bearer tokens


@pytest.mark.parametrize("value", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER  {TOKEN} "])
def test_bearer_token(seen: SeenIds, value: str) -> None:
    assert authenticate(CLIENTS, {"Authorization": value}, b"", now=NOW, seen=seen) is CRON


def test_unknown_token(seen: SeenIds) -> None:
    for token in (TOKEN + "x", TOKEN[:-1], "rrt_" + "C" * 43):
        error = failure({"authorization": f"Bearer {token}"}, seen)
        assert (error.reason, error.client) == ("bad-token", None)


@pytest.mark.parametrize(
    "value", ["", "Bearer", "Bearer ", f"Basic {TOKEN}", f"Token {TOKEN}", "Bearer a b",
              "Bearer ünï", TOKEN],
)
def test_malformed_authorization(seen: SeenIds, value: str) -> None:
    assert failure({"Authorization": value}, seen).reason == "malformed"


def test_empty_configured_token_never_matches(seen: SeenIds) -> None:
    clients = (Client("blank", ("*",), tokens=("",)),)
    assert failure({"Authorization": "Bearer x"}, seen, clients=clients).reason == "bad-token"


def test_no_credentials(seen: SeenIds) -> None:
    assert failure({}, seen).reason == "no-credentials"
    assert failure({"Content-Type": "application/json", "X-Token": TOKEN}, seen).reason == (
        "no-credentials")


def test_webhook_headers_take_precedence_over_bearer(seen: SeenIds) -> None:
    headers = signed() | {"Authorization": f"Bearer {TOKEN}"}
    assert authenticate(CLIENTS, headers, BODY, now=NOW, seen=seen) is AIRFLOW
    headers = signed() | {"webhook-signature": "v1,AAAA", "Authorization": f"Bearer {TOKEN}"}
    assert failure(headers, seen).reason == "bad-signature"


# --------------------------------------------------------------------------- headers


def test_header_names_are_case_insensitive(seen: SeenIds) -> None:
    headers = signed()
    mixed = {"Webhook-Id": headers["webhook-id"], "WEBHOOK-TIMESTAMP": headers["webhook-timestamp"],
             "webhook-Signature": headers["webhook-signature"]}
    assert authenticate(CLIENTS, mixed, BODY, now=NOW, seen=seen) is AIRFLOW
    werkzeug = Headers(signed(msg_id="msg_wz"))
    assert authenticate(CLIENTS, werkzeug, BODY, now=NOW, seen=seen) is AIRFLOW
    environ = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in signed(msg_id="msg_e").items()}
    assert authenticate(CLIENTS, EnvironHeaders(environ), BODY, now=NOW, seen=seen) is AIRFLOW
    assert authenticate(CLIENTS, Headers({"AUTHORIZATION": f"Bearer {TOKEN}"}), b"", now=NOW,
                        seen=seen) is CRON


def test_repeated_credential_header_is_malformed(seen: SeenIds) -> None:
    headers = Headers(signed())
    headers.add("Webhook-Signature", "v1,AAAA")
    assert failure(headers, seen).reason == "malformed"
    assert failure({"Authorization": "Bearer a", "authorization": "Bearer b"}, seen).reason == (
        "malformed")


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_incomplete_webhook_headers_are_malformed(seen: SeenIds, missing: str) -> None:
    headers = signed()
    del headers[missing]
    assert failure(headers, seen).reason == "malformed"


@pytest.mark.parametrize("msg_id", ["", "msg.1", "msg 1", "ünï", "x" * 257, "msg\n1"])
def test_bad_webhook_id_is_malformed(seen: SeenIds, msg_id: str) -> None:
    assert failure(signed() | {"webhook-id": msg_id}, seen).reason == "malformed"


@pytest.mark.parametrize("name", ["webhook-signature", "webhook-id", "Authorization"])
def test_oversized_header_is_malformed(seen: SeenIds, name: str) -> None:
    base = {"Authorization": "Bearer x"} if name == "Authorization" else signed()
    long = "Bearer " + "a" * MAX_HEADER if name == "Authorization" else "v1,AAAA " * 1200
    assert failure(base | {name: long}, seen).reason == "malformed"


def test_long_but_acceptable_signature_header(seen: SeenIds) -> None:
    headers = signed()
    filler = " ".join(["v1,AAAA"] * 900)
    headers["webhook-signature"] = f"{filler} {headers['webhook-signature']}"
    assert len(headers["webhook-signature"]) <= MAX_HEADER
    assert authenticate(CLIENTS, headers, BODY, now=NOW, seen=seen) is AIRFLOW


# --------------------------------------------------------------------------- fuzzing


@FAST
@given(st.text())
def test_parse_signature_header_never_raises(value: str) -> None:
    try:
        signatures = parse_signature_header(value)
    except AuthFailure as error:
        assert error.reason == "malformed" and len(value) > MAX_HEADER
    else:
        assert all(len(signature) == 32 for signature in signatures)


_ENTRY = st.one_of(
    st.text(max_size=60),
    st.builds(lambda v, s: f"{v},{s}", st.sampled_from(["v1", "v1a", "v2", "V1", ""]),
              st.one_of(st.text(max_size=50), st.binary(min_size=32, max_size=32).map(
                  lambda b: base64.b64encode(b).decode()))),
)


@FAST
@given(st.lists(_ENTRY, max_size=8).map(" ".join))
def test_fuzzed_signature_header_only_fails_with_auth_failure(seen: SeenIds, value: str) -> None:
    headers = signed() | {"webhook-signature": value}
    assert failure(headers, seen).reason in {"bad-signature", "malformed"}


_NAMES = st.sampled_from(["webhook-id", "Webhook-Timestamp", "WEBHOOK-SIGNATURE",
                          "authorization", "Authorization", "x-other"])


@FAST
@given(st.dictionaries(_NAMES, st.text(max_size=80), max_size=5), st.binary(max_size=64))
def test_fuzzed_headers_only_fail_with_auth_failure(seen: SeenIds, headers: dict[str, str],
                                                    body: bytes) -> None:
    failure(headers, seen, body=body)


# --------------------------------------------------------------------------- failure limiter


def test_limiter_blocks_after_n_failures_and_unblocks_after_the_window(tmp_path: Path) -> None:
    limiter = FailureLimiter(tmp_path / "auth.sqlite", max_failures=10, window=60)
    for i in range(10):
        assert limiter.blocked("client:airflow", NOW + i) is None
        limiter.record_failure("client:airflow", NOW + i)
    assert limiter.blocked("client:airflow", NOW + 10) is None  # 10 is not more than 10
    limiter.record_failure("client:airflow", NOW + 10)
    assert limiter.blocked("client:airflow", NOW + 10) == pytest.approx(50)
    assert limiter.blocked("client:airflow", NOW + 59.5) == pytest.approx(0.5)
    assert limiter.blocked("addr:192.0.2.7", NOW + 10) is None  # keys are independent
    assert limiter.blocked("client:airflow", NOW + 60) is None  # the first failure left
    limiter.record_failure("client:airflow", NOW + 61)  # 10 within (1, 61]: fine
    assert limiter.blocked("client:airflow", NOW + 61) is None
    limiter.record_failure("client:airflow", NOW + 61)  # 11: until the one at 2 leaves
    assert limiter.blocked("client:airflow", NOW + 61) == pytest.approx(1)
    assert limiter.blocked("client:airflow", NOW + 62) is None


def test_limiter_is_shared_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "auth.sqlite"
    first, second = FailureLimiter(path, max_failures=2), FailureLimiter(path, max_failures=2)
    SeenIds(path).remember("c", "id", NOW)  # same file as the replay store
    for limiter in (first, second, first):
        limiter.record_failure("addr:192.0.2.7", NOW)
    assert second.blocked("addr:192.0.2.7", NOW + 1) == pytest.approx(59)
    assert first.blocked("addr:192.0.2.7", NOW + 1) == pytest.approx(59)


def test_limiter_purges_old_failures(tmp_path: Path) -> None:
    limiter = FailureLimiter(tmp_path / "auth.sqlite", max_failures=1, window=60)
    for i in range(5):
        limiter.record_failure(f"addr:{i}", NOW)
    limiter.record_failure("addr:new", NOW + 120)
    rows = limiter._conn().execute("SELECT key FROM auth_failures").fetchall()
    assert rows == [("addr:new",)]


def test_seen_ids_age_by_the_boot_clock_not_the_wall_clock(tmp_path: Path) -> None:
    """A wall clock stepped forward must not purge ids that become acceptable again once it
    is corrected (tests/faults/test_clock_faults.py does this through the running service)."""
    elapsed = [10.0]
    store = SeenIds(tmp_path / "auth.sqlite", elapsed=lambda: elapsed[0], boot_id="boot-a")
    assert store.remember("c", "msg_1", now=1000.0, window=600)
    assert not store.remember("c", "msg_1", now=1001.0, window=600)
    elapsed[0] = 20.0
    assert store.remember("c", "msg_2", now=1000.0 + 1300, window=600)  # stepped: purge runs
    elapsed[0] = 25.0
    assert not store.remember("c", "msg_1", now=1002.0, window=600)  # corrected: still seen
    elapsed[0] = 10.0 + 601
    assert store.remember("c", "msg_1", now=1002.0 + 601, window=600)  # really 600 s later

    # ids from another boot age by the wall clock
    after_reboot = SeenIds(tmp_path / "auth.sqlite", elapsed=lambda: 5.0, boot_id="boot-b")
    assert not after_reboot.remember("c", "msg_2", now=2300.0 + 100, window=600)
    assert after_reboot.remember("c", "msg_2", now=2300.0 + 601, window=600)
