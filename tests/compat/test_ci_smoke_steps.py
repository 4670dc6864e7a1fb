"""Every step of the peer's own smoke test (restic-backup-helper 2.14.2,
`scripts/ci-smoke-test.sh`, on `ci/docker-compose.smoke.yml`) against restic-runner's CLI in
environment mode: `docker compose exec <service> /bin/<cmd>` is `restic-runner compat <cmd>`
(what the image's /bin/<cmd> shim runs), `docker compose run <service> <cmd>` the same with the
service's variables, `/var/log` the compat log directory. The image half (podman) is
tests/image's.

A step passes as the peer's script asserts it, or is a deliberate difference listed in
DIFFERENCES (the draft of docs/migration.md's list), asserted in its documented form:
- the JSON documents of `config-check`, `status`/`health-summary` and `doctor`: asserted as the
  peer's when they carry its schema name, else as restic-runner's own schema (same facts);
- commands restic-runner has no equivalent for: exit non-zero with one line naming what to use
  instead (issue 15, item 6), else the peer's outputs.
The steps share one environment per module (the `smoke` fixture); a step that needs a snapshot
makes one first, so each runs alone too. Each step also runs on the peer's own scripts (the
`smoke` fixture's "peer" side, tests.support.peer): its assertions are the peer's, and hold
there."""

from __future__ import annotations

import hashlib
import json
import subprocess
from typing import Any

import pytest

from tests.support.compose import host_path
from tests.support.composeenv import Environment
from tests.support.envmode import explain

pytestmark = pytest.mark.slow

DIFFERENCES = {
    "restic version": "the image's restic (tests/image); here the restic on PATH",
    "release metadata": "RESTIC_BACKUP_HELPER_RELEASE is baked into the peer's image; "
                        "restic-runner reports its own version (`--version`, `release` in "
                        "last-<job>.json)",
    "JSON schemas": "config-check, status/health-summary and doctor print restic-runner's "
                    "documents (schema restic-runner.*) unless they carry the peer's schema "
                    "name; the peer's recent_json list of 14 files has no equivalent",
    "run records": "last-<job>.json of what restic-runner runs as a job (a worker, restore, "
                   "restore-test) is its run record: dry_run is its boolean, not \"ON\"",
    "no equivalent": "mount-snapshot, snapshot-export: one line naming what to use instead, "
                     "non-zero exit; rotate_log without a compat log directory has no cron.log "
                     "to rotate: one line, exit 2",
}


def compat(env: Environment, *args: str, **changes: str) -> subprocess.CompletedProcess[str]:
    return env.command(*args, **changes)


def ok(env: Environment, *args: str, **changes: str) -> subprocess.CompletedProcess[str]:
    done = compat(env, *args, **changes)
    assert done.returncode == 0, explain(done)
    return done


def last_json(env: Environment, command: str) -> dict[str, Any]:
    """/var/log/last-<command>.json, as the smoke test `cat`s it."""
    path = env.log / f"last-{command}.json"
    assert path.exists(), f"{command} wrote no last-{command}.json in the compat log directory"
    return json.loads(path.read_text())


def snapshots(env: Environment) -> list[dict[str, Any]]:
    done = env.restic("snapshots", "--json")
    assert done.returncode == 0, explain(done)
    return json.loads(done.stdout)


def ensure_snapshot(env: Environment) -> None:
    if not snapshots(env):
        done = env.backup()
        assert done.returncode == 0, explain(done)


def assert_no_equivalent(done: subprocess.CompletedProcess[str]) -> None:
    """restic-runner's answer for a command it has no equivalent of: one line, non-zero."""
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode != 0 and len(lines) == 1, explain(done)


def test_restic_binary(smoke: Environment) -> None:
    """`restic version` (a deliberate difference: the image's restic is tests/image's)."""
    done = smoke.restic("version")
    assert done.returncode == 0 and done.stdout.startswith("restic "), explain(done)


def test_release_metadata(smoke: Environment) -> None:
    """The peer checks its baked RESTIC_BACKUP_HELPER_RELEASE (deliberate difference): ours
    reports its version."""
    if smoke.peer is not None:
        ensure_snapshot(smoke)
        assert last_json(smoke, "backup")["release"] == smoke.peer.env(
            smoke.runner.restic, {})["RESTIC_BACKUP_HELPER_RELEASE"]
        return
    done = smoke.runner.cli("--version")
    assert done.returncode == 0 and done.stdout.strip(), explain(done)


def test_config_check(smoke: Environment) -> None:
    ok(smoke, "config-check")


def test_config_check_json(smoke: Environment) -> None:
    """Schema + exit_code (the peer's document), or restic-runner's with the same facts."""
    document = json.loads(ok(smoke, "config-check", "--json").stdout)
    if document.get("schema") == "restic-backup-helper.config-check/1":
        assert document["command"] == "config-check"
        assert document["exit_code"] == 0 and document["errors"] == 0, document
        keys = {c["key"] for c in document["checks"]}
        for required in ("RESTIC_REPOSITORY", "RESTIC_PASSWORD", "RESTIC_TAG", "BACKUP_PATHS"):
            assert required in keys, (required, keys)
    else:
        assert document["ok"] is True, document
        assert "backup" in document["jobs"], document


