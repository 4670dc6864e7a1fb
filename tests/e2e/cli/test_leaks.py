"""Canary secrets (a repository URL password, a password file, an env_files value, each with
`/ @ : %`, spaces and non-ASCII) appear in no file under state_dir or compat_log_dir (the
helper's /var/log: last-<job>.json, <job>-last.log, cron.log) and no output of any command,
in any encoding; and never in a child's argv.

The repository is a real REST server (`rclone serve restic` with basic auth) on loopback, so the
repository URL carries a password as production ones do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import RUNNER
from tests.support.processes import processes_with_cmdline
from tests.support.rest_server import start_rest_server
from tests.support.secrets import CANARY, encodings, secret_file
from tests.support.workspace import Workspace

URL_CANARY = "url-" + CANARY
PASSWORD_CANARY = "pw-" + CANARY
ENV_CANARY = "env-" + CANARY
WRONG_CANARY = "wrong-" + CANARY
CANARIES = (URL_CANARY, PASSWORD_CANARY, ENV_CANARY, WRONG_CANARY)


def assert_no_canary(data: bytes, where: str) -> None:
    for canary in CANARIES:
        for form in encodings(canary):
            assert form not in data, f"{canary!r} leaked into {where} as {form!r}"


@pytest.fixture
def canary_repository_url(tmp_path: Path) -> Iterator[str]:
    """A repository URL on a REST server whose basic-auth password is the URL canary."""
    server = start_rest_server(tmp_path / "rest-root", user="backup", password=URL_CANARY)
    yield server.url
    server.stop()


def test_canaries_never_leak(ws: Workspace, canary_repository_url: str, wait_for) -> None:
    repo_file = secret_file(ws.root / "repo-url", canary_repository_url)
    password = secret_file(ws.root / "canary-password", PASSWORD_CANARY)
    env_secret = secret_file(ws.root / "aws-secret", ENV_CANARY)
    wrong = secret_file(ws.root / "wrong-password", WRONG_CANARY)
    env = ws.restic_env() | {"RESTIC_REPOSITORY": canary_repository_url,
                             "RESTIC_PASSWORD_FILE": str(password)}
    subprocess.run([ws.restic, "init"], env=env, check=True, capture_output=True)
    hook = ws.root / "hook.sh"
    hook.write_text('#!/bin/sh\necho "hook sees $AWS_SECRET_ACCESS_KEY"\n'
                    'echo "hook sees $RESTIC_REPOSITORY" >&2\n')
    hook.chmod(0o755)
    big = ws.root / "big"
    big.mkdir()
    (big / "r.bin").write_bytes(os.urandom(1024 * 1024))
    varlog = ws.root / "varlog"
    ws.config_path.write_text(f"""
state_dir = "{ws.state}"
compat_log_dir = "{varlog}"
[restic]
binary = "{ws.restic}"
repository_file = "{repo_file}"
password_file = "{password}"
cache_dir = "{ws.root / 'cache'}"
env_files = {{ AWS_SECRET_ACCESS_KEY = "{env_secret}" }}

[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
pre_hook = ["{hook}"]
post_hook = ["{hook}"]
hook_env = ["AWS_SECRET_ACCESS_KEY", "RESTIC_REPOSITORY"]
forget_args = ["--keep-last", "3"]

[jobs.wrong]
kind = "check"
password_file = "{wrong}"

[jobs.slow]
kind = "backup"
paths = ["{big}"]
args = ["--limit-upload", "200"]
timeout = "3s"
""")
    outputs: list[tuple[str, subprocess.CompletedProcess[bytes]]] = []

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([RUNNER, *args], env=ws.env(), capture_output=True, timeout=120)
        outputs.append((" ".join(args), done))
        return done

    # success with hooks that print the secrets they were given
    done = cli("run", "nightly", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["repository"] == "rest:http://backup:***@127.0.0.1:" + \
        canary_repository_url.rsplit(":", 1)[1]
    log = (ws.state / "logs" / "nightly" / f"{record['run_id']}.log").read_text()
    assert "hook sees ***" in log  # the hook got the secret, the log shows the mask
    cli("run", "nightly")
    # failure: wrong password
    done = cli("run", "wrong", "--json")
    assert done.returncode in (1, 12)
    # timeout, with restic's argv checked while it runs
    proc = subprocess.Popen([RUNNER, "run", "slow"], env=ws.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    pid = wait_for(lambda: processes_with_cmdline(str(big)))[0]
    assert_no_canary(Path(f"/proc/{pid}/cmdline").read_bytes(), "restic's argv")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 124
    outputs.append(("run slow", subprocess.CompletedProcess([], 124, out, err)))
    # cancel
    proc = subprocess.Popen([RUNNER, "run", "slow"], env=ws.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    wait_for(lambda: processes_with_cmdline(str(big)))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    outputs.append(("run slow (cancelled)", subprocess.CompletedProcess([], 130, out, err)))
    for args in (("status",), ("status", "--json"), ("config", "check"),
                 ("config", "check", "--json"), ("doctor",), ("doctor", "--json")):
        cli(*args)
    doctor = json.loads(outputs[-1][1].stdout)
    assert any("wrong password" in c["message"] for c in doctor["checks"])

    for name, done in outputs:
        assert_no_canary(done.stdout, f"stdout of {name}")
        assert_no_canary(done.stderr, f"stderr of {name}")
    files = [p for p in ws.state.rglob("*") if p.is_file()]
    assert len(files) >= 8
    compat = sorted(p.name for p in varlog.iterdir())
    assert compat == ["cron.log", "last-nightly.json", "last-slow.json", "last-wrong.json",
                      "nightly-last.log", "slow-last.log", "wrong-last.log"]
    assert "hook sees ***" in (varlog / "cron.log").read_text()
    files += list(varlog.iterdir())
    for path in files:
        assert_no_canary(path.read_bytes(), str(path))
