"""The repository probe tells "missing" from every other failure on restic 0.14 (exit 1 for
all, and "Is there a repository…?" even after a refused connection) and 0.18 (exit 10); the
start-up init creates only a repository that does not exist."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.configuration.load import load_config
from runner.engine.binaries import probe_repository
from runner.engine.repoinit import prepare_repositories
from tests.support.paths import RESTIC_BINARIES
from tests.support.processes import free_port
from tests.support.rest_server import start_rest_server
from tests.support.workspace import init_template


def _env(tmp_path: Path, repository: str, password: str = "template-password-0") -> dict:
    pw = tmp_path / "pw"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RESTIC_REPOSITORY": repository,
            "RESTIC_PASSWORD_FILE": str(pw), "RESTIC_CACHE_DIR": str(tmp_path / "cache")}


@pytest.fixture(scope="module")
def empty_rest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """rclone's restic REST server on an empty directory: repositories there do not exist."""
    server = start_rest_server(tmp_path_factory.mktemp("rest"))
    yield server.url.rstrip("/")
    server.stop()


@pytest.mark.slow  # ~20 s on restic 0.18
@pytest.mark.parametrize("version", sorted(RESTIC_BINARIES))
def test_missing_is_told_apart_from_other_failures(version: str, tmp_path: Path,
                                                   empty_rest_server: str) -> None:
    restic = str(RESTIC_BINARIES[version])
    (tmp_path / "t").mkdir()
    existing = init_template(Path(restic), tmp_path / "t") / "repo"
    closed = free_port()
    cases = {
        "missing local": (str(tmp_path / "nothing-here"), "template-password-0", "missing"),
        # a path may hold what an error about the network would say (pytest-403 did once)
        "missing local, a path of network words": (
            str(tmp_path / "pytest-403" / "timeout-EOF-500-TLS"), "template-password-0",
            "missing"),
        "missing on a REST server": (f"{empty_rest_server}/nope", "template-password-0", "missing"),
        "missing on a REST server, a path of network words": (
            f"{empty_rest_server}/pytest-403/timeout-EOF-500", "template-password-0", "missing"),
        "connection refused": (f"rest:http://127.0.0.1:{closed}/repo", "template-password-0",
                               "error"),
        "wrong password": (str(existing), "not-the-password", "wrong-password"),
        "a file, not a repository": (str(tmp_path / "t" / "password"), "x", "error"),
        "existing": (str(existing), "template-password-0", "ok"),
    }
    for name, (repository, password, expected) in cases.items():
        probe = probe_repository(restic, _env(tmp_path, repository, password), timeout=8)
        assert probe.status == expected, (name, probe)


@pytest.mark.slow  # three repository probes and an init: ~8 s
def test_startup_inits_only_a_missing_repository(tmp_path: Path) -> None:
    restic = RESTIC_BINARIES["0.14"]  # the version whose exit codes cannot tell
    (tmp_path / "t").mkdir()
    template = init_template(restic, tmp_path / "t")
    wrong = tmp_path / "wrong-password-repo"
    shutil.copytree(template / "repo", wrong)
    before = sorted(p.name for p in (wrong / "keys").iterdir())
    good_pw, bad_pw = tmp_path / "good.pw", tmp_path / "bad.pw"
    good_pw.write_text("a-new-password\n")
    bad_pw.write_text("not-its-password\n")
    for p in (good_pw, bad_pw):
        p.chmod(0o600)
    refused = free_port()
    config = tmp_path / "c.toml"
    config.write_text(f"""
state_dir = "{tmp_path / 'state'}"
[restic]
binary = "{restic}"
init_if_missing = true
cache_dir = "{tmp_path / 'cache'}"
[jobs.fresh]
kind = "check"
repository = "{tmp_path / 'fresh-repo'}"
password_file = "{good_pw}"
[jobs.wrong]
kind = "check"
repository = "{wrong}"
password_file = "{bad_pw}"
[jobs.offline]
kind = "check"
repository = "rest:http://127.0.0.1:{refused}/repo"
password_file = "{good_pw}"
""")
    states = {s.jobs[0]: s for s in prepare_repositories(load_config(str(config)), timeout=8)}
    assert states["fresh"].status == "initialised"
    assert (tmp_path / "fresh-repo" / "config").is_file()
    assert states["wrong"].status == "wrong-password"
    assert sorted(p.name for p in (wrong / "keys").iterdir()) == before  # untouched
    assert states["offline"].status == "error"
    assert "connection refused" in states["offline"].message  # the reason, not the location
    again = {s.jobs[0]: s for s in prepare_repositories(load_config(str(config)), timeout=8)}
    assert again["fresh"].status == "ok"
