"""Finding the configuration (runner/configuration/load.py): --config, $RESTIC_RUNNER_CONFIG
(which must exist), ./restic-runner.toml, /etc/restic-runner/restic-runner.toml, then
restic-backup-helper's variables: a config file is used when one exists."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.configuration import load
from runner.errors import ConfigError
from security import secretfiles
from security.secretfiles import accept_world_readable


@pytest.fixture(autouse=True)
def _strict_secret_files_afterwards() -> Iterator[None]:
    """Environment mode relaxes the secret-file rule for the process: not for the next test."""
    yield
    accept_world_readable(False)


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, the system file under tmp_path, environment mode wanted."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(load, "SYSTEM_CONFIG", tmp_path / "etc" / "restic-runner.toml")
    monkeypatch.delenv("RESTIC_RUNNER_CONFIG", raising=False)
    password = tmp_path / "pw"
    password.write_text("x\n")
    password.chmod(0o600)
    monkeypatch.setenv("RESTIC_REPOSITORY", str(tmp_path / "repo"))
    monkeypatch.setenv("RESTIC_PASSWORD_FILE", str(password))
    monkeypatch.setenv("BACKUP_ROOT_DIR", str(tmp_path))
    monkeypatch.setenv("RESTIC_RUNNER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TZ", "UTC")  # environment mode would set the helper's otherwise
    return tmp_path


def _write(path: Path, job: str, password: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'state_dir = "state"\n[restic]\nrepository = "/r"\npassword_file = '
                    f'"{password}"\n[jobs.{job}]\nkind = "check"\n')


def test_the_system_file_wins_over_environment_mode(place: Path) -> None:
    assert set(load.load_config().jobs) >= {"backup", "check"}  # environment mode
    assert secretfiles.world_readable_accepted()
    _write(load.SYSTEM_CONFIG, "from-etc", place / "pw")
    assert set(load.load_config().jobs) == {"from-etc"}
    assert not secretfiles.world_readable_accepted()  # a config file keeps the strict rule
    _write(Path("restic-runner.toml"), "from-cwd", place / "pw")
    assert set(load.load_config().jobs) == {"from-cwd"}


def test_restic_runner_config_must_exist(place: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(load.SYSTEM_CONFIG, "from-etc", place / "pw")
    monkeypatch.setenv("RESTIC_RUNNER_CONFIG", str(place / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load.load_config()


def test_environment_mode_applies_the_helpers_time_zone(place: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper's image set TZ=Europe/Amsterdam: its cron fired in that zone, so do the
    schedules (and restic, rclone and hooks get it) when TZ is not set."""
    import os
    import time

    from runner.configuration.schedule import zone

    monkeypatch.delenv("TZ")
    try:
        load.load_config()
        assert os.environ["TZ"] == "Europe/Amsterdam"
        assert str(zone()) == "Europe/Amsterdam"
    finally:
        os.environ["TZ"] = "UTC"  # monkeypatch puts the original back afterwards
        time.tzset()


# --- who may control a configuration file (finding M4 of issue 15's review) -----------------


@pytest.mark.parametrize("where", ["cwd", "system", "explicit", "variable"])
@pytest.mark.parametrize(("mode", "problem"), [(0o646, "writable by every user"),
                                                (0o666, "writable by every user")])
def test_a_config_file_others_can_write_is_refused(place: Path, monkeypatch: pytest.MonkeyPatch,
                                                    where: str, mode: int, problem: str) -> None:
    """Wherever it was found, and never falling back to environment mode: its hooks would run
    as whoever loads it."""
    path = load.SYSTEM_CONFIG if where == "system" else Path("restic-runner.toml").absolute()
    _write(path, "planted", place / "pw")
    path.chmod(mode)
    explicit = str(path) if where == "explicit" else None
    if where == "variable":
        monkeypatch.setenv("RESTIC_RUNNER_CONFIG", str(path))
    with pytest.raises(ConfigError, match=problem):
        load.load_config(explicit)
    path.chmod(0o644)
    assert set(load.load_config(explicit).jobs) == {"planted"}


def test_group_write_is_refused_unless_the_group_is_root(place: Path) -> None:
    import os

    path = Path("restic-runner.toml")
    _write(path, "mine", place / "pw")
    path.chmod(0o664)
    if os.stat(path).st_gid != 0:
        with pytest.raises(ConfigError, match=r"writable by group \d+ \(mode 0664\)"):
            load.load_config()
    info = os.stat(path)
    as_root_group = os.stat_result((info.st_mode, *info[1:5], 0, *info[6:]))
    assert load.trust_problem(as_root_group) == ""


def test_only_root_or_the_process_user_may_own_it(tmp_path: Path) -> None:
    """Checked on the file's status (a test cannot chown to another user): a file uid 10001
    planted where root looks, e.g. a working directory it owns, is refused to root."""
    import os

    info = os.stat(tmp_path)
    owned_by = lambda uid: os.stat_result((0o100644, *info[1:4], uid, *info[5:]))  # noqa: E731
    assert "owned by uid 10001, neither root nor this process's user (uid 0)" in \
        load.trust_problem(owned_by(10001), uid=0)
    assert load.trust_problem(owned_by(0), uid=0) == ""
    assert load.trust_problem(owned_by(0), uid=10001) == ""
    assert load.trust_problem(owned_by(10001), uid=10001) == ""
    assert "neither root" in load.trust_problem(owned_by(10002), uid=10001)


def test_a_link_to_a_trusted_file_is_read(place: Path) -> None:
    """Kubernetes mounts a ConfigMap's keys as links into ..data: the file itself is judged."""
    target = place / "etc" / "real.toml"
    _write(target, "linked", place / "pw")
    Path("restic-runner.toml").symlink_to(target)
    assert set(load.load_config().jobs) == {"linked"}
    target.chmod(0o666)
    with pytest.raises(ConfigError, match="writable by every user"):
        load.load_config()
