"""Environment mode in-process (runner/configuration/environment.py and its env*.py modules):
restic-backup-helper 2.14's variables with its defaults and meanings; a value that spoils one
job disables that job alone (docs/migration.md). The CLI on the same: tests/e2e/cli/
test_envmode.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from runner.configuration.config import Config
from runner.configuration.environment import load_from_environment
from runner.configuration.envnotify import msmtp_account
from runner.errors import ConfigError
from security.masking import redact
from security.secretfiles import accept_world_readable
from tests.support.secrets import CANARY, encodings


@pytest.fixture(autouse=True)
def _strict_secret_files_afterwards() -> Iterator[None]:
    """Environment mode relaxes the secret-file rule for the process: not for the next test."""
    yield
    accept_world_readable(False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    password = tmp_path / "password"
    password.write_text("pw-0123456789\n")
    password.chmod(0o600)
    return {"RESTIC_REPOSITORY": str(tmp_path / "repo"), "RESTIC_PASSWORD_FILE": str(password),
            "BACKUP_ROOT_DIR": str(tmp_path / "data"),
            "RESTIC_RUNNER_STATE_DIR": str(tmp_path / "state"),
            "RESTIC_RUNNER_HOOKS_DIR": str(tmp_path / "hooks"),
            "REPLICATE_JOB_FILE": str(tmp_path / "replicate_jobs.txt"),
            "RESTIC_RUNNER_MSMTPRC": str(tmp_path / "msmtprc")}


def load(env: dict[str, str], **extra: str) -> Config:
    return load_from_environment({**env, **extra})


def test_the_helpers_defaults_apply_to_unset_variables(env: dict[str, str]) -> None:
    config = load(env)
    backup = config.jobs["backup"]
    assert backup.tags == ("automated",) and backup.schedule == "0 */6 * * *"
    assert backup.paths == (env["BACKUP_ROOT_DIR"],)
    assert config.restic.init_if_missing and not config.restic.auto_unlock
    assert {"OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_ID": "Default",
            "OS_IDENTITY_API_VERSION": "3"}.items() <= config.restic.env.items()
    assert config.rclone.env["RCLONE_CONFIG"] == "/config/rclone.conf"  # rclone's to read
    assert config.jobs["backup"].hook_timeout == 86400  # HOOK_TIMEOUT=0, bounded
    assert not any("HOOK_TIMEOUT" in w for w in config.warnings)  # the default is not warned


def test_set_but_empty_keeps_the_helpers_meaning(env: dict[str, str]) -> None:
    config = load(env, BACKUP_CRON="", RESTIC_CHECK_REPOSITORY_STATUS="")
    assert config.jobs["backup"].schedule is None
    assert not config.restic.init_if_missing
    assert not load(env, RESTIC_CHECK_REPOSITORY_STATUS="on").restic.init_if_missing  # exactly ON
    assert load(env, RESTIC_AUTO_UNLOCK="on").restic.auto_unlock  # ON in any case


def test_every_job_run_by_hand_exists_without_its_cron(env: dict[str, str]) -> None:
    config = load(env, RESTIC_FORGET_ARGS="--keep-last 3", RESTIC_CHECK_ARGS="--read-data")
    assert set(config.jobs) == {"backup", "check", "forget", "prune", "unlock"}
    assert all(config.jobs[name].schedule is None for name in ("check", "forget", "prune"))
    assert config.jobs["check"].args == ("--read-data",)
    assert config.jobs["backup"].forget_args == ("--keep-last", "3")  # inline: no FORGET_CRON
    scheduled = load(env, RESTIC_FORGET_ARGS="--keep-last 3", FORGET_CRON="0 5 * * *")
    assert scheduled.jobs["forget"].schedule == "0 5 * * *"
    assert scheduled.jobs["backup"].forget_args == ()  # the forget job owns retention
    assert all(job.hook_env == ("*",) for job in config.jobs.values())


def test_the_never_firing_idiom_leaves_the_job_manual(env: dict[str, str]) -> None:
    config = load(env, BACKUP_CRON="0 0 31 2 *")
    assert "backup" in config.jobs and config.jobs["backup"].schedule is None
    assert any("never fires" in w for w in config.warnings)
    assert "backup" not in config.disabled and not config.problems


def test_a_cron_no_cron_accepts_leaves_the_schedule_out(env: dict[str, str]) -> None:
    config = load(env, CHECK_CRON="61 * * * *")
    assert config.jobs["check"].schedule is None and "backup" in config.jobs
    assert "CHECK_CRON" in config.problems and "runs by hand" in config.problems["CHECK_CRON"]


@pytest.mark.parametrize(("tag", "tags"), [("a,b", ("a", "b")), ("two words", ("two words",)),
                                           ("x, y", ("x", "y"))])
def test_restic_tag_has_restics_meaning(env: dict[str, str], tag: str,
                                        tags: tuple[str, ...]) -> None:
    assert load(env, RESTIC_TAG=tag).jobs["backup"].tags == tags


def test_backup_paths_may_be_only_in_restic_job_args(env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "BACKUP_ROOT_DIR"}
    config = load(env, RESTIC_JOB_ARGS="/srv --exclude-caches")
    assert config.jobs["backup"].args == ("/srv", "--exclude-caches")
    assert config.jobs["backup"].paths == ()


@pytest.mark.parametrize(("extra", "job", "reason"), [
    ({"RESTIC_TAG": ""}, "backup", "RESTIC_TAG is empty"),
    ({"BACKUP_ROOT_DIR": ""}, "backup", "BACKUP_ROOT_DIR and RESTIC_JOB_ARGS are both empty"),
    ({"FORGET_CRON": "0 5 * * *"}, "forget", "RESTIC_FORGET_ARGS is empty"),
    ({"FORGET_CRON": "0 5 * * *", "RESTIC_FORGET_ARGS": "--prune"}, "forget",
     "no --keep-* option"),
    ({"REPLICATE_CRON": "0 2 * * *"}, "replicate", "cannot be read"),
])
def test_a_bad_value_disables_its_job_alone(env: dict[str, str], extra: dict[str, str],
                                            job: str, reason: str) -> None:
    config = load(env, **extra)
    assert job not in config.jobs and reason in config.disabled[job]
    assert job not in config.unrequested
    assert any(w.startswith(f"job {job} is disabled: ") for w in config.warnings)
    assert {"check", "prune", "unlock"} <= set(config.jobs)
    with pytest.raises(ConfigError, match=f"job disabled: .*{re.escape(reason)}"):
        config.job(job)


def test_jobs_nobody_asked_for_are_disabled_quietly(env: dict[str, str]) -> None:
    config = load(env)
    assert set(config.disabled) == {"forget", "replicate"} == config.unrequested
    assert not any("is disabled" in w for w in config.warnings)


def test_an_unreadable_password_file_disables_the_restic_jobs_only(
        env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "replicate_jobs.txt").write_text("/a;/b;sync\n")
    config = load(env, RESTIC_PASSWORD_FILE=str(tmp_path / "missing"))
    assert set(config.jobs) == {"replicate"}
    assert "RESTIC_PASSWORD_FILE" in config.disabled["backup"]


def test_replicate_is_one_job_with_every_line(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "replicate_jobs.txt").write_text(
        "# source;destination;mode;args\n"
        "/src;remote:dst;sync;--checksum --resync\n"
        "\n"
        "/a;/b\n"
        "/c;/d;SYNC\n"
        "no-semicolon-here\n"
        "/e;/f;mirror\n")
    config = load(env, REPLICATE_CRON="0 2 * * *", REPLICATE_JOB_ARGS="--fast-list")
    job = config.jobs["replicate"]
    assert job.schedule == "0 2 * * *" and "replicate-2" not in config.jobs
    numbers = [(line.number, line.mode, bool(line.problem)) for line in job.replicate_lines]
    assert numbers == [(2, "sync", False), (4, "bisync", False), (5, "sync", False),
                       (6, "bisync", True), (7, "mirror", True)]
    first = job.replicate_lines[0]
    assert (first.source, first.destination) == ("/src", "remote:dst")
    assert first.args == ("--fast-list", "--checksum", "--resync")  # the engine decides
    assert "mirror" in job.replicate_lines[4].problem


def test_bisync_check_access_reaches_bisync_calls_only(env: dict[str, str],
                                                     tmp_path: Path) -> None:
    """REPLICATE_BISYNC_CHECK_ACCESS=ON: `--check-access` on every bisync call (as the helper
    adds it), never on a `sync` or `copy` call, which rclone refuses it on."""
    from runner.engine.jobs.rclonecalls import line_args, main_step

    (tmp_path / "replicate_jobs.txt").write_text("/a;/b\n/c;/d;sync\n")
    job = load(env, REPLICATE_BISYNC_CHECK_ACCESS="on").jobs["replicate"]
    bisync, sync = job.replicate_lines
    assert "--check-access" in main_step(job, bisync, False).argv
    assert "--check-access" not in main_step(job, sync, False).argv
    assert "--check-access" not in line_args(bisync, "copy")  # the recovery's copies
    plain = load(env).jobs["replicate"]
    assert "--check-access" not in main_step(plain, plain.replicate_lines[0], False).argv


def test_sync_variables_map_as_the_helpers_entrypoint_does(env: dict[str, str],
                                                           tmp_path: Path) -> None:
    legacy = tmp_path / "sync_jobs.txt"
    legacy.write_text("/a;/b;copy\n")
    env = {k: v for k, v in env.items() if k != "REPLICATE_JOB_FILE"}
    config = load(env, SYNC_CRON="0 3 * * *", SYNC_JOB_FILE=str(legacy),
                  SYNC_JOB_ARGS="--dry-run")
    job = config.jobs["replicate"]
    assert job.schedule == "0 3 * * *"
    assert job.replicate_lines[0].args == ("--dry-run",)
    assert "SYNC_CRON is deprecated; rename to REPLICATE_CRON (restic-backup-helper removes " \
           "it in 3.0.0)" in config.warnings
    # a REPLICATE_* value of its own wins
    own = tmp_path / "own.txt"
    own.write_text("/x;/y;sync\n")
    config = load(env, SYNC_CRON="0 3 * * *", REPLICATE_CRON="0 4 * * *",
                  SYNC_JOB_FILE=str(legacy), REPLICATE_JOB_FILE=str(own))
    assert config.jobs["replicate"].schedule == "0 4 * * *"
    assert config.jobs["replicate"].replicate_lines[0].source == "/x"
    assert not any("deprecated" in w for w in config.warnings)


def test_mail_without_an_smtp_server_is_left_out_and_jobs_run(env: dict[str, str]) -> None:
    config = load(env, MAILX_RCPT="ops@example.org")
    assert config.notify.mail is None and "backup" in config.jobs
    assert "no SMTP server is configured" in config.problems["notify.mail"]
    assert any(w.startswith("notify.mail: ") for w in config.warnings)


def test_mail_reads_the_msmtprc_the_helper_mounted(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "msmtprc").write_text(
        "defaults\n  auth on\n  tls on\n  tls_starttls on\n\n"
        "account relay\n  host smtp.example.org\n  port 587\n  from backup@example.org\n"
        "  user bot@example.org\n  password msmtp-canary-pw\n\n"
        "account default : relay\n")
    config = load(env, MAILX_RCPT="ops@example.org, boss@example.org", MAILX_ON_ERROR="ON")
    mail = config.notify.mail
    assert mail is not None
    assert (mail.host, mail.port, mail.sender) == ("smtp.example.org", 587,
                                                   "backup@example.org")
    assert mail.starttls and not mail.tls and mail.username == "bot@example.org"
    assert mail.to == ("ops@example.org", "boss@example.org")
    assert mail.password_file is not None
    assert mail.password_file.read_text().strip() == "msmtp-canary-pw"
    assert mail.password_file.stat().st_mode & 0o777 == 0o600


def test_msmtp_account_inheritance() -> None:
    text = ("defaults\ntls on\nport 465\naccount a\nhost a.example\n"
            "account b : a\ntls_starttls off\naccount default : b\nfrom x@example\n")
    assert msmtp_account(text) == {"tls": "on", "port": "465", "host": "a.example",
                                   "tls_starttls": "off", "from": "x@example"}
    assert msmtp_account("account other\nhost h\n") == {}  # msmtp wants `default`


def test_a_bad_smtp_port_leaves_mail_out_naming_it(env: dict[str, str]) -> None:
    config = load(env, MAILX_RCPT="ops@example.org", SMTP_HOST="smtp.example.org",
                  SMTP_PORT="smtp")
    assert config.notify.mail is None and "backup" in config.jobs
    assert config.problems["notify.mail"].startswith("SMTP_PORT: ")


def test_restics_and_rclones_own_variables_reach_them(env: dict[str, str]) -> None:
    config = load(env, RESTIC_COMPRESSION="max", RESTIC_PACK_SIZE="64",
                  RESTIC_READ_CONCURRENCY="4", RESTIC_FEATURES="x=true",
                  HTTPS_PROXY="http://user:proxy-canary@proxy:3128", no_proxy="localhost",
                  http_proxy="http://proxy:3128", RCLONE_TRANSFERS="8",
                  RCLONE_CONFIG_PASS="rclone-canary", RESTIC_FROM_PASSWORD="from-canary")
    restic = config.restic
    assert {"RESTIC_COMPRESSION": "max", "RESTIC_PACK_SIZE": "64",
            "RESTIC_READ_CONCURRENCY": "4", "RESTIC_FEATURES": "x=true",
            "no_proxy": "localhost", "http_proxy": "http://proxy:3128",
            "RCLONE_TRANSFERS": "8"}.items() <= restic.env.items()
    assert {"HTTPS_PROXY", "RCLONE_CONFIG_PASS", "RESTIC_FROM_PASSWORD"} <= set(restic.env_files)
    assert set(restic.env_files) == set(config.rclone.env_files)
    for name, path in restic.env_files.items():
        assert name not in restic.env and path.stat().st_mode & 0o777 == 0o600
    assert "RESTIC_TAG" not in restic.env and "BACKUP_CRON" not in restic.env


def test_restic_host_names_the_snapshots(env: dict[str, str]) -> None:
    assert load(env, RESTIC_HOST="nas", HOSTNAME="c0ffee").hostname == "nas"
    assert load(env, HOSTNAME="c0ffee").hostname == "c0ffee"


def test_hooks_get_the_environment_and_a_lame_one_is_named(env: dict[str, str],
                                                           tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "pre-backup.sh").write_text("#!/bin/sh\n")
    (hooks / "pre-backup.sh").chmod(0o755)
    (hooks / "post-check.sh").write_text("#!/bin/sh\n")
    (hooks / "post-check.sh").chmod(0o644)
    config = load(env, HOOK_TIMEOUT="90")
    assert config.jobs["backup"].pre_hook == (str(hooks / "pre-backup.sh"),)
    assert config.jobs["backup"].pre_hook_on_error == "continue"
    assert config.jobs["backup"].hook_timeout == 90
    # configured all the same: each run reports it (exit 126) and goes on, as the helper's
    assert config.jobs["check"].post_hook == (str(hooks / "post-check.sh"),)
    assert f"Hook post-check is not executable ({hooks / 'post-check.sh'}); skipping." \
        in config.warnings


def test_hook_timeout_that_is_not_a_number_is_warned(env: dict[str, str]) -> None:
    config = load(env, HOOK_TIMEOUT="5m")
    assert config.jobs["backup"].hook_timeout == 86400
    assert any("HOOK_TIMEOUT='5m' is not a non-negative integer" in w for w in config.warnings)


def test_a_world_readable_secret_file_is_accepted_with_a_warning(env: dict[str, str]) -> None:
    password = Path(env["RESTIC_PASSWORD_FILE"])
    password.chmod(0o444)  # as Docker mounts a secret
    config = load(env)
    assert "backup" in config.jobs
    assert any("readable by every local user; accepted in environment mode" in w
               for w in config.warnings)


def test_compat_log_dir_comes_from_the_environment(env: dict[str, str], tmp_path: Path) -> None:
    assert load(env).compat_log_dir is None
    config = load(env, RESTIC_RUNNER_COMPAT_LOG_DIR=str(tmp_path / "var-log"))
    assert config.compat_log_dir == tmp_path / "var-log"


# --- inline secrets: state_dir/env-secrets/ (M3, I3) and which variables are secret (L1) -------

def test_secret_looking_tool_variables_go_through_0600_files_and_are_masked(
        env: dict[str, str]) -> None:
    """L1: names the old word list missed (PASSWORD2, HEADERS, PASSPHRASE) and URL values with a
    `user:password@` are handed over in 0600 files, never as plain `env`; a URL's password is
    masked alone, raw and percent-decoded, in every encoding."""
    password = "url-" + CANARY
    quoted = quote(password, safe="")
    secret = {
        "RCLONE_CONFIG_REMOTE_PASSWORD2": "pw2-" + CANARY,
        "RCLONE_CRYPT_PASSWORD2": "crypt2-" + CANARY,
        "RCLONE_HEADERS": "Authorization,Bearer hdr-token-0123456789",
        "RCLONE_CONFIG_REMOTE_PASSPHRASE": "phrase-" + CANARY,
        "RCLONE_CONFIG_REMOTE_URL": f"https://webdav:{quoted}@dav.example/remote.php",
        "RESTIC_FROM_REPOSITORY": f"rest:https://from:{quoted}@rest.example/repo",
        "HTTPS_PROXY": f"http://proxyuser:{quoted}@proxy.example:3128",
    }
    config = load(env, **secret, RCLONE_CONFIG_REMOTE_URL_PLAIN="x",
                  RCLONE_CONFIG_REMOTE_TYPE="webdav")
    for settings in (config.restic, config.rclone):
        assert set(secret) <= set(settings.env_files)
        assert not set(secret) & set(settings.env)
        assert settings.env["RCLONE_CONFIG_REMOTE_TYPE"] == "webdav"
        for name in secret:
            path = settings.env_files[name]
            assert path.read_text() == secret[name] + "\n"
            assert path.stat().st_mode & 0o777 == 0o600
    for value in (password, quoted, *(v for k, v in secret.items() if "URL" not in k
                                      and "REPOSITORY" not in k and "PROXY" not in k)):
        for form in encodings(value):
            assert form not in redact(b"<" + form + b">"), (value, form)


def test_env_secrets_as_a_symlink_is_refused_and_its_target_untouched(
        env: dict[str, str], tmp_path: Path) -> None:
    """M3: a link planted at state_dir/env-secrets is refused, naming it; the directory it
    points to keeps its mode and gets no file."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    elsewhere.chmod(0o755)
    state = Path(env["RESTIC_RUNNER_STATE_DIR"])
    state.mkdir(mode=0o700)
    (state / "env-secrets").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="a symlink or not a directory") as refused:
        load(env, RESTIC_PASSWORD_FILE="", RESTIC_PASSWORD="inline-" + CANARY)
    assert str(state / "env-secrets") in str(refused.value)
    assert refused.value.key == "RESTIC_RUNNER_STATE_DIR"
    assert list(elsewhere.iterdir()) == [] and elsewhere.stat().st_mode & 0o777 == 0o755


