"""restic-backup-helper's metric families in the METRICS_DIR textfiles, from real runs: one
file per job (`restic_<job>.prom`), its family names and its `hostname` label (ours add
`job_name`), its `forget_exit_code` and replicate counts."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.workspace import Workspace

PEER_FAMILIES = ("last_exit_code", "last_success", "last_duration_seconds",
                 "last_started_timestamp", "last_finished_timestamp")


def samples(path: Path) -> dict[str, tuple[dict[str, str], float]]:
    return {s.name: (s.labels, s.value)
            for family in text_string_to_metric_families(path.read_text())
            for s in family.samples}


def test_backup_and_replicate_textfiles_carry_the_peers_families(ws: Workspace) -> None:
    metrics = ws.root / "textfile_collector"
    ws.write_config(f"""
[jobs.backup]
kind = "backup"
paths = ["{ws.data}"]
forget_args = ["--keep-last", "3"]

[jobs.replicate]
kind = "replicate"
lines = ["{ws.data};{ws.root / 'copy'};copy", "{ws.root / 'nowhere'};{ws.root / 'x'};copy"]

[notify]
metrics_dir = "{metrics}"
""")
    assert ws.run_json("backup")[0] == 0
    code, _ = ws.run_json("replicate")
    assert code != 0  # rclone's exit code for the failed line
    backup = samples(metrics / "restic_backup.prom")
    for suffix in (*PEER_FAMILIES, "last_files_new", "last_files_changed",
                   "last_files_unmodified", "last_forget_exit_code"):
        labels, _ = backup[f"restic_backup_{suffix}"]
        assert labels == {"hostname": "test-host", "job_name": "backup"}, suffix
    assert backup["restic_backup_last_forget_exit_code"][1] == 0
    assert backup["restic_backup_last_files_new"][1] == 20
    assert backup["restic_backup_last_success"][1] == 1
    replicate = samples(metrics / "restic_replicate.prom")
    assert replicate["restic_replicate_last_replicate_jobs_processed"][1] == 2
    assert replicate["restic_replicate_last_replicate_jobs_failed"][1] == 1
    assert replicate["restic_replicate_last_exit_code"][1] == code
    assert replicate["restic_replicate_last_success"][1] == 0


def test_no_forget_exit_code_when_no_forget_ran(ws: Workspace) -> None:
    metrics = ws.root / "textfile_collector"
    ws.write_config(f"""
[jobs.backup]
kind = "backup"
paths = ["{ws.data}/missing"]
forget_args = ["--keep-last", "3"]

[notify]
metrics_dir = "{metrics}"
""")
    assert ws.run_json("backup")[0] != 0
    backup = samples(metrics / "restic_backup.prom")
    assert "restic_backup_last_forget_exit_code" not in backup
    assert backup["restic_backup_last_success"][1] == 0
