"""Environment mode through the real CLI with real restic 0.18: one bad value disables one job
(or leaves out one notification target or schedule), the others run; `doctor` fails on what was
left out; restic's own variables reach restic (docs/migration.md). In-process:
tests/runner/configuration/test_environment.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.envmode import EnvRunner, explain
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