def test_env_secrets_as_a_file_is_refused(env: dict[str, str]) -> None:
    state = Path(env["RESTIC_RUNNER_STATE_DIR"])
    state.mkdir(mode=0o700)
    (state / "env-secrets").write_text("not a directory\n")
    with pytest.raises(ConfigError, match=r"env-secrets: a symlink or not a directory"):
        load(env, RESTIC_PASSWORD_FILE="", RESTIC_PASSWORD="inline-" + CANARY)
    assert (state / "env-secrets").read_text() == "not a directory\n"


def test_a_link_planted_inside_env_secrets_is_replaced_not_followed(
        env: dict[str, str], tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    victim.chmod(0o644)
    secrets = Path(env["RESTIC_RUNNER_STATE_DIR"]) / "env-secrets"
    secrets.mkdir(parents=True)
    (secrets / "restic_password").symlink_to(victim)
    (secrets / "old_variable").symlink_to(victim)
    config = load(env, RESTIC_PASSWORD_FILE="", RESTIC_PASSWORD="inline-" + CANARY)
    assert config.restic.password_file == secrets / "restic_password"
    assert not (secrets / "restic_password").is_symlink()
    assert (secrets / "restic_password").read_text() == f"inline-{CANARY}\n"
    assert victim.read_text() == "keep me\n" and victim.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in secrets.iterdir()) == ["restic_password"]


