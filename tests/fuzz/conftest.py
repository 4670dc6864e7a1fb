"""The fuzzers' fixtures and hooks: one seed per test process, printed in the header and with
every failure, and one real service per test module (tests/support/fuzzing.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fuzzing import SEED, start_fuzz_service
from tests.support.processes import stop_process
from tests.support.service import Server


def pytest_report_header() -> str:
    return f"fuzz seed: {SEED} (FUZZ_SEED={SEED} repeats these examples)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections.append(("fuzz seed", f"FUZZ_SEED={SEED} repeats these examples"))


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory: pytest.TempPathFactory, repo_template18: Path
                 ) -> Iterator[Server]:
    """One service per test module (and xdist worker): starting one costs about a second."""
    srv = start_fuzz_service(tmp_path_factory.mktemp("fuzz-service"), repo_template18)
    try:
        yield srv
    finally:
        stop_process(srv.proc)
