"""Environment mode through the real CLI with real restic 0.18: one bad value disables one job
(or leaves out one notification target or schedule), the others run; `doctor` fails on what was
left out; restic's own variables reach restic (docs/migration.md). In-process:
tests/runner/configuration/test_environment.py."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.envmode import EnvRunner, explain
from tests.support.secrets import CANARY, encodings
from tests.support.smtp import SMTP_PASSWORD, SMTP_USER, start_smtp_server
from tests.support.workspace import Workspace


def runner(ws: Workspace, **variables: str) -> EnvRunner:
    return EnvRunner(ws.root, ws.restic, {
        "RESTIC_REPOSITORY": str(ws.repo), "RESTIC_PASSWORD_FILE": str(ws.password_file),
        "BACKUP_ROOT_DIR": str(ws.data), "HOSTNAME": "helper-host",
        "REPLICATE_JOB_FILE": str(ws.root / "replicate_jobs.txt"),
        "RESTIC_RUNNER_MSMTPRC": str(ws.root / "no-msmtprc"), **variables})


def doctor(env: EnvRunner) -> dict[str, Any]:
    done = env.cli("doctor", "--json")
    return json.loads(done.stdout)


def failing(report: dict[str, Any]) -> list[str]:
    return [c["message"] for c in report["checks"] if c["status"] == "fail"]


def test_each_bad_value_spoils_only_its_own_job(ws18: Workspace) -> None:
    """Every value the helper accepts but one job cannot run with, set at once: the backup still
    runs (with restic's meaning of the tag), the spoilt jobs exit 2 naming their reason, and
    doctor fails on each of them."""
    env = runner(ws18, BACKUP_CRON="0 0 31 2 *", MAILX_RCPT="ops@example.org",
                 RESTIC_TAG="nightly,two words", FORGET_CRON="0 5 * * *",
                 RESTIC_FORGET_ARGS="", REPLICATE_CRON="0 2 * * *", CHECK_CRON="61 * * * *")
    done = env.cli("run", "backup", "--json")
    assert done.returncode == 0, explain(done)
    assert json.loads(done.stdout)["status"] == "succeeded"
    assert sorted(ws18.snapshots()[0]["tags"]) == ["nightly", "two words"]
    forget = env.cli("run", "forget")
    assert forget.returncode == 2, explain(forget)
    assert "job disabled: RESTIC_FORGET_ARGS is empty: no retention policy" in forget.stderr
    replicate = env.cli("run", "replicate")
    assert replicate.returncode == 2 and "REPLICATE_JOB_FILE" in replicate.stderr
    check = env.cli("run", "check")  # its schedule was refused; by hand it runs
    assert check.returncode == 0, explain(check)
    report = doctor(env)
    fails = "\n".join(failing(report))
    for needle in ("job forget is disabled", "job replicate is disabled", "notify.mail: MAILX_RCPT",
                   "CHECK_CRON: "):
        assert needle in fails, fails
    assert "Traceback" not in done.stderr + forget.stderr + replicate.stderr


def test_backup_paths_only_in_restic_job_args(ws18: Workspace) -> None:
    env = runner(ws18, BACKUP_ROOT_DIR="", RESTIC_JOB_ARGS=f"{ws18.data} --exclude-caches")
    done = env.cli("run", "backup")
    assert done.returncode == 0, explain(done)
    assert ws18.snapshots()[0]["paths"] == [str(ws18.data)]
    assert ws18.snapshots()[0]["tags"] == ["automated"]  # the helper's default tag


def test_restic_compression_reaches_restic(ws18: Workspace) -> None:
    """The helper's users tune restic with its own variables: a bogus one fails the backup with
    restic's own error (the helper exits 1), a good one is used."""
    done = runner(ws18, RESTIC_COMPRESSION="bogus").cli("run", "backup")
    assert done.returncode == 1, explain(done)
    assert "invalid compression mode" in done.stdout + done.stderr
    good = runner(ws18, RESTIC_COMPRESSION="max").cli("run", "backup")
    assert good.returncode == 0, explain(good)


def test_sync_variables_still_replicate(ws18: Workspace) -> None:
    jobs = ws18.root / "sync_jobs.txt"
    jobs.write_text(f"{ws18.data};{ws18.root / 'copy'};sync\n")
    env = runner(ws18, SYNC_CRON="0 3 * * *", SYNC_JOB_FILE=str(jobs))
    env.variables.pop("REPLICATE_JOB_FILE")
    done = env.cli("run", "replicate")
    assert done.returncode == 0, explain(done)
    assert (ws18.root / "copy" / "dir0").is_dir()
    check = json.loads(env.cli("config", "check", "--json").stdout)
    assert check["jobs"]["replicate"]["schedule"] == "0 3 * * *"
    assert any("SYNC_CRON is deprecated" in w for w in check["warnings"])


def test_world_readable_secret_files_are_accepted_and_doctor_warns(ws18: Workspace) -> None:
    ws18.password_file.chmod(0o444)  # a Docker secret mount
    env = runner(ws18)
    done = env.cli("run", "backup")
    assert done.returncode == 0, explain(done)
    report = doctor(env)
    warned = [c["message"] for c in report["checks"] if c["status"] == "warn"]
    assert any("accepted in environment mode" in m for m in warned), warned
    ws18.password_file.chmod(0o646)  # anyone could replace it
    refused = env.cli("run", "backup")
    assert refused.returncode != 0 and "writable by every local user" in refused.stderr
    assert any("writable by every local user" in m for m in failing(doctor(env)))


def test_a_config_file_keeps_the_strict_rule(ws18: Workspace, tmp_path: Path) -> None:
    ws18.password_file.chmod(0o444)
    config = tmp_path / "restic-runner.toml"
    config.write_text(f'state_dir = "{ws18.state}"\n[restic]\nrepository = "{ws18.repo}"\n'
                      f'password_file = "{ws18.password_file}"\n'
                      f'[jobs.backup]\nkind = "backup"\npaths = ["{ws18.data}"]\n')
    done = runner(ws18).cli("--config", str(config), "run", "backup")
    assert done.returncode != 0 and "readable by every local user" in done.stderr


@pytest.mark.parametrize(("bad", "other"), [
    ({"BACKUP_CRON": "0 0 31 2 *"}, "backup"),
    ({"MAILX_RCPT": "ops@example.org"}, "backup"),
    ({"RESTIC_TAG": "a,b"}, "backup"),
    ({"RESTIC_TAG": "with space"}, "backup"),
    ({"BACKUP_ROOT_DIR": ""}, "check"),
    ({"RESTIC_TAG": ""}, "check"),
    ({"FORGET_CRON": "0 5 * * *", "RESTIC_FORGET_ARGS": ""}, "backup"),
    ({"REPLICATE_CRON": "0 2 * * *"}, "backup"),
    ({"PRUNE_CRON": "not cron"}, "backup"),
], ids=["never-cron", "mail-without-smtp", "tag-comma", "tag-space", "no-paths", "empty-tag",
        "forget-without-policy", "missing-job-file", "bad-cron"])
def test_one_bad_value_leaves_the_other_jobs_running(ws18: Workspace, bad: dict[str, str],
                                                     other: str) -> None:
    env = runner(ws18, **bad)
    done = env.cli("run", other)
    assert done.returncode == 0, explain(done)
    config = env.cli("config", "check")
    assert config.returncode == 0, explain(config)


def test_mail_goes_through_the_msmtprc_the_helper_mounted(ws18: Workspace,
                                                          tmp_path: Path) -> None:
    """The helper's users configure mail with an msmtprc (STARTTLS, login): restic-runner reads
    its default account and delivers there; the password appears in no output."""
    server = start_smtp_server(tmp_path)
    try:
        msmtprc = ws18.root / "msmtprc"
        msmtprc.write_text(
            "# the helper's /etc/msmtprc\ndefaults\n  auth on\n  tls on\n  tls_starttls on\n"
            f"  tls_trust_file {server.cafile}\n\naccount default\n  host 127.0.0.1\n"
            f"  port {server.port}\n  from backup@test-host.example\n  user {SMTP_USER}\n"
            f"  password {SMTP_PASSWORD}\n")
        msmtprc.chmod(0o600)
        env = runner(ws18, MAILX_RCPT="ops@example.org", RESTIC_RUNNER_MSMTPRC=str(msmtprc))
        done = env.cli("run", "backup")
        assert done.returncode == 0, explain(done)
        [message] = server.wait_for(1)
        assert message["Subject"].startswith("[OK] Backup")
        assert message["From"] == "backup@test-host.example"
        assert SMTP_PASSWORD not in done.stdout + done.stderr
        report = env.cli("doctor", "--json")
        assert SMTP_PASSWORD not in report.stdout + report.stderr
    finally:
        server.stop()


# Environment mode's hooks get the whole environment (hook_env = ["*"]), so every variable
# that looks secret is masked wherever a hook's output goes (docs/security.md#secret-variables).
_HOOK_SECRETS = {
    "MY_DB_PASSWORD": "db-" + CANARY,  # no tool reads it: only a hook
    "MY_APP_PASSPHRASE": "phrase-" + CANARY,
    "RCLONE_CONFIG_REMOTE_PASSWORD2": "pw2-" + CANARY,
    "RCLONE_CRYPT_PASSWORD2": "crypt2-" + CANARY,
}
_URL_PASSWORD = "url-" + CANARY  # inside URLs, percent-encoded
_HEADER_TOKEN = "hdr-pa/ss@w:rd%20-" + base64.b64encode(CANARY.encode()).decode()  # ASCII
_PRINT_ALL = """#!{python}
import base64, json, os, urllib.parse
for name in {names!r}:
    value = os.environ[name]
    for form in (value, urllib.parse.quote(value, safe=""), json.dumps(value),
                 base64.b64encode(value.encode()).decode()):
        print(name, form)
for name in ("HTTPS_PROXY", "RCLONE_CONFIG_REMOTE_URL"):
    part = os.environ[name].split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
    for form in (part, urllib.parse.unquote(part)):
        print(name, "password part", form)
header = os.environ["RCLONE_HEADERS"]
print("header", header, header.split(",", 1)[1], header.split(" ", 1)[1])
"""


def test_secret_variables_printed_by_a_hook_are_masked_everywhere(ws18: Workspace) -> None:
    """L1/L2: a hook printing the secret variables it was given (raw, URL-encoded, JSON-escaped,
    base64; the password part of a proxy and an rclone URL, raw and percent-decoded; a bearer
    token of RCLONE_HEADERS) leaves none of them in the CLI output, the run log, cron.log,
    <job>-last.log, last-<job>.json or the history (the API's log_tail)."""
    quoted = quote(_URL_PASSWORD, safe="")
    env = runner(ws18, **_HOOK_SECRETS,
                 HTTPS_PROXY=f"http://proxyuser:{quoted}@127.0.0.1:9",
                 NO_PROXY="127.0.0.1,localhost",
                 RCLONE_CONFIG_REMOTE_URL=f"https://webdav:{quoted}@127.0.0.1:9/dav",
                 RCLONE_HEADERS=f"Authorization,Bearer {_HEADER_TOKEN}")
    env.hooks.mkdir(parents=True, exist_ok=True)
    hook = env.hooks / "pre-backup.sh"
    hook.write_text(_PRINT_ALL.format(python=sys.executable, names=sorted(_HOOK_SECRETS)))
    hook.chmod(0o755)
    done = env.cli("run", "backup", "--json")
    assert done.returncode == 0, explain(done)
    outputs = {"stdout": done.stdout.encode(), "stderr": done.stderr.encode()}
    for root in (env.log, env.state):
        for path in root.rglob("*"):
            if path.is_file() and path.parent.name != "env-secrets":
                outputs[str(path)] = path.read_bytes()
    assert b"password part" in outputs[str(env.log / "backup-last.log")]  # the hook ran
    assert "MY_DB_PASSWORD" in env.last_run("backup")["log_tail"]
    secrets = [*_HOOK_SECRETS.values(), _URL_PASSWORD, _HEADER_TOKEN]
    leaks = {(where, secret, form) for where, data in outputs.items() for secret in secrets
             for form in encodings(secret) if form in data}
    assert not leaks


def test_env_secrets_behind_a_symlink_is_refused_and_left_alone(ws18: Workspace,
                                                                tmp_path: Path) -> None:
    """M3: state_dir/env-secrets planted as a link to another directory: `config check`,
    `doctor` and `run` refuse it naming the path; the directory it points to is neither
    chmod-ed nor written to."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    elsewhere.chmod(0o755)
    env = runner(ws18, RESTIC_PASSWORD_FILE="", RESTIC_PASSWORD="inline-" + CANARY)
    env.state.mkdir(parents=True, exist_ok=True)
    (env.state / "env-secrets").symlink_to(elsewhere)
    for args in (("config", "check"), ("run", "backup")):
        done = env.cli(*args)
        assert done.returncode == 2, explain(done)
        assert f"{env.state / 'env-secrets'}: a symlink or not a directory" in done.stderr
    assert any("a symlink or not a directory" in m for m in failing(doctor(env)))
    assert list(elsewhere.iterdir()) == []
    assert elsewhere.stat().st_mode & 0o777 == 0o755


def test_config_check_after_a_run_writes_nothing_and_removed_variables_lose_their_file(
        ws18: Workspace) -> None:
    """M3/I3: once a run wrote the inline secrets, `config check` and `doctor` rewrite none of
    them; a variable removed takes its env-secrets file with it."""
    password = ws18.password_file.read_text().strip()
    env = runner(ws18, RESTIC_PASSWORD_FILE="", RESTIC_PASSWORD=password,
                 AWS_SECRET_ACCESS_KEY="aws-" + CANARY)
    done = env.cli("run", "backup")
    assert done.returncode == 0, explain(done)
    secrets = env.state / "env-secrets"
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in secrets.iterdir()}
    assert set(before) == {"restic_password", "aws_secret_access_key"}
    assert env.cli("config", "check").returncode == 0
    doctor(env)
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in secrets.iterdir()} == before
    env.variables.pop("AWS_SECRET_ACCESS_KEY")
    assert env.cli("config", "check").returncode == 0
    assert [p.name for p in secrets.iterdir()] == ["restic_password"]


def test_doctor_reports_a_file_planted_as_env_secrets(ws18: Workspace, tmp_path: Path) -> None:
    """With a config file (env-secrets unused), a file or link planted under the name in
    state_dir is reported, not walked into: doctor answers instead of failing internally."""
    config = tmp_path / "restic-runner.toml"
    config.write_text(f'state_dir = "{ws18.state}"\n[restic]\nrepository = "{ws18.repo}"\n'
                      f'password_file = "{ws18.password_file}"\n'
                      f'[jobs.backup]\nkind = "backup"\npaths = ["{ws18.data}"]\n')
    ws18.state.mkdir(parents=True, exist_ok=True)
    (ws18.state / "env-secrets").write_text("planted\n")
    (ws18.state / "env-secrets").chmod(0o600)
    done = runner(ws18).cli("--config", str(config), "doctor", "--json")
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, explain(done)
    report = json.loads(done.stdout)
    assert any(c["section"] == "state" for c in report["checks"])
