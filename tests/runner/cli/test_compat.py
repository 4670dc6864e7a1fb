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


@pytest.mark.parametrize("how", ["double slash", "symlink", "inside", "symlink inside",
                                 "symlink to root"])
def test_a_source_reached_another_way_is_refused_without_force(tmp_path: Path,
                                                               how: str) -> None:
    """Review L5: the protection compares resolved paths and covers what is under a source."""
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to("/" if how == "symlink to root" else source)
    target = {"double slash": f"/{source}", "symlink": str(link),
              "inside": str(source / "sub" / "new"), "symlink inside": f"{link}/new",
              "symlink to root": str(link)}[how]
    job = _backup((str(source),))
    config = _config(tmp_path, backup=job)
    with pytest.raises(RestoreRefused, match=r"(backup source|it is /) .*pass --force"):
        check_target(config, job, RestoreRequest(target=target))
    assert not (source / "sub" / "new").exists() and not (source / "new").exists()
    if how == "inside":
        forced = check_target(config, job, RestoreRequest(target=target, force=True))
        assert forced == source / "sub" / "new"


def test_a_target_beside_a_source_is_not_inside_it(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    job = _backup((str(source),))
    made = check_target(_config(tmp_path, backup=job), job,
                        RestoreRequest(target=str(tmp_path / "src-restored")))
    assert made == tmp_path / "src-restored"


def _restored_tree_with_a_link_out(tmp_path: Path) -> tuple[Path, Path]:
    """A target as restic leaves it after restoring a snapshot that holds `data/link`, a symlink
    to a directory outside the target (which holds `secret`)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    target = tmp_path / "target"
    (target / "data" / "docs").mkdir(parents=True)
    (target / "data" / "docs" / "a.txt").write_text("a")
    (target / "data" / "link").symlink_to(outside)
    return target, outside


@pytest.mark.parametrize("include", [
    "/data/link/secret", "/data/link/*", "/data/link/**/secret", "link/secret", "secret",
    "../outside/secret", "/../outside", "/data/../../outside/secret", "../../../etc"])
def test_an_include_check_never_leaves_the_target(tmp_path: Path, include: str) -> None:
    """Review L6: `..` and symlinks restored from the snapshot lead nowhere (restic restored
    nothing through them, and the check is no oracle of what exists outside)."""
    from runner.engine.jobs.restore import matched

    target, _ = _restored_tree_with_a_link_out(tmp_path)
    assert matched(target, include) is False


@pytest.mark.parametrize("include", ["/data/link", "link", "/data/**/a.txt", "/data/*/a.txt",
                                     "**/a.txt", "/data/docs/"])
def test_an_include_check_sees_what_restic_restored(tmp_path: Path, include: str) -> None:
    from runner.engine.jobs.restore import matched

    target, _ = _restored_tree_with_a_link_out(tmp_path)
    assert matched(target, include) is True  # the link itself was restored


def test_dot_dot_includes_and_dash_ids_are_refused() -> None:
    """Review L6 and I1: before anything runs."""
    from runner.cli.restore import check_includes, check_snapshot

    with pytest.raises(UserError, match=r"'\.\.' is not part of any path"):
        check_includes(("/data/x", "../../../etc"))
    assert check_includes(("/data/x..y", "/a/..b")) == ("/data/x..y", "/a/..b")
    for bad in ("--no-lock", "-x"):
        with pytest.raises(UserError, match="never starts with '-'"):
            check_snapshot(bad)
    assert check_snapshot("latest") == "latest"


def test_chown_tree_never_follows_a_directory_swapped_for_a_symlink(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review I2: while --owner walks the restored tree, whoever can write in it swaps a
    directory for a symlink to one of root's. Stands in for that racing process: os.scandir,
    about to list `sub`, first renames it and puts the symlink in its place."""
    import os

    from runner.cli.restore import chown_tree

    target = tmp_path / "restored"
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "file").write_text("restored")
    (target / "sub" / "link").symlink_to(tmp_path / "victim" / "file")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "file").write_text("root's")
    real_scandir = os.scandir

    def racing_scandir(path: object = ".") -> object:
        listed = os.readlink(f"/proc/self/fd/{path}") if isinstance(path, int) else str(path)
        if listed == str(target / "sub") and not (target / "moved").exists():
            os.rename(target / "sub", target / "moved")
            os.symlink(victim, target / "sub")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", racing_scandir)
    assert chown_tree(target, "4321:4322") is None
    monkeypatch.undo()
    assert (victim.stat().st_uid, (victim / "file").stat().st_uid) == (0, 0)
    assert (victim / "file").stat().st_gid == 0
    mine = target / "moved" if (target / "moved").exists() else target / "sub"
    assert (mine / "file").stat().st_uid == 4321 and (mine / "file").stat().st_gid == 4322
    assert (mine / "link").lstat().st_uid == 4321
    assert target.stat().st_uid == 4321


def test_owner_is_checked_before_a_restore(tmp_path: Path) -> None:
    """Review M5: the format, and whether this process can chown at all (root with CAP_CHOWN
    here; the refusal as another user: tests/e2e/cli/test_restore.py)."""
    from runner.cli.restore import chown_refusal, parse_owner

    assert parse_owner("1000:1001") == (1000, 1001)
    for bad in ("www-data", "1000", "a:b", "-1:0"):
        with pytest.raises(UserError, match="expected UID:GID in numbers"):
            parse_owner(bad)
    assert chown_refusal(1000, 1001) == ""


def test_restore_test_never_prepares_a_symlinked_scratch_directory(tmp_path: Path) -> None:
    """A configured target_dir that is a symlink: neither cleared nor used (what restic put
    there could not be removed through the link)."""
    from runner.engine.jobs.restoretest import prepare

    real = tmp_path / "real"
    real.mkdir()
    (real / "keep").write_text("k")
    (tmp_path / "link").symlink_to(real)
    assert prepare(tmp_path / "link") == 1
    assert (real / "keep").read_text() == "k" and (tmp_path / "link").is_symlink()
