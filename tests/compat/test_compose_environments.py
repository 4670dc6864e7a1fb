"""The peer's three compose environments (restic-backup-helper 2.14.2:
`ci/docker-compose.smoke.yml`, `examples/compose/cloud-reference.yml`,
`examples/compose/multi-job.yml`), read at test time,
their variables as written, run by restic-runner in environment mode through the CLI: the
configuration shows the jobs, every job runs (`restic-runner run <job>` and
`restic-runner compat <job>`), and the outputs appear where the peer wrote them.

Adapted, because there is no container here (tests.support.compose's `adapt_paths`):
- container paths (/data, /config, /var/log, /run/secrets, /tmp/cache_dir, /tmp/restic,
  /.cache/restic, /hooks) are directories under the test's temporary directory; the image's
  /var/log is `RESTIC_RUNNER_COMPAT_LOG_DIR` (the image sets it), /hooks `RESTIC_RUNNER_HOOKS_DIR`;
- the container's hostname (compose `hostname:`, else `container_name`) is `HOSTNAME`;
- cloud-reference: the repository stays `rclone:cloudremote:backups`, but `cloudremote` is an
  rclone alias of a local directory (its rclone.conf is the test's); its include file lists the
  test's data directory and its replicate job file one local copy job (the file's content is the
  user's, not in the compose file);
- multi-job: `${RESTIC_REPOSITORY:?...}` is given a local repository shared by the three
  services (as the compose file's .env would); each service has its own state, logs and data;
- the repository is initialised by the start-up `restic-runner schedule` does (what the image's
  entrypoint starts), as the peer's entry.sh does at container start.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.compose import COMPOSE_FILES, compose_file, host_path
from tests.support.composeenv import Environment, environments
from tests.support.envmode import explain, start_up
from tests.support.peer import textfile_samples
from tests.support.smtp import SMTP_PASSWORD, SMTP_USER, SmtpServer

pytestmark = pytest.mark.slow

NEVER = "0 0 31 2 *"  # the peer's "never from cron" idiom (its smoke test uses it)
CRON_OF = {"backup": "BACKUP_CRON", "check": "CHECK_CRON", "forget": "FORGET_CRON",
           "prune": "PRUNE_CRON", "replicate": "REPLICATE_CRON"}
# The jobs the peer can run by hand in each environment (its /bin/<job>), schedule or not.
EXPECTED_JOBS = {
    "restic-smoke": ("backup", "check", "forget", "prune", "replicate"),
    "restic-cloud": ("backup", "check", "forget", "prune", "replicate"),
    "restic-documents": ("backup", "check", "forget", "prune"),
    "restic-media": ("backup", "check", "forget", "prune"),
    "restic-vmstore": ("backup", "check", "forget", "prune"),
}
RUN_ORDER = ("backup", "forget", "check", "prune", "replicate")


@pytest.mark.parametrize("file", sorted(COMPOSE_FILES))
def test_config_check_shows_every_job(file: str, tmp_path: Path) -> None:
    """`config check --json` in environment mode accepts the variables as written and shows
    every job the peer can run, with the peer's schedules and the container's hostname."""
    for env in environments(file, tmp_path):
        done = env.runner.cli("config", "check", "--json")
        assert done.returncode == 0, explain(done)
        summary = json.loads(done.stdout)
        assert summary["ok"] is True
        assert summary["hostname"] == env.variables["HOSTNAME"]
        jobs = summary["jobs"]
        for job in EXPECTED_JOBS[env.service.name]:
            assert job in jobs, (env.service.name, job, sorted(jobs), summary.get("disabled"))
            assert jobs[job]["kind"] == job
            cron = env.service.environment.get(CRON_OF[job], "")
            if cron and cron != NEVER:
                assert jobs[job]["schedule"] == cron, (job, jobs[job])
            elif job != "backup":  # an empty *_CRON: manual runs only, as the peer
                assert not jobs[job]["schedule"], (job, jobs[job])
        repository = env.variables["RESTIC_REPOSITORY"]
        assert jobs["backup"]["repository"] == repository


def _assert_outputs(env: Environment, job: str) -> None:
    """What the peer leaves in /var/log after /bin/<job>: last-<job>.json, <job>-last.log."""
    log = env.runner.log
    record = json.loads((log / f"last-{job}.json").read_text())
    assert record["job"] == job and record["exit_code"] == 0, record
    assert record["hostname"] == env.variables["HOSTNAME"], record
    assert (log / f"{job}-last.log").read_text().strip(), f"{job}-last.log is empty"


@pytest.mark.parametrize("file", sorted(COMPOSE_FILES))
def test_every_job_runs_and_writes_its_outputs(file: str, tmp_path: Path) -> None:
    """After the start-up initialised the repository, each job runs by `run <job>` and by
    `compat <job>` (the image's /bin/<job>), exits 0 and writes the peer's outputs: the
    snapshot has the container's hostname and RESTIC_TAG, last-<job>.json, <job>-last.log,
    cron.log, and the METRICS_DIR textfile; the repository password shows nowhere."""
    envs = environments(file, tmp_path)
    outputs = []
    for env in envs:
        outputs.append(start_up(env.runner, env.ready))
        for job in [j for j in RUN_ORDER if j in EXPECTED_JOBS[env.service.name]]:
            for command in (("run", job), ("compat", job)):
                done = env.runner.cli(*command)
                assert done.returncode == 0, f"{env.service.name}: {explain(done)}"
                outputs += [done.stdout, done.stderr]
                _assert_outputs(env, job)
        cron_log = env.runner.log / "cron.log"
        assert cron_log.exists() and cron_log.read_text().strip(), "cron.log has no run lines"
        if env.variables.get("METRICS_DIR"):
            prom = Path(env.variables["METRICS_DIR"]) / "restic_backup.prom"
            labels, value = textfile_samples(prom.read_text())["restic_backup_last_exit_code"]
            assert labels.get("hostname") == env.variables["HOSTNAME"] and float(value) == 0
    for env in envs:  # the repository password is in no output and no compat log file
        password = env.variables.get("RESTIC_PASSWORD") or Path(
            env.variables["RESTIC_PASSWORD_FILE"]).read_text().strip()
        files = [p.read_text(errors="replace") for p in env.runner.log.rglob("*") if p.is_file()]
        assert not [text for text in outputs + files if password in text]
    for env in envs:
        listed = env.restic("snapshots", "--json")
        assert listed.returncode == 0, explain(listed)
        mine = [s for s in json.loads(listed.stdout)
                if s["hostname"] == env.variables["HOSTNAME"]]
        # `run backup` and `compat backup`; with --skip-if-unchanged (cloud-reference), restic
        # saves no second snapshot of unchanged data, the peer's image neither
        unchanged_skipped = "--skip-if-unchanged" in env.variables.get("RESTIC_JOB_ARGS", "")
        assert len(mine) >= (1 if unchanged_skipped else 2), listed.stdout
        assert all(s.get("tags") == [env.variables["RESTIC_TAG"]] for s in mine), mine
    if file == "ci/docker-compose.smoke.yml":  # the smoke test's "replicate copied file"
        assert (host_path(tmp_path, "/data/sync_b") / "a.txt").exists()
    if file == "examples/compose/cloud-reference.yml":
        assert (tmp_path / "replica" / "in.txt").exists()


def test_cloud_reference_mails_a_failure_through_its_msmtprc(tmp_path: Path,
                                                             smtp_server: SmtpServer) -> None:
    """cloud-reference mounts an msmtprc at /etc/msmtprc (the peer's config/msmtprc: STARTTLS
    on 587, auth) and sets MAILX_RCPT with MAILX_ON_ERROR=ON. Adapted: that file's host, port,
    user and password point at a loopback server (its place given by RESTIC_RUNNER_MSMTPRC).
    A good backup mails nothing; a failed one mails the recipient with the peer's subject."""
    [env] = environments("examples/compose/cloud-reference.yml", tmp_path)
    msmtprc = tmp_path / "msmtprc"
    text = compose_file("config/msmtprc").read_text()
    for key, value in (("host", "127.0.0.1"), ("port", str(smtp_server.port)),
                       ("user", SMTP_USER), ("password", SMTP_PASSWORD)):
        text = re.sub(rf"^{key} .*$", f"{key} {value}", text, flags=re.M)
    msmtprc.write_text(text + f"tls_trust_file {smtp_server.cafile}\n")
    msmtprc.chmod(0o600)
    env.runner.variables["RESTIC_RUNNER_MSMTPRC"] = str(msmtprc)
    start_up(env.runner, env.ready)
    good = env.runner.cli("compat", "backup")
    assert good.returncode == 0, explain(good)
    assert not smtp_server.messages, "MAILX_ON_ERROR=ON: a good backup mails nothing"
    include = host_path(tmp_path, "/config/include_files.txt")
    include.write_text(f"{tmp_path / 'no-such-source'}\n")
    bad = env.runner.cli("compat", "backup")
    assert bad.returncode != 0, explain(bad)
    [message] = smtp_server.wait_for(1)
    assert str(message["To"]) == env.variables["MAILX_RCPT"]
    assert str(message["Subject"]).startswith(
        f"[FAIL {bad.returncode}] Backup {env.variables['HOSTNAME']} · "), message["Subject"]
    assert smtp_server.logins and smtp_server.logins[-1] == (SMTP_USER, SMTP_PASSWORD)
    outputs = [good.stdout, good.stderr, bad.stdout, bad.stderr,
               *(p.read_text(errors="replace") for p in env.runner.log.rglob("*") if p.is_file())]
    assert not [text for text in outputs if SMTP_PASSWORD in text]
