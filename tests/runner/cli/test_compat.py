"""The compat table, the restore target's rules and the peer-style argument helpers,
in-process (the commands themselves: tests/e2e/cli/test_compat_commands.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cli.compat import COMMANDS, NO_EQUIVALENT, WORKERS
from runner.cli.compat_tools import glued, verdict
from runner.cli.restore import RestoreRefused, RestoreRequest, check_target
from runner.configuration.config import Config, JobConfig, RcloneSettings, ResticSettings
from runner.engine.jobs import plan
from runner.errors import UserError


def _config(tmp_path: Path, **jobs: JobConfig) -> Config:
    return Config(path=tmp_path / "c.toml", state_dir=tmp_path / "state", hostname="h",
                  restic=ResticSettings(), rclone=RcloneSettings(), jobs=jobs)


def _backup(paths: tuple[str, ...]) -> JobConfig:
    return JobConfig(name="backup", kind="backup", paths=paths,
                     restic=ResticSettings(repository="/repo"), rclone=RcloneSettings())


def test_every_name_has_one_handler() -> None:
    assert len(COMMANDS) == 22
    assert set(WORKERS) | set(NO_EQUIVALENT) <= set(COMMANDS)


def test_a_quoted_policy_stays_the_value_of_its_flag() -> None:
    assert glued(["--policy", "--keep-last 1", "--repo-wide"], ("--policy",)) == [
        "--policy=--keep-last 1", "--repo-wide"]


@pytest.mark.parametrize("target", ["/", "/data", "{source}"])
def test_a_source_or_the_root_is_refused_without_force(tmp_path: Path, target: str) -> None:
    source = tmp_path / "src"
    source.mkdir()
    job = _backup((str(source),))
    config = _config(tmp_path, backup=job)
    request = RestoreRequest(target=target.format(source=source))
    with pytest.raises(RestoreRefused, match="pass --force"):
        check_target(config, job, request)


def test_a_non_empty_target_needs_force_or_a_dry_run(tmp_path: Path) -> None:
    job = _backup(("/srv",))
    config = _config(tmp_path, backup=job)
    target = tmp_path / "t"
    target.mkdir()
    (target / "x").write_text("x")
    with pytest.raises(RestoreRefused, match="not empty"):
        check_target(config, job, RestoreRequest(target=str(target)))
    assert check_target(config, job, RestoreRequest(target=str(target), force=True)) == target
    assert check_target(config, job, RestoreRequest(target=str(target), dry_run=True)) == target
    with pytest.raises(UserError, match="must not be empty"):
        check_target(config, job, RestoreRequest(target=""))


def test_a_missing_target_is_made(tmp_path: Path) -> None:
    job = _backup(("/srv",))
    made = check_target(_config(tmp_path, backup=job),
                        job, RestoreRequest(target=str(tmp_path / "a" / "b")))
    assert made.is_dir()


def test_the_restore_kind_is_one_restic_restore_step() -> None:
    job = JobConfig(name="restore", kind="restore", snapshot="abc123", target_dir=Path("/r"),
                    include=("/data/x",), args=("--verify",), dry_run=True,
                    restic=ResticSettings(binary="restic"), rclone=RcloneSettings())
    [step] = plan(job)
    assert step.argv == ("restic", "restore", "--json", "abc123", "--target=/r",
                         "--include=/data/x", "--verify", "--dry-run")
    _, check = plan(job._replace(dry_run=False))  # then: did the include match?
    assert check.name == "include-check" and check.needs_success
    assert check.argv[-2:] == ("/r", "/data/x")


@pytest.mark.parametrize("include, found", [
    ("/data/docs", True), ("/data/doc", False), ("docs", True), ("*.txt", True),
    ("/data/*.txt", False), ("/data/docs/*.txt", True), ("/elsewhere", False)])
def test_an_include_matches_what_restic_restored(tmp_path: Path, include: str,
                                                 found: bool) -> None:
    from runner.engine.jobs.restore import matched

    (tmp_path / "data" / "docs").mkdir(parents=True)
    (tmp_path / "data" / "docs" / "a.txt").write_text("a")
    assert matched(tmp_path, include) is found


def test_status_verdicts(tmp_path: Path) -> None:
    config = _config(tmp_path)._replace(disabled={"prune": "PRUNE_CRON needs args"})

    def job(name: str, last: dict[str, object] | None, schedule: str | None = "0 3 * * *"
            ) -> dict[str, object]:
        return {"job": name, "kind": "backup", "schedule": schedule, "last": last}

    ok = {"status": "succeeded", "exit_code": 0}
    bad = {"status": "failed", "exit_code": 1}
    assert verdict(_config(tmp_path), {"jobs": [job("b", ok)]}) == ("OK", [])
    assert verdict(_config(tmp_path), {"jobs": [job("b", bad, None)]})[0] == "OK"  # manual
    assert verdict(_config(tmp_path), {"jobs": [job("b", None)]})[0] == "WARN"
    assert verdict(config, {"jobs": [job("b", ok)]})[0] == "OK"  # a helper job: reported only
    assert verdict(config, {"jobs": [job("b", bad)]})[0] == "FAIL"
    no_backup = _config(tmp_path)._replace(disabled={"backup": "no backup paths"})
    assert verdict(no_backup, {"jobs": []}) == ("FAIL", [
        {"level": "FAIL", "message": "backup: disabled: no backup paths"}])
