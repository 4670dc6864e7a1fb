"""Real receivers on free loopback ports, started and stopped around each test: Debian's
`prometheus-pushgateway` (with basic auth from a web config) and an aiosmtpd SMTP server
(STARTTLS and AUTH, self-signed certificate); the code is in tests/support/pushgateway.py and
smtp.py. The scripted HTTP receivers for webhooks and healthchecks, `receiver` and
`hc_receiver`, are tests/conftest.py's (tests/e2e/cli uses them too)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pushgateway import PG_PASSWORD, Pushgateway, start_pushgateway
from tests.support.smtp import SmtpServer, start_smtp_server


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[Pushgateway]:
    gateway = start_pushgateway(tmp_path, password=PG_PASSWORD)
    yield gateway
    gateway.stop()


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    """aiosmtpd with STARTTLS required before AUTH, and one user (quirks: environment.md §6)."""
    server = start_smtp_server(tmp_path)
    yield server
    server.stop()
