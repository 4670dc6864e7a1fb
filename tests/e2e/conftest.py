"""The real service: `restic-runner serve` under gunicorn on a free loopback port, on restic
0.18 (the API does not depend on restic's version; tests/e2e/cli/ runs the CLI on both)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import stop_process
from tests.support.service import Server, start_api_server
from tests.support.workspace import Workspace


@pytest.fixture
def server(ws18: Workspace) -> Iterator[Server]:
    """The service with jobs `nightly`, `slow` and `check` and three API clients
    (tests/support/service.py: `start_api_server`)."""
    srv = start_api_server(ws18)
    yield srv
    stop_process(srv.proc)
