"""Every restic job kind against real restic 0.14 and 0.18 and real repositories."""

from __future__ import annotations

import json

from tests.support.paths import RUNNER
from tests.support.workspace import Workspace

BACKUP = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]
tags = ["automated", "nightly"]
"""


def _backup_config(ws: Workspace, extra: str = "") -> None:
    ws.write_config(BACKUP.format(data=ws.data) + extra)


def test_backup_records_stats_that_match_the_repository(ws: Workspace) -> None:
    _backup_config(ws)
    code, record = ws.run_json("nightly")
    assert code == 0, record
    assert record["status"] == "succeeded" and record["exit_code"] == 0
    snapshots = ws.snapshots()
    assert len(snapshots) == 1
    snap = snapshots[0]
    stats = record["stats"]
    # 0.14 prints the short id, 0.18 the full one: both identify the snapshot.
    assert snap["id"].startswith(stats["snapshot_id"])
    assert len(stats["snapshot_id"]) == (8 if ws.restic_version == "0.14" else 64)
    assert sorted(snap["tags"]) == ["automated", "nightly"]
    assert snap["hostname"] == "test-host"  # the config's, not the machine's (containers)
    assert stats["files_new"] == 20 and stats["files_changed"] == 0
    assert stats["total_files_processed"] == 20
    assert stats["total_bytes_processed"] == sum(
        p.stat().st_size for p in ws.data.rglob("*") if p.is_file())
    assert isinstance(stats["data_added"], int) and stats["data_added"] > 0
    assert stats["dirs_new"] >= 4
    assert record["steps"] == [{"name": "backup", "exit_code": 0,
                                "duration_seconds": record["steps"][0]["duration_seconds"]}]
    assert record["repository"] == str(ws.repo)
    assert record["progress"] is None
    assert record["trigger"]["source"] == "cli"

    # incremental: one changed, one new file
    (ws.data / "dir0" / "file000.txt").write_bytes(b"changed")
    (ws.data / "new.txt").write_bytes(b"new")
    code, second = ws.run_json("nightly")
    assert code == 0
    assert (second["stats"]["files_new"], second["stats"]["files_changed"],
            second["stats"]["files_unmodified"]) == (1, 1, 19)
    assert len(ws.snapshots()) == 2


def test_last_json_log_and_history_are_written(ws: Workspace) -> None:
    _backup_config(ws)
    code, record = ws.run_json("nightly")
    assert code == 0
    last = json.loads((ws.state / "last-nightly.json").read_text())
    # the record, and the job's last real success (never a dry run): this run
    assert last.pop("last_success") == {"run_id": record["run_id"],
                                        "finished_at": record["finished_at"]}
    assert last == record
    log = (ws.state / "logs" / "nightly" / f"{record['run_id']}.log").read_text()
    # restic's summary as its own text (as restic-backup-helper's logs had it), not its JSON
    assert "restic-runner: $ " in log and "\nFiles:  " in log and '"message_type"' not in log
    assert '"message_type":"status"' not in log  # progress lives in the record, not the log
    assert "finished: succeeded (exit 0)" in log
    assert "finished: succeeded" in record["log_tail"]
    status = json.loads(ws.cli("status", "--json", check=True).stdout)
    job = status["jobs"][0]
    assert job["last"]["run_id"] == record["run_id"] and job["running"] == []


def test_forget_after_backup_runs_only_after_success(ws: Workspace) -> None:
    _backup_config(ws, 'forget_args = ["--keep-last", "1"]\n')
    for _ in range(2):
        code, record = ws.run_json("nightly")
        assert code == 0
    assert [s["name"] for s in record["steps"]] == ["backup", "forget"]
    forget = record["steps"][1]
    assert forget["exit_code"] == 0
    assert forget["stats"]["snapshots_kept"] == 1 and forget["stats"]["snapshots_removed"] == 1
    assert len(ws.snapshots()) == 1
    # a failed backup (all sources missing) does not forget
    ws.write_config(BACKUP.format(data=ws.root / "missing") + 'forget_args = ["--keep-last", "1"]')
    code, failed = ws.run_json("nightly")
    assert code == 1 and failed["status"] == "failed"
    assert [s["name"] for s in failed["steps"]] == ["backup"]


def test_forget_with_prune_parses_the_json_line_before_the_text(ws: Workspace) -> None:
    _backup_config(ws)
    ws.run_json("nightly")
    ws.run_json("nightly")
    ws.write_config(BACKUP.format(data=ws.data) + """