def test_cron_list(smoke: Environment) -> None:
    """`cron-list`, both as the env preview (`compose run`) and in the running container:
    exit 0, and the backup worker's schedule is shown."""
    done = ok(smoke, "cron-list")
    assert "backup" in done.stdout, done.stdout


def test_backup_with_hooks_and_forget(smoke: Environment) -> None:
    """/bin/backup: exit 0, the smoke hooks run, the inline forget runs (RESTIC_FORGET_ARGS
    set, FORGET_CRON not), a snapshot tagged ci-smoke exists."""
    ok(smoke, "backup")
    record = last_json(smoke, "backup")
    assert record["exit_code"] == 0 and record.get("forget_exit_code") == "0", record
    assert any(s.get("tags") == ["ci-smoke"] for s in snapshots(smoke))


def test_snapshots_exist(smoke: Environment) -> None:
    """`restic snapshots` on the repository succeeds after the backup step."""
    ensure_snapshot(smoke)
    assert snapshots(smoke)


def test_check(smoke: Environment) -> None:
    ensure_snapshot(smoke)
    ok(smoke, "check")
    assert last_json(smoke, "check")["exit_code"] == 0


def test_status_and_health_summary(smoke: Environment) -> None:
    ensure_snapshot(smoke)
    ok(smoke, "backup")
    ok(smoke, "status")
    document = json.loads(ok(smoke, "health-summary", "--json").stdout)
    assert document["exit_code"] == 0, document
    assert document["verdict"] in ("OK", "WARN"), document
    if document.get("schema") == "restic-backup-helper.status/1":
        assert document["command"] == "status"
        for section in ("runtime", "crontab", "schedules", "jobs", "recent_json", "findings"):
            assert section in document, section
        jobs = {j["job"]: j for j in document["jobs"]}
        assert jobs["backup"]["status"] == "ok" and jobs["backup"]["present"] is True
    else:
        jobs = {j["job"]: j for j in document["jobs"]}
        assert jobs["backup"]["last"]["status"] == "succeeded", jobs["backup"]


def test_doctor_json(smoke: Environment) -> None:
    document = json.loads(ok(smoke, "doctor", "--json").stdout)
    if document.get("schema") == "restic-backup-helper.doctor/1":
        assert document["exit_code"] == 0 and document["errors"] == 0, document
        assert document["repository_probe"]["status"] == "ok", document
    else:
        assert document["ok"] is True and document["failures"] == 0, document


def test_replicate_bisync_first_run(smoke: Environment) -> None:
    """/bin/replicate on the smoke job file (one local bisync pair, first run): exit 0 (the
    peer's recovery: copy both ways, then --resync) and the file is copied. The peer counts
    the line failed even when its recovery succeeds (replicate.sh counts the failed bisync
    before recovering): processed 1, failed 1, exit 0."""
    ok(smoke, "replicate")
    assert (host_path(smoke.root, "/data/sync_b") / "a.txt").exists()
    record = last_json(smoke, "replicate")
    assert record["exit_code"] == 0
    assert (record["replicate_jobs_processed"], record["replicate_jobs_failed"]) == ("1", "1")


def test_sources_report(smoke: Environment) -> None:
    done = compat(smoke, "sources-report")
    if done.returncode != 0:
        assert_no_equivalent(done)
        return
    record = last_json(smoke, "sources-report")
    assert record["job"] == "sources-report" and record["exit_code"] == 0, record
    assert int(record.get("sources_count", 0)) >= 1 and int(record.get("total_files", 0)) >= 1


def test_forget_preview(smoke: Environment) -> None:
    ensure_snapshot(smoke)
    ok(smoke, "forget-preview")
    record = last_json(smoke, "forget-preview")
    assert record["job"] == "forget-preview" and record["exit_code"] == 0, record


def test_init_repo_dry_run_on_an_existing_repository(smoke: Environment) -> None:
    ok(smoke, "init-repo", "--dry-run", "--yes")
    record = last_json(smoke, "init-repo")
    assert record["job"] == "init-repo" and record["exit_code"] == 0, record
    assert str(record.get("dry_run")) == "ON" and str(record.get("repo_existed")) == "true"


def test_notify_test_dry_run(smoke: Environment) -> None:
    """With MAILX_RCPT and WEBHOOK_URL given for this call only; --dry-run sends nothing."""
    ok(smoke, "notify-test", "--all", "--dry-run", MAILX_RCPT="ops@smoke.invalid",
       WEBHOOK_URL="https://webhook.smoke.invalid/test")
    record = last_json(smoke, "notify-test")
    assert record["job"] == "notify-test" and record["exit_code"] == 0, record
    assert str(record.get("dry_run")) == "ON", record
    assert record.get("mail_result") == "dry-run" == record.get("webhook_result"), record


