"""Canary secrets (the repository password, a webhook secret, an auth header, the SMTP and the
Pushgateway passwords, a healthchecks URL) with `/ @ : %` and non-ASCII in them: printed by a hook
into the run log on purpose, they appear in no body, header, subject, path or pushed metric of
any target, in any encoding (raw, URL-encoded, base64, JSON-escaped, quoted-printable)."""

from __future__ import annotations

import base64
import quopri
import subprocess
import uuid
from pathlib import Path

from tests.support.paths import RESTIC_BINARIES
from tests.support.pushgateway import PG_USER, start_pushgateway
from tests.support.receivers import Receiver
from tests.support.secrets import CANARY, encodings, secret_file
from tests.support.smtp import SmtpServer
from tests.support.workspace import Workspace

REPO_PASSWORD = "repo-" + CANARY
WHSEC = "whsec_" + base64.b64encode(("hmac-" + CANARY).encode()).decode()
# HTTP header values are Latin-1 at best: this canary keeps CANARY's / @ : % and drops the rest
AUTH_HEADER = "Bearer hdr-pa/ss@w:rd%20-" + base64.b64encode(CANARY.encode()).decode()
SMTP_CANARY = "smtp-" + CANARY
PG_CANARY = "pg-" + CANARY
HC_UUID = str(uuid.uuid4())


def forms(secret: str) -> set[bytes]:
    return encodings(secret) | {quopri.encodestring(secret.encode()).strip()}


def assert_clean(data: bytes, where: str, *, allow: tuple[str, ...] = ()) -> None:
    for secret in (REPO_PASSWORD, WHSEC, AUTH_HEADER, SMTP_CANARY, PG_CANARY, HC_UUID):
        if secret in allow:
            continue
        for form in forms(secret):
            assert form not in data, f"{secret!r} leaked into {where} as {form!r}"


def test_no_secret_reaches_any_target(ws18: Workspace, tmp_path: Path, receiver: Receiver,
                                      hc_receiver: Receiver, smtp_server: SmtpServer) -> None:
    # a repository whose password is a canary
    repo, password = tmp_path / "canary-repo", secret_file(tmp_path / "repo.pw", REPO_PASSWORD)
    restic = RESTIC_BINARIES["0.18"]
    subprocess.run([restic, "init", "--repo", str(repo), "--password-file", str(password)],
                   check=True, capture_output=True, env={"HOME": str(tmp_path),
                                                        "PATH": "/usr/bin:/bin"})
    smtp_server.accounts["mailer"] = SMTP_CANARY
    gateway_dir = tmp_path / "pg"
    gateway_dir.mkdir()
    gateway = start_pushgateway(gateway_dir, password=PG_CANARY)
    files = {name: secret_file(tmp_path / name, value) for name, value in {
        "ops.whsec": WHSEC, "ops.auth": AUTH_HEADER, "smtp.pw": SMTP_CANARY,
        "pg.pw": PG_CANARY, "hc.url": f"{hc_receiver.url}/{HC_UUID}"}.items()}
    leaky = tmp_path / "leaky-hook.sh"  # prints every secret it can get at
    leaky.write_text("#!/bin/sh\necho \"password: $RESTIC_PASSWORD\"\n" + "".join(
        f"echo \"{name}: $(cat {path})\"\n" for name, path in files.items()))
    leaky.chmod(0o755)
    try:
        ws18.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws18.data}"]
repository = "{repo}"
password_file = "{password}"
pre_hook = ["{leaky}"]
hook_env = ["RESTIC_PASSWORD"]

[notify.pushgateway]
url = "{gateway.url}"
username = "{PG_USER}"
password_file = "{files['pg.pw']}"

[notify.webhooks.ops]
url = "{receiver.url}/hook"
secret_file = "{files['ops.whsec']}"
auth_header_file = "{files['ops.auth']}"
on = ["start", "success", "warning", "failure"]

[notify.healthchecks.nightly]
url_file = "{files['hc.url']}"

[notify.mail]
host = "127.0.0.1"
port = {smtp_server.port}
starttls = true
cafile = "{smtp_server.cafile}"
username = "mailer"
password_file = "{files['smtp.pw']}"
from = "backup@example.org"
to = ["ops@example.org"]
""")
        done = ws18.cli("run", "nightly", "--json")
        assert done.returncode == 0, done.stderr
        assert "password: ***" in (ws18.state / "logs" / "nightly").glob("*.log").__next__() \
            .read_text()
        assert_clean(done.stdout.encode() + done.stderr.encode(), "the CLI's output")
        for log in (ws18.state / "logs").rglob("*.log"):
            assert_clean(log.read_bytes(), str(log))
        assert_clean((ws18.state / "last-nightly.json").read_bytes(), "last-nightly.json")
        hooks = receiver.wait_for(2)
        for r in hooks:
            headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items()
                                if k != "Authorization").encode()
            assert_clean(r.body + headers, "a webhook")
            assert r.headers["Authorization"] == AUTH_HEADER  # sent where it belongs, only
        for r in hc_receiver.wait_for(2):
            assert r.path.startswith(f"/{HC_UUID}/")  # the receiver's own URL, of course
            assert_clean(r.body + str(r.headers).encode(), "a healthchecks ping")
        [mail] = smtp_server.wait_for(1)
        assert_clean(mail.as_bytes(), "the mail")
        assert_clean(str(mail["Subject"]).encode() + mail.get_content().encode(), "the mail")
        assert_clean(gateway.exposition().encode(), "the Pushgateway's metrics")
        status = ws18.cli("status", "--json")
        assert_clean(status.stdout.encode() + status.stderr.encode(), "status")
        doctor = ws18.cli("doctor", "--json")
        assert_clean(doctor.stdout.encode() + doctor.stderr.encode(), "doctor")
    finally:
        gateway.process.terminate()
        gateway.process.wait(10)
