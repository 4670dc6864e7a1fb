"""The one throttled refusal log (runner.refusals): a few lines per address a minute, then a
summary with the count; gunicorn's refusals in fixed words that never quote the request."""

from __future__ import annotations

import pytest
from gunicorn.http import errors

from runner.refusals import PARSE_REFUSALS, parse_refusal
from tests.conftest import wait_until

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


def test_the_summary_line_counts_what_was_not_logged() -> None:
    """After the window (a minute) the throttle writes one line with the count, even when the
    flood has stopped."""
    from runner.refusals import RefusalLog

    log = RefusalLog(lines_per_window=2, window=0.5)
    lines: list[str] = []

    class Capture:
        def warning(self, message: str, *args: object) -> None:
            lines.append(message % args)

    import runner.refusals as refusals

    real = refusals.log
    refusals.log = Capture()  # type: ignore[assignment]
    try:
        for _ in range(10):
            log.note("10.0.0.7", 400, "the request line is malformed")
        log.note("10.0.0.8", 401, "authentication failed (bad-token)")
        wait_until(lambda: any("more requests" in line for line in lines), timeout=5)
    finally:
        refusals.log = real
    assert lines[:2] == ["refused 400 from 10.0.0.7: the request line is malformed"] * 2
    assert "refused 401 from 10.0.0.8: authentication failed (bad-token)" in lines
    assert ("refused 8 more requests from 10.0.0.7 in the last minute (not logged one by one): "
            "400 the request line is malformed: 8") \
        in lines
    assert len(lines) == 4