def test_restore_dry_run(smoke: Environment) -> None:
    ensure_snapshot(smoke)
    target = smoke.root / "restore-smoke"
    target.mkdir(exist_ok=True)
    ok(smoke, "restore", "--dry-run", "--yes", "--target", str(target))
    record = last_json(smoke, "restore")
    assert record["job"] == "restore" and record["exit_code"] == 0, record
    assert record.get("dry_run") in ("ON", True), record
    assert not any(target.iterdir()), "a dry run restored files"


def test_snapshot_export_dry_run(smoke: Environment) -> None:
    ensure_snapshot(smoke)
    done = compat(smoke, "snapshot-export", "--dry-run")
    if done.returncode != 0:
        assert_no_equivalent(done)
        return
    record = last_json(smoke, "snapshot-export")
    assert record["job"] == "snapshot-export" and record["exit_code"] == 0, record
    assert record.get("dry_run") in ("ON", True), record


def test_restore_test_with_a_canary(smoke: Environment) -> None:
    """The rehearsal restores the latest snapshot into a temporary directory, checks the
    canary's SHA-256 against the seeded file, and cleans up."""
    ensure_snapshot(smoke)
    canary = host_path(smoke.root, "/data/backup_src") / "smoke.txt"
    digest = hashlib.sha256(canary.read_bytes()).hexdigest()
    ok(smoke, "restore-test", "--min-files", "1", "--canary", f"{canary}={digest}")
    record = last_json(smoke, "restore-test")
    assert record["job"] == "restore-test" and record["exit_code"] == 0, record
    assert record.get("verification") == "passed", record
    assert int(record.get("files_restored", 0)) >= 1 and int(record.get("bytes_restored", 0)) > 0
    assert int(record.get("min_files", 0)) == 1 and record.get("min_files_met") in ("true", True)
    assert (int(record.get("canary_total", 0)), int(record.get("canary_passed", 0)),
            int(record.get("canary_failed", 0))) == (1, 1, 0), record
    assert record.get("target_autotmp") == "ON" and record.get("cleanup_status") == "cleaned"
    results = record.get("canary_results") or []
    assert len(results) == 1 and results[0]["status"] == "passed", results


def test_restore_test_dry_run(smoke: Environment) -> None:
    ensure_snapshot(smoke)
    ok(smoke, "restore-test", "--dry-run")
    record = last_json(smoke, "restore-test")
    assert record["job"] == "restore-test" and record["exit_code"] == 0, record
    # restic-runner's last-restore-test.json is a run record: its dry_run is the record's
    # boolean (DIFFERENCES), the helper's was "ON"
    assert record.get("dry_run") in ("ON", True), record
    assert record.get("verification") == "skipped", record


def test_repository_file_precedence(smoke: Environment) -> None:
    """RESTIC_REPOSITORY empty, RESTIC_REPOSITORY_FILE naming a file whose first non-blank,
    non-comment line is the repository: the configuration is valid and a backup lands there."""
    url_file = host_path(smoke.root, "/data/repo.url")
    repository = smoke.variables["RESTIC_REPOSITORY"]
    url_file.write_text(f"# Repo URL for smoke RESTIC_REPOSITORY_FILE test\n{repository}\n")
    given = {"RESTIC_REPOSITORY": "", "RESTIC_REPOSITORY_FILE": str(url_file)}
    document = json.loads(ok(smoke, "config-check", "--json", **given).stdout)
    if document.get("schema") == "restic-backup-helper.config-check/1":
        assert document["exit_code"] == 0 and document["errors"] == 0, document
        repo_checks = [c for c in document["checks"] if c["key"] == "RESTIC_REPOSITORY"]
        assert repo_checks and repo_checks[0]["status"] == "ok", repo_checks
        assert repository in repo_checks[0]["message"], repo_checks[0]
        assert not [c for c in document["checks"] if c["key"] == "RESTIC_REPOSITORY_FILE"]
    else:
        assert document["ok"] is True, document
    before = len(snapshots(smoke))
    done = smoke.backup(**given)
    assert done.returncode == 0, explain(done)
    assert len(snapshots(smoke)) == before + 1


def test_rotate_log(smoke: Environment) -> None:
    """CRON_LOG_MAX_SIZE=1: one appended byte makes /bin/rotate_log archive cron.log."""
    log = smoke.log
    log.mkdir(parents=True, exist_ok=True)
    with (log / "cron.log").open("a") as cron_log:
        cron_log.write("x")
    done = compat(smoke, "rotate_log")
    if done.returncode != 0:
        assert_no_equivalent(done)
        return
    assert list(log.glob("cron_log_*.tar.gz")), sorted(p.name for p in log.iterdir())
