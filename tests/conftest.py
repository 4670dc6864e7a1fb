"""Fixtures for every directory. The code behind them is in tests/support/.

- `ws`: a `Workspace` on each restic version (0.14 from Debian 12, 0.18 from Debian 13), with
  a copy of an initialised repository: the engine's and the CLI's behaviour depends on restic's.
- `ws18`: a `Workspace` on restic 0.18 only, for the suites whose behaviour does not depend on
  restic's version (the API, the notifiers, most faults, load, the secret checks).
- `restic_version`, `restic_bin`, `repo_template`: what `ws` is made of (session-scoped).
- `history`: an empty history store (runner.engine.history.History) under tmp_path/state.
- `receiver`, `hc_receiver`: scripted HTTP receivers on loopback ports, for webhooks and
  healthchecks (the latter advertises a small Ping-Body-Limit).
- `wait_for`: `tests.support.processes.wait_until`, as a fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.engine.history import History
from security.masking import REGISTRY
from tests.support.paths import ONE_RESTIC, PRECIOUS, RESTIC_BINARIES
from tests.support.processes import free_port, wait_until
from tests.support.receivers import Receiver
from tests.support.workspace import Workspace, make_workspace, restic_binary, shared_template


@pytest.fixture(scope="session", params=sorted(RESTIC_BINARIES))
def restic_version(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def restic_bin(restic_version: str) -> Path:
    return restic_binary(restic_version)


@pytest.fixture(scope="session")
def repo_template(restic_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_template(tmp_path_factory, restic_bin, f"template-{restic_bin.parent.name}")


@pytest.fixture
def ws(tmp_path: Path, restic_bin: Path, restic_version: str, repo_template: Path) -> Workspace:
    return make_workspace(tmp_path, restic_bin, restic_version, repo_template)


@pytest.fixture(scope="session")
def repo_template18(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised restic 0.18 repository (not `restic_version`'s parameter: that would
    run every test using it once per version)."""
    binary = restic_binary(ONE_RESTIC)
    return shared_template(tmp_path_factory, binary, f"template-{binary.parent.name}")


@pytest.fixture
def ws18(tmp_path: Path, repo_template18: Path) -> Workspace:
    return make_workspace(tmp_path, RESTIC_BINARIES[ONE_RESTIC], ONE_RESTIC, repo_template18)


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    return wait_until


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    store = History(tmp_path / "state")
    yield store
    store.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port()).start()
    yield r
    r.stop()


@pytest.fixture
def hc_receiver() -> Iterator[Receiver]:
    """A healthchecks.io stand-in that advertises a small Ping-Body-Limit."""
    r = Receiver(free_port(), default=(200, {"Ping-Body-Limit": "1500"})).start()
    yield r
    r.stop()


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the state directory that a followed link would damage."""
    path = tmp_path / "victim.txt"
    path.write_bytes(PRECIOUS)
    path.chmod(0o644)
    return path


@pytest.fixture(autouse=True)
def isolated_secret_registry() -> Iterator[None]:
    """What a test registers for masking in this process (a fuzzed config's inline password
    `"forget"`, say) stays with that test: the registry is process-wide, and a later test in
    the same worker would find `forget` masked in restic's output."""
    before = REGISTRY.registered()
    yield
    REGISTRY.restore(before)