def test_the_file_of_a_removed_variable_goes(env: dict[str, str]) -> None:
    """I3: env-secrets/ holds the current inline secrets only; none left, nothing is created."""
    secrets = Path(env["RESTIC_RUNNER_STATE_DIR"]) / "env-secrets"
    load(env, B2_ACCOUNT_KEY="b2-" + CANARY, AWS_SECRET_ACCESS_KEY="aws-" + CANARY,
         RESTIC_PASSWORD_FILE="", RESTIC_PASSWORD="inline-" + CANARY)
    assert sorted(p.name for p in secrets.iterdir()) == [
        "aws_secret_access_key", "b2_account_key", "restic_password"]
    load(env, RESTIC_PASSWORD_FILE="", RESTIC_PASSWORD="inline-" + CANARY)
    assert [p.name for p in secrets.iterdir()] == ["restic_password"]
    load(env)
    assert list(secrets.iterdir()) == []


def test_without_inline_secrets_env_secrets_is_not_created(env: dict[str, str]) -> None:
    load(env)
    assert not (Path(env["RESTIC_RUNNER_STATE_DIR"]) / "env-secrets").exists()


def test_unchanged_inline_secrets_are_not_rewritten(env: dict[str, str]) -> None:
    """M3: what `config check` and `doctor` load writes nothing once the files are right."""
    extra = {"RESTIC_PASSWORD_FILE": "", "RESTIC_PASSWORD": "inline-" + CANARY}
    path = load(env, **extra).restic.password_file
    assert path is not None
    before = path.stat()
    assert load(env, **extra).restic.password_file == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    load(env, **{**extra, "RESTIC_PASSWORD": "changed-" + CANARY})
    assert path.read_text() == f"changed-{CANARY}\n"


