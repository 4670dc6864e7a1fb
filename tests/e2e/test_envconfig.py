"""restic-backup-helper's environment variables, with no config file (docs/migration.md)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

from tests.support.paths import RUNNER
from tests.support.workspace import Workspace


def env_cli(ws: Workspace, variables: dict[str, str], *args: str
            ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RESTIC_", "RCLONE_", "BACKUP_", "WEBHOOK_", "MAILX_", "SMTP_"))}
    env.update(RESTIC_RUNNER_STATE_DIR=str(ws.state), RESTIC_CACHE_DIR=str(ws.root / "cache"),
               HOSTNAME="helper-host", RESTIC_RUNNER_HOOKS_DIR=str(ws.root / "hooks"),
               PATH=f"{ws.restic.parent}:{os.environ['PATH']}", **variables)
    return subprocess.run([RUNNER, *args], env=env, capture_output=True, text=True,
                          cwd=ws.root, timeout=120)


def base(ws: Workspace) -> dict[str, str]:
    return {"RESTIC_REPOSITORY": str(ws.repo), "RESTIC_PASSWORD_FILE": str(ws.password_file),
            "BACKUP_ROOT_DIR": str(ws.data), "RESTIC_TAG": "helper"}


def test_the_helpers_variables_configure_the_same_jobs(ws18: Workspace) -> None:
    assert Path(ws18.restic).name == "restic"
    variables = {**base(ws18), "RESTIC_FORGET_ARGS": "--keep-last 2",
                 "RESTIC_JOB_ARGS": "--exclude-caches", "CHECK_CRON": "0 4 * * 0",
                 "RESTIC_CHECK_ARGS": "--read-data-subset=10%", "ROTATE_LOG_CRON": "0 0 * * 6",
                 "SYNC_CRON": "0 1 * * *", "RESTIC_CHECK_REPOSITORY_STATUS": "on"}
    done = env_cli(ws18, variables, "config", "check", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["hostname"] == "helper-host"
    jobs = summary["jobs"]
    # every job the helper runs by hand; replicate is disabled: no job file
    assert set(jobs) == {"backup", "check", "forget", "prune", "unlock"}
    assert jobs["backup"]["schedule"] == "0 */6 * * *"  # BACKUP_CRON's default
    assert jobs["backup"]["steps"][0][1:] == ["backup", "--json", "--host=helper-host",
                                              "--tag=helper",
                                              "--exclude-caches", "--", str(ws18.data)]
    assert jobs["backup"]["steps"][1][1:] == ["forget", "--json", "--keep-last", "2"]
    assert jobs["check"]["schedule"] == "0 4 * * 0"
    warnings = "\n".join(summary["warnings"])
    assert warnings.count("ROTATE_LOG_CRON") == 1 and warnings.count("SYNC_CRON") == 1
    assert "SYNC_CRON is deprecated; rename to REPLICATE_CRON" in warnings
    assert "job replicate is disabled: REPLICATE_JOB_FILE /config/replicate_jobs.txt" in warnings
    code = env_cli(ws18, variables, "run", "backup", "--json")
    record = json.loads(code.stdout)
    assert code.returncode == 0 and record["status"] == "succeeded", code.stderr
    assert [s["name"] for s in record["steps"]] == ["backup", "forget"]
    assert record["hostname"] == "helper-host"
    assert ws18.snapshots()[0]["tags"] == ["helper"]


def test_inline_password_works_masked_and_warned(ws18: Workspace) -> None:
    password = ws18.password_file.read_text().strip()
    variables = {**base(ws18), "RESTIC_PASSWORD": password}
    del variables["RESTIC_PASSWORD_FILE"]
    done = env_cli(ws18, variables, "run", "backup", "--json")
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr
    secret = ws18.state / "env-secrets" / "restic_password"
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    report = json.loads(env_cli(ws18, variables, "doctor", "--json").stdout)
    assert any("RESTIC_PASSWORD is given inline" in c["message"] for c in report["checks"])


def test_errors_name_the_variable(ws18: Workspace) -> None:
    """What no job can do without stops start-up, naming the variable (a value that spoils one
    job disables that job alone: tests/e2e/cli/test_envmode.py)."""
    cases = [({"RESTIC_REPOSITORY": "", "RESTIC_REPOSITORY_FILE": str(ws18.root / "none")},
              "RESTIC_REPOSITORY_FILE"),
             ({"RESTIC_RUNNER_BIND": "nowhere"}, "RESTIC_RUNNER_BIND")]
    for extra, variable in cases:
        done = env_cli(ws18, {**base(ws18), **extra}, "config", "check")
        assert done.returncode == 2, (extra, done.stdout)
        assert f"<environment>: {variable}:" in done.stderr, (extra, done.stderr)
        assert "Traceback" not in done.stderr


def test_replicate_job_file_hooks_and_webhook(ws18: Workspace) -> None:
    jobs = ws18.root / "replicate_jobs.txt"
    jobs.write_text(f"# source;destination;mode;args\n{ws18.data};{ws18.root / 'copy-a'};sync\n"
                    f"{ws18.data};{ws18.root / 'copy-b'};copy;--checksum\n")
    hooks = ws18.root / "hooks"
    hooks.mkdir()
    (hooks / "pre-backup.sh").write_text("#!/bin/sh\nexit 0\n")
    (hooks / "pre-backup.sh").chmod(0o755)
    variables = {**base(ws18), "REPLICATE_CRON": "0 2 * * *", "REPLICATE_JOB_FILE": str(jobs),
                 "HOOK_TIMEOUT": "60", "WEBHOOK_URL": "http://127.0.0.1:9/secret-path",
                 "WEBHOOK_HEADER_AUTH": "Bearer helper-hdr-canary", "WEBHOOK_ON_ERROR": "ON",
                 "METRICS_DIR": str(ws18.root / "metrics")}
    done = env_cli(ws18, variables, "config", "check", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    steps = summary["jobs"]["replicate"]["steps"]  # one job, every line
    assert steps[0][1:4] == ["sync", str(ws18.data), str(ws18.root / "copy-a")]
    assert "--checksum" in steps[1] and "replicate-2" not in summary["jobs"]
    assert summary["notify"]["targets"]["webhook:default"] == "http://127.0.0.1:9/..."
    assert "textfile" in summary["notify"]["targets"]
    assert "secret-path" not in done.stdout and "helper-hdr-canary" not in done.stdout
    run = env_cli(ws18, variables, "run", "replicate", "--json")
    assert run.returncode == 0, run.stderr
    assert (ws18.root / "copy-a" / "dir0").is_dir()
    backup = json.loads(env_cli(ws18, variables, "run", "backup", "--json").stdout)
    assert [s["name"] for s in backup["steps"]][:2] == ["pre_hook", "backup"]


class _EmptyS3(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint where nothing exists: every request is recorded and answered 404
    NoSuchKey, so restic gives up at once ("no repository") instead of retrying."""

    seen: ClassVar[list[dict[str, str]]] = []

    def _answer(self) -> None:
        type(self).seen.append(dict(self.headers.items()))
        body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
                b"<Message>The specified key does not exist.</Message></Error>")
        self.send_response(404)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_backend_credentials_reach_restic_and_stay_masked(ws18: Workspace) -> None:
    """restic-backup-helper users give S3 credentials as AWS_* variables: restic must get them
    (its S3 client signs with them: the access key id is in every request's Authorization),
    and the secret key must appear in no output and in no file but its 0600 one."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EmptyS3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = "s3cr/t@:%ü w0rd-canary"
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        variables = {**base(ws18), "RESTIC_REPOSITORY": f"s3:{endpoint}/bucket/restic",
                     "AWS_ACCESS_KEY_ID": "AKIACANARY0000000001",
                     "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "eu-test-1"}
        done = env_cli(ws18, variables, "run", "backup", "--json")
    finally:
        server.shutdown()
    record = json.loads(done.stdout)
    assert record["status"] == "failed"  # there is no repository
    auth = [h["Authorization"] for h in _EmptyS3.seen if "Authorization" in h]
    assert auth, "restic never reached the S3 endpoint with credentials"
    assert "Credential=AKIACANARY0000000001/" in auth[0] and "/eu-test-1/s3/" in auth[0]
    outputs = [done.stdout, done.stderr, *(p.read_text(errors="replace")
                                           for p in ws18.state.rglob("*.log"))]
    for text in outputs:
        assert secret not in text and "s3cr/t" not in text
    holding = [p for p in ws18.state.rglob("*")
               if p.is_file() and secret.encode() in p.read_bytes()]
    assert [p.name for p in holding] == ["aws_secret_access_key"]
    assert holding[0].stat().st_mode & 0o777 == 0o600
    assert "AWS_SECRET_ACCESS_KEY is given inline" not in done.stderr  # restic has no _FILE


def test_hook_timeout_zero_means_no_limit_bounded_at_a_day(ws18: Workspace) -> None:
    done = env_cli(ws18, {**base(ws18), "HOOK_TIMEOUT": "0"}, "config", "check", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert any("HOOK_TIMEOUT=0" in w for w in summary["warnings"])
