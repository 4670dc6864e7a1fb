"""Secret files whose content can never work are config errors at load time, naming the key and
never the value: a `whsec_` secret that is not base64, an empty secret file, an `Authorization`
value that is not printable ASCII (and a bearer token or signing key that cannot be used).
`config check`, `doctor`, `run` and `serve` all refuse them before anything runs. On restic
0.18 only (`ws18`): what is checked here happens before restic is ever started."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.support.paths import RUNNER
from tests.support.secrets import secret_file
from tests.support.workspace import Workspace

GOOD_WHSEC = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # 24 bytes
BACKUP = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]
"""


def _clients(good: Path, bad_key: str, bad: Path) -> str:
    return f"""
[[clients]]
name = "airflow"
jobs = ["*"]
secret_file = "{good}"

[[clients]]
name = "cron"
jobs = ["nightly"]
{bad_key} = "{bad}"
"""


def _webhook(key: str, path: Path) -> str:
    return f"""
[notify.webhooks.ops]
url = "http://127.0.0.1:9/hook"
{key} = "{path}"
"""


def _random(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(18)


# Each case: (the config text after the jobs, the key the error must name, the secret values
# that must not show). `root` is the workspace directory.
def _case(name: str, root: Path) -> tuple[str, str, list[str]]:
    good = secret_file(root / "good.whsec", GOOD_WHSEC)
    if name == "client-whsec-not-base64":
        body = _random("S3cr3t!not*base64-")
        value = "whsec_" + body
        bad = secret_file(root / "bad.whsec", f"{GOOD_WHSEC}\n{value}")
        return _clients(good, "secret_file", bad), "clients[1].secret_file", [value, body]
    if name == "client-token-empty":
        bad = root / "empty.token"
        bad.write_text("")
        bad.chmod(0o600)
        return _clients(good, "token_file", bad), "clients[1].token_file", []
    if name == "client-token-whitespace":
        bad = root / "blank.token"
        bad.write_text("  \n\t\n")
        bad.chmod(0o600)
        return _clients(good, "token_file", bad), "clients[1].token_file", []
    if name == "client-token-with-space":
        value = _random("tok ") + "-ünï"
        bad = secret_file(root / "space.token", value)
        return (_clients(good, "token_file", bad), "clients[1].token_file",
                [value, value.split(" ", 1)[1]])
    if name == "client-token-too-short":  # guessable, and too short to be masked
        value = "ab1"
        bad = secret_file(root / "short.token", value)
        return _clients(good, "token_file", bad), "clients[1].token_file", []
    if name == "webhook-whsec-not-base64":
        body = _random("hook!secret*")
        value = "whsec_" + body
        bad = secret_file(root / "ops.whsec", value)
        return _webhook("secret_file", bad), "notify.webhooks.ops.secret_file", [value, body]
    if name == "webhook-auth-header-non-ascii":
        credential = _random("tøken-🔑-")
        value = "Bearer " + credential
        bad = secret_file(root / "ops.auth", value)
        return (_webhook("auth_header_file", bad), "notify.webhooks.ops.auth_header_file",
                [value, credential, credential.split("-", 2)[2]])
    if name == "webhook-auth-header-empty":
        bad = root / "ops.auth"
        bad.write_text("\n")
        bad.chmod(0o600)
        return _webhook("auth_header_file", bad), "notify.webhooks.ops.auth_header_file", []
    if name == "signing-key-not-whsk":
        value = _random("whsk_?")
        bad = secret_file(root / "signing.key", value)
        return f'\n[signing]\nkey_file = "{bad}"\n', "signing.key_file", [value]
    if name == "restic-env-file-empty":
        bad = root / "aws-secret"
        bad.write_text(" \n")
        bad.chmod(0o600)
        return "", "restic.env_files.AWS_SECRET_ACCESS_KEY", []
    raise AssertionError(name)


CASES = ["client-whsec-not-base64", "client-token-empty", "client-token-whitespace",
         "client-token-with-space", "client-token-too-short", "webhook-whsec-not-base64",
         "webhook-auth-header-non-ascii", "webhook-auth-header-empty", "signing-key-not-whsk",
         "restic-env-file-empty"]


def _configure(ws: Workspace, name: str) -> tuple[str, list[str]]:
    extra, key, values = _case(name, ws.root)
    restic = ""
    if name == "restic-env-file-empty":
        restic = f'env_files = {{ AWS_SECRET_ACCESS_KEY = "{ws.root / "aws-secret"}" }}'
    ws.write_config(BACKUP.format(data=ws.data) + extra, restic=restic)
    return key, values


def _assert_hidden(values: list[str], *outputs: str) -> None:
    for value in values:
        for output in outputs:
            assert value not in output


@pytest.mark.parametrize("name", CASES)
def test_config_check_refuses_naming_the_key(ws18: Workspace, name: str) -> None:
    key, values = _configure(ws18, name)
    done = ws18.cli("config", "check")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f": {key}: " in done.stderr and "Traceback" not in done.stderr
    assert "OK" not in done.stdout
    as_json = ws18.cli("config", "check", "--json")
    assert as_json.returncode == 2
    error = json.loads(as_json.stdout)["error"]
    assert error["key"] == key
    _assert_hidden(values, done.stdout, done.stderr, as_json.stdout, as_json.stderr)


@pytest.mark.parametrize("name", CASES)
def test_doctor_fails_on_the_config_naming_the_key(ws18: Workspace, name: str) -> None:
    key, values = _configure(ws18, name)
    done = ws18.cli("doctor")
    # doctor's documented exit status for any failure, a broken config included, is 1
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[FAIL] config:" in done.stdout and f": {key}: " in done.stdout
    report = ws18.cli("doctor", "--json")
    assert report.returncode == 1
    [check] = [c for c in json.loads(report.stdout)["checks"] if c["section"] == "config"]
    assert check["status"] == "fail" and f": {key}: " in check["message"]
    _assert_hidden(values, done.stdout, done.stderr, report.stdout, report.stderr)


@pytest.mark.parametrize("name", ["client-whsec-not-base64", "client-token-empty",
                                  "webhook-auth-header-non-ascii"])
@pytest.mark.parametrize("command", [("run", "nightly"), ("serve", "--bind", "127.0.0.1:9")])
def test_run_and_serve_refuse_before_anything_runs(ws18: Workspace, name: str,
                                                   command: tuple[str, ...]) -> None:
    key, values = _configure(ws18, name)
    done = ws18.cli(*command, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f": {key}: " in done.stderr
    assert ws18.snapshots() == []  # nothing ran
    _assert_hidden(values, done.stdout, done.stderr)


def test_the_environment_mode_names_the_variable(ws18: Workspace) -> None:
    credential = _random("tøken-")
    env = {k: v for k, v in ws18.env().items() if k != "RESTIC_RUNNER_CONFIG"}
    ws18.extra_env = {}
    import subprocess

    env.update(RESTIC_REPOSITORY=str(ws18.repo), RESTIC_PASSWORD_FILE=str(ws18.password_file),
               RESTIC_RUNNER_STATE_DIR=str(ws18.state), BACKUP_ROOT_DIR=str(ws18.data),
               WEBHOOK_URL="http://127.0.0.1:9/hook", WEBHOOK_HEADER_AUTH="Bearer " + credential)
    done = subprocess.run([RUNNER, "config", "check"], env=env, capture_output=True, text=True,
                          cwd=ws18.root / "data", timeout=60)
    # environment mode leaves the webhook out, naming the variable; the jobs run
    assert done.returncode == 0, done.stdout + done.stderr
    assert "notify.webhooks.default: WEBHOOK_HEADER_AUTH: " in done.stdout + done.stderr
    _assert_hidden([credential, credential[len("tøken-"):]], done.stdout, done.stderr)


def test_a_valid_setup_still_passes(ws18: Workspace) -> None:
    """The checks accept what works: several whsec_ lines, a token, a printable header."""
    good = secret_file(ws18.root / "good.whsec", f"{GOOD_WHSEC}\n\n{GOOD_WHSEC}")
    token = secret_file(ws18.root / "cron.token", "rrt_tok-pa/ss@w:rd%20")
    auth = secret_file(ws18.root / "ops.auth", "Bearer abc.DEF-123_~+/=")
    ws18.write_config(BACKUP.format(data=ws18.data) + _clients(good, "token_file", token)
                    + _webhook("auth_header_file", auth))
    done = ws18.cli("config", "check")
    assert done.returncode == 0, done.stderr
    assert ": OK" in done.stdout


