"""`compat config-check`'s findings under restic-backup-helper's keys, from its variables and
from a config file, in-process (the command: tests/e2e/cli/test_compat_commands.py and
tests/compat/test_ci_smoke_steps.py)."""

from __future__ import annotations

from pathlib import Path

from runner.cli.peerchecks import config_file_checks, environment_checks
from runner.configuration.config import Config, JobConfig, RcloneSettings, ResticSettings

SECRET = "s3cr3t-canary-7f"


def _by_key(checks: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {c["key"]: c for c in checks}


def test_the_helpers_keys_from_its_variables(tmp_path: Path) -> None:
    checks = _by_key(environment_checks({
        "RESTIC_REPOSITORY": f"rest:https://user:{SECRET}@host.invalid/repo",
        "RESTIC_PASSWORD": SECRET, "BACKUP_ROOT_DIR": "/data"}))
    assert [checks[k]["status"] for k in ("RESTIC_REPOSITORY", "RESTIC_PASSWORD", "RESTIC_TAG",
                                         "BACKUP_PATHS")] == ["ok"] * 4
    assert "automated" in checks["RESTIC_TAG"]["message"]  # the helper's image default
    assert "host.invalid/repo" in checks["RESTIC_REPOSITORY"]["message"]
    assert all(SECRET not in c["message"] for c in checks.values())


def test_the_repository_file_wins_and_its_problems_have_its_key(tmp_path: Path) -> None:
    url = tmp_path / "repo.url"
    url.write_text(f"# a comment\n\n{tmp_path / 'repo'}\n")
    url.chmod(0o600)
    checks = _by_key(environment_checks({
        "RESTIC_REPOSITORY": "/elsewhere", "RESTIC_REPOSITORY_FILE": str(url),
        "RESTIC_PASSWORD_FILE": str(url), "BACKUP_ROOT_DIR": "/data"}))
    assert str(tmp_path / "repo") in checks["RESTIC_REPOSITORY"]["message"]
    assert "RESTIC_REPOSITORY_FILE" not in checks
    assert checks["RESTIC_PASSWORD_FILE"]["status"] == "ok"
    empty = tmp_path / "empty.url"
    empty.write_text("# nothing\n")
    empty.chmod(0o600)
    for path in (empty, tmp_path / "absent"):
        checks = _by_key(environment_checks({"RESTIC_REPOSITORY_FILE": str(path)}))
        assert checks["RESTIC_REPOSITORY_FILE"]["status"] == "fail", checks
        assert "RESTIC_REPOSITORY" not in checks


def test_what_the_helper_failed_on(tmp_path: Path) -> None:
    checks = _by_key(environment_checks({
        "RESTIC_REPOSITORY": "rclone:remote:bucket", "RESTIC_TAG": "",
        "RCLONE_CONFIG": str(tmp_path / "absent.conf"), "REPLICATE_CRON": "0 1 * * *",
        "REPLICATE_JOB_FILE": str(tmp_path / "absent.txt"),
        "RESTIC_CACERT": str(tmp_path / "absent.pem")}))
    assert {k: c["status"] for k, c in checks.items()} == {
        "RESTIC_REPOSITORY": "ok", "RESTIC_PASSWORD": "fail", "RESTIC_TAG": "fail",
        "BACKUP_PATHS": "fail", "RCLONE_CONFIG": "fail", "REPLICATE_JOB_FILE": "warn",
        "RESTIC_CACERT": "fail"}


def test_the_same_keys_from_a_config_file(tmp_path: Path) -> None:
    restic = ResticSettings(repository=str(tmp_path / "repo"),
                            password_file=tmp_path / "absent-password")
    backup = JobConfig(name="nightly", kind="backup", paths=("/srv",), tags=("web",),
                       restic=restic, rclone=RcloneSettings())
    config = Config(path=tmp_path / "c.toml", state_dir=tmp_path / "state", hostname="h",
                    restic=ResticSettings(), rclone=RcloneSettings(), jobs={"nightly": backup})
    checks = _by_key(config_file_checks(config, backup))
    assert {k: c["status"] for k, c in checks.items()} == {
        "RESTIC_REPOSITORY": "ok", "RESTIC_PASSWORD_FILE": "fail", "RESTIC_TAG": "ok",
        "BACKUP_PATHS": "ok"}
    assert "/srv" in checks["BACKUP_PATHS"]["message"] and "web" in checks["RESTIC_TAG"]["message"]