def test_with_hook_env_all_every_secret_variable_is_masked(env: dict[str, str],
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """L2: the hooks see the whole process environment, so loading the configuration registers
    every variable whose name looks secret, and every URL password in any variable."""
    password = "db-" + CANARY
    url_password = "url-" + CANARY
    monkeypatch.setenv("MY_DB_PASSWORD", password)
    monkeypatch.setenv("MY_SERVICE_URL", f"https://me:{quote(url_password, safe='')}@svc.example/")
    config = load(env)
    assert config.jobs["backup"].hook_env == ("*",)
    for value in (password, url_password):
        for form in encodings(value):
            assert form not in redact(b"<" + form + b">"), (value, form)


def test_a_fifo_planted_inside_env_secrets_is_replaced_without_hanging(
        env: dict[str, str]) -> None:
    import os

    secrets = Path(env["RESTIC_RUNNER_STATE_DIR"]) / "env-secrets"
    secrets.mkdir(parents=True)
    os.mkfifo(secrets / "restic_password")
    load(env, RESTIC_PASSWORD_FILE="", RESTIC_PASSWORD="inline-" + CANARY)
    assert (secrets / "restic_password").read_text() == f"inline-{CANARY}\n"


def test_root_leaves_the_service_users_right_files_alone(env: dict[str, str]) -> None:
    """`config check` or `doctor` run as root over the service user's env-secrets/ must not
    take its files over (root-owned 0600 files the service could no longer read)."""
    import os

    if os.geteuid() != 0:
        pytest.skip("files of another user need root")  # the image's tests run as root
    extra = {"RESTIC_PASSWORD_FILE": "", "RESTIC_PASSWORD": "inline-" + CANARY}
    path = load(env, **extra).restic.password_file
    assert path is not None
    os.chown(path, 10001, 10001)
    load(env, **extra)
    assert path.stat().st_uid == 10001
