"""The leak suite's evidence: its deployment runs once per session (tests/support/
leak_scenario.py), its canaries and scanners are in tests/support/leaks.py."""

from __future__ import annotations

import pytest

from tests.support.leak_scenario import shared_evidence
from tests.support.leaks import Evidence


@pytest.fixture(scope="session")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Evidence:
    return shared_evidence(tmp_path_factory)
