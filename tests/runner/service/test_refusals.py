"""The one throttled refusal log (runner.service.refusals): a few lines per address a minute, then a
summary with the count; gunicorn's refusals in fixed words that never quote the request."""

from __future__ import annotations

import pytest
from gunicorn.http import errors

from runner.service.refusals import PARSE_REFUSALS, RefusalLog, address_group, parse_refusal
from tests.support.processes import wait_until

SECRET = "pä/ss@w:rd%20-guess"


@pytest.mark.parametrize("exc", [
    errors.InvalidRequestLine(SECRET), errors.InvalidRequestMethod(SECRET),
    errors.InvalidHTTPVersion(SECRET), errors.InvalidHeader(SECRET),
    errors.InvalidHeaderName(SECRET), errors.LimitRequestLine(len(SECRET), 10),
    errors.LimitRequestHeaders(SECRET), errors.ObsoleteFolding(SECRET),
    errors.UnsupportedTransferCoding(SECRET), errors.InvalidChunkSize(SECRET),
    errors.ChunkMissingTerminator(SECRET), errors.InvalidChunkExtension(SECRET),
    errors.InvalidProxyLine(SECRET), errors.ForbiddenProxyRequest(SECRET),
    errors.InvalidSchemeHeaders(), errors.ConfigurationProblem(SECRET),
    errors.ExpectationFailed(SECRET),
], ids=lambda e: type(e).__name__)
def test_gunicorn_refusals_are_fixed_words(exc: Exception) -> None:
    quotes = not isinstance(exc, (errors.InvalidSchemeHeaders, errors.LimitRequestLine))
    assert (SECRET in str(exc)) == quotes  # gunicorn's own message quotes the request
    status, reason, detail = parse_refusal(exc) or (0, "", "")
    assert 400 <= status < 600 and status != 500 and reason
    assert detail in {d for _, _, d in PARSE_REFUSALS.values()}
    assert SECRET not in detail and "%" not in detail


def test_errors_of_ours_are_not_refusals() -> None:
    assert parse_refusal(ValueError(SECRET)) is None
    assert parse_refusal(errors.InvalidResponseHeader(SECRET)) is None  # we sent a bad header


class _Capture:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, message: str, *args: object) -> None:
        self.lines.append(message % args)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> _Capture:
    import runner.service.refusals as refusals

    capture = _Capture()
    monkeypatch.setattr(refusals, "log", capture)
    return capture


def test_the_summary_line_counts_what_was_not_logged(captured: _Capture) -> None:
    """After the window the throttle writes one line with the counts, even when the flood has
    stopped."""
    log = RefusalLog(lines_per_group=2, lines_per_window=10, window=0.5)
    for _ in range(10):
        log.note("10.0.0.7", 400, "the request line is malformed")
    log.note("10.0.0.8", 401, "authentication failed (bad-token)")
    wait_until(lambda: any("more requests" in line for line in captured.lines), timeout=5)
    lines = captured.lines
    assert lines[:2] == ["refused 400 from 10.0.0.7: the request line is malformed"] * 2
    assert "refused 401 from 10.0.0.8: authentication failed (bad-token)" in lines
    assert lines[-1] == ("8 more requests in the last minute not logged one by one (from 1 "
                         "address groups; most from 10.0.0.7: 8): 400 the request line is "
                         "malformed: 8")
    assert len(lines) == 4


def test_rotating_addresses_does_not_escape_the_budgets(captured: _Capture) -> None:
    """A local user can bind any 127.x.y.z: loopback is one group. Distinct addresses from
    anywhere share the per-window budget."""
    log = RefusalLog(lines_per_group=5, lines_per_window=60, window=3600)  # no summary in the test
    for i in range(1000):
        log.note(f"127.{i % 250}.{i // 250}.7", 401, "authentication failed (bad-token)")
    assert len(captured.lines) == 5
    for i in range(1000):
        log.note(f"10.1.{i // 250}.{i % 250}", 400, "the request line is malformed")
    assert len(captured.lines) == 60
    for i in range(100):
        log.note(f"2001:db8::{i:x}", 400, "the request line is malformed")  # one /64
    assert len(captured.lines) == 60


@pytest.mark.parametrize(("address", "group"), [
    ("127.0.0.1", "loopback"), ("127.200.1.9", "loopback"), ("::1", "loopback"),
    ("10.0.0.7", "10.0.0.7"), ("2001:db8::1", "2001:db8::/64"), ("nonsense", "nonsense"),
    ("::ffff:10.0.0.7", "10.0.0.7"), ("::ffff:127.0.0.1", "loopback"),
    (None, "unknown")])
def test_address_groups(address: str | None, group: str) -> None:
    assert address_group(address) == group
