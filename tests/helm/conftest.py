"""The chart rendered once per values variant (tests/support/helm.py renders it)."""

from __future__ import annotations

import pytest

from tests.support.helm import VARIANTS, Rendered, rendered_variant


@pytest.fixture(params=VARIANTS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return rendered_variant(request.param)


@pytest.fixture
def default() -> Rendered:
    return rendered_variant("default")


@pytest.fixture
def full() -> Rendered:
    return rendered_variant("full")


@pytest.fixture
def existing() -> Rendered:
    return rendered_variant("full-existing-secret")
