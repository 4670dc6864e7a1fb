"""Fixtures of the compatibility proof: `smoke`, the peer's CI smoke environment set up once
per module (its repository initialised, its data seeded, as the peer's scripts/ci-smoke-test.sh
does), on restic-runner and on the peer's own scripts; `smtp`, a plain SMTP server on a
loopback port (not started); `smtp_server`, one with STARTTLS and AUTH (as tests/notifiers'
fixture of that name)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.composeenv import Environment, peer_smoke_environment, smoke_environment
from tests.support.envmode import start_up
from tests.support.paths import ONE_RESTIC
from tests.support.smtp import ScriptedSmtp, SmtpServer, start_smtp_server
from tests.support.workspace import restic_binary


@pytest.fixture(scope="module", params=["restic-runner", "peer"])
def smoke(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Environment:
    """The smoke environment on restic-runner, and on the peer's own scripts (the steps'
    assertions hold there: they are the peer's)."""
    root, restic = tmp_path_factory.mktemp("smoke"), restic_binary(ONE_RESTIC)
    if request.param == "peer":
        return peer_smoke_environment(root, restic)
    env = smoke_environment(root, restic)
    start_up(env.runner, env.ready)
    return env


@pytest.fixture
def smtp() -> Iterator[ScriptedSmtp]:
    server = ScriptedSmtp()
    yield server
    server.stop()


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    """aiosmtpd with STARTTLS required before AUTH, and one user (quirks: environment.md §6)."""
    server = start_smtp_server(tmp_path)
    yield server
    server.stop()
