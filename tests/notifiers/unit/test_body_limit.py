"""A healthchecks server's `Ping-Body-Limit` is taken only when it is a sane number: a hostile or
broken server's "²" made the accepted ping count as failed (and be sent again on every retry),
and a limit of 10^14 made every later end ping fail before it was sent (MemoryError)."""

from __future__ import annotations

import pytest

from notifiers.healthchecks import MAX_BODY_LIMIT, parse_body_limit


@pytest.mark.parametrize("header, limit", [
    ("10000", 10_000), (" 100000 ", 100_000), (str(MAX_BODY_LIMIT), MAX_BODY_LIMIT),
    ("²", None), ("٣", None), ("-5", None), ("0", None), ("1e6", None), ("", None),
    ("100000000000000", None), (str(MAX_BODY_LIMIT + 1), None), ("12 34", None),
])
def test_only_sane_limits_are_taken(header: str, limit: int | None) -> None:
    assert parse_body_limit(header) == limit
