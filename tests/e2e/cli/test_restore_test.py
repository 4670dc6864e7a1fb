"""restore-test: restore a snapshot into a scratch directory, check file count and SHA-256
canaries, clean up; the verdict and numbers in the run record and the metrics."""

from __future__ import annotations

import hashlib
import json

from tests.support.workspace import Workspace


def _config(ws: Workspace, restore_test: str) -> None:
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]

[jobs.rehearsal]
kind = "restore-test"
target_dir = "{ws.root / 'scratch'}"
{restore_test}
""")


def test_a_good_snapshot_passes(ws: Workspace) -> None:
    canary = ws.data / "dir0" / "file000.txt"
    digest = hashlib.sha256(canary.read_bytes()).hexdigest()
    _config(ws, f'min_files = 20\ncanaries = {{ "{canary}" = "{digest}" }}')
    assert ws.run_json("nightly")[0] == 0
    code, record = ws.run_json("rehearsal")
    assert code == 0 and record["status"] == "succeeded", record["error"]
    stats = record["stats"]
    assert stats["files_restored"] == 20 and stats["canaries_passed"] == 1
    assert stats["verdict"] == "passed"
    assert stats["bytes_restored"] == sum(p.stat().st_size for p in ws.data.rglob("*")
                                          if p.is_file())
    assert [s["name"] for s in record["steps"]] == ["prepare", "restore", "verify", "cleanup"]
    assert not (ws.root / "scratch").exists()  # cleaned up
    from notifiers.metrics import exposition
    from runner.configuration.load import load_config
    from runner.engine.history import History

    text = exposition(load_config(str(ws.config_path)), History(ws.state)).decode()
    labels = '{hostname="test-host",job_name="rehearsal"}'
    assert f"restic_restore_test_last_files_restored{labels} 20.0" in text
    assert f"restic_restore_test_last_canaries_failed{labels} 0.0" in text


def test_a_failed_rehearsal_says_why_and_cleans_up(ws: Workspace) -> None:
    canary = ws.data / "dir1" / "file001.txt"
    _config(ws, f'min_files = 100\ncanaries = {{ "{canary}" = "{"0" * 64}", '
                f'"{ws.data}/not-there" = "{"1" * 64}" }}')
    assert ws.run_json("nightly")[0] == 0
    code, record = ws.run_json("rehearsal")
    assert code == 1 and record["status"] == "failed"
    assert "fewer than min_files = 100" in record["error"]
    assert f"canary {canary}: mismatch" in record["error"]
    assert "not-there: missing" in record["error"]
    assert record["stats"]["canaries_failed"] == 2
    assert not (ws.root / "scratch").exists()


def test_no_snapshot_fails_at_restore_and_keep(ws: Workspace) -> None:
    _config(ws, "keep = true")
    code, record = ws.run_json("rehearsal")  # nothing backed up yet
    assert record["status"] == "failed" and code != 0
    assert [s["name"] for s in record["steps"]] == ["prepare", "restore", "cleanup"]
    assert ws.run_json("nightly")[0] == 0
    code, record = ws.run_json("rehearsal")
    assert code == 0
    assert (ws.root / "scratch").is_dir()  # keep = true
    summary = json.loads(ws.cli("config", "check", "--json").stdout)
    assert summary["jobs"]["rehearsal"]["kind"] == "restore-test"
