"""The fault matrix's fixtures: a webhook receiver and an SMTP server that are down until a test
starts them. The five properties every fault test checks, and the faults themselves, are in
tests/support/faults.py and tests/support/filesystems.py. The workspace is `ws18` (restic 0.18:
the faults of the service, the state directory and the notifiers do not depend on restic's
version); test_process_faults.py uses `ws`, both versions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import free_port
from tests.support.receivers import Receiver
from tests.support.smtp import ScriptedSmtp


@pytest.fixture
def hook() -> Iterator[Receiver]:
    """A webhook receiver on a loopback port of its own, not started yet (a receiver that is
    down); tests script its answers, late ones included."""
    receiver = Receiver(free_port())
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp() -> Iterator[ScriptedSmtp]:
    server = ScriptedSmtp()
    yield server
    server.stop()