[jobs.retention]
kind = "forget"
args = ["--keep-last", "1", "--prune"]
""")
    code, record = ws.run_json("retention")
    assert code == 0, record
    assert record["stats"] == {"snapshots_kept": 1, "snapshots_removed": 1, "groups": 1}
    assert len(ws.snapshots()) == 1


def test_prune_check_unlock(ws: Workspace) -> None:
    _backup_config(ws)
    ws.run_json("nightly")
    ws.write_config(BACKUP.format(data=ws.data) + """
[jobs.prune]
kind = "prune"
[jobs.check]
kind = "check"
args = ["--read-data-subset", "1/2"]
[jobs.unlock]
kind = "unlock"
""")
    for job in ("prune", "check", "unlock"):
        code, record = ws.run_json(job)
        assert code == 0, record
        assert record["status"] == "succeeded"
        assert record["steps"][0]["name"] == job
    _, check = ws.run_json("check")
    assert check["stats"]["errors_found"] == 0


def test_check_reports_a_damaged_repository(ws: Workspace) -> None:
    _backup_config(ws)
    ws.run_json("nightly")
    ws.write_config(BACKUP.format(data=ws.data) + """
[jobs.check]
kind = "check"
args = ["--read-data"]
""")
    pack = max((ws.repo / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    pack.chmod(0o600)
    raw = bytearray(pack.read_bytes())
    raw[100:120] = b"\0" * 20
    pack.write_bytes(bytes(raw))
    code, record = ws.run_json("check")
    assert code == 1 and record["status"] == "failed"
    if ws.restic_version == "0.18":  # 0.14 has no JSON summary for check
        assert record["stats"]["errors_found"] >= 1
    else:
        assert "errors_found" not in record["stats"]


def test_wrong_password_fails_with_the_versions_exit_code(ws: Workspace) -> None:
    wrong = ws.root / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    ws.write_config(BACKUP.format(data=ws.data) + f'password_file = "{wrong}"\n')
    done = ws.cli("run", "nightly")
    expected = 1 if ws.restic_version == "0.14" else 12
    assert done.returncode == expected, done.stderr
    assert "failed (exit" in done.stderr
    assert "wrong password" in done.stderr
    record = json.loads((ws.state / "last-nightly.json").read_text())
    assert record["status"] == "failed" and record["exit_code"] == expected
    assert "wrong password" in record["error"]


def test_missing_repository_fails_without_init(ws: Workspace) -> None:
    ws.repo = ws.root / "no-such-repo"
    _backup_config(ws)
    code, record = ws.run_json("nightly")
    assert code == (1 if ws.restic_version == "0.14" else 10)
    assert record["status"] == "failed"
    assert not ws.repo.exists()


def test_unreadable_file_is_a_warning(ws: Workspace) -> None:
    """restic exit 3: the snapshot is written, one file could not be read.

    As root, file modes do not stop reads, so the runner runs with CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH removed from its bounding set (restic inherits that).
    """
    import subprocess

    secret = ws.data / "dir1" / "unreadable.txt"
    secret.write_text("nobody may read this")
    secret.chmod(0o000)
    _backup_config(ws)
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
         "-dac_override,-dac_read_search", RUNNER, "run", "nightly", "--json"],
        env=ws.env(), capture_output=True, text=True, timeout=120)
    record = json.loads(done.stdout)
    assert done.returncode == 3, done.stderr
    assert record["status"] == "warning" and record["exit_code"] == 3
    assert record["stats"]["snapshot_id"]
    assert len(ws.snapshots()) == 1
    assert "unreadable.txt" in record["error"]
