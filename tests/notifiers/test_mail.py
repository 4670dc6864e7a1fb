"""Mail through a real SMTP server (aiosmtpd: STARTTLS required before AUTH, self-signed CA)."""

from __future__ import annotations

import re

from tests.support.processes import free_port
from tests.support.secrets import secret_file
from tests.support.smtp import SMTP_PASSWORD, SMTP_USER, SmtpServer, self_signed
from tests.support.workspace import Workspace


def configure(ws: Workspace, smtp: SmtpServer, *, extra: str = "") -> None:
    password = secret_file(ws.root / "smtp.password", SMTP_PASSWORD)
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]

[jobs.broken]
kind = "backup"
paths = ["{ws.data}/missing"]

[notify.mail]
host = "127.0.0.1"
port = {smtp.port}
starttls = true
cafile = "{smtp.cafile}"
username = "{SMTP_USER}"
password_file = "{password}"
from = "backup@test-host.example"
to = ["ops@example.org", "oncall@example.org"]
{extra}
""")


def test_success_mail_has_the_helper_subject_and_the_log(ws18: Workspace,
                                                         smtp_server: SmtpServer) -> None:
    configure(ws18, smtp_server)
    code, record = ws18.run_json("nightly")
    assert code == 0
    [msg] = smtp_server.wait_for(1)
    subject = msg["Subject"]
    snap = record["stats"]["snapshot_id"][:8]
    assert re.fullmatch(rf"\[OK\] nightly test-host · \d+(\.\d)?s · [\d.]+ KiB new "
                        rf"\(snap {snap}\)", subject), subject
    body = msg.get_payload(decode=True).decode()
    assert f"run {record['run_id']} of job nightly" in body
    assert "finished: succeeded" in body
    assert msg["To"] == "ops@example.org, oncall@example.org"
    assert msg["X-Restic-Runner-Run-Id"] == record["run_id"]
    assert smtp_server.envelopes[0].rcpt_tos == ["ops@example.org", "oncall@example.org"]
    assert smtp_server.logins == [(SMTP_USER, SMTP_PASSWORD)]
    [note] = record["notifications"]
    assert note["target"] == "mail" and note["status"] == "delivered"
    assert note["response"] == "SMTP 250"
    for name, value in msg.items():
        assert SMTP_PASSWORD not in value, name


def test_failure_only_with_on_failure(ws18: Workspace, smtp_server: SmtpServer) -> None:
    configure(ws18, smtp_server, extra='on = ["failure"]')
    assert ws18.run_json("nightly")[0] == 0
    code, record = ws18.run_json("broken")
    assert code != 0
    [msg] = smtp_server.wait_for(1)
    assert msg["Subject"].startswith(f"[FAIL {code}] broken test-host · ")
    assert record["repository"] in msg["Subject"]  # the (masked) repository as details


def test_a_long_log_is_cut_and_says_so(ws18: Workspace, smtp_server: SmtpServer) -> None:
    configure(ws18, smtp_server, extra="body_limit = 600")
    assert ws18.run_json("nightly")[0] == 0
    [msg] = smtp_server.wait_for(1)
    body = msg.get_payload(decode=True).decode()
    assert body.startswith("[the log is longer than 600 bytes: only its end is shown")
    [log] = (ws18.state / "logs" / "nightly").glob("*.log")
    assert body.rstrip().endswith(log.read_text().rstrip().splitlines()[-1])  # the end, kept
    assert "finished: succeeded" in body
    assert len(body.encode()) < 600 + 200


def test_a_wrong_password_fails_the_delivery_only(ws18: Workspace,
                                                  smtp_server: SmtpServer) -> None:
    configure(ws18, smtp_server)
    secret_file(ws18.root / "smtp.password", "not-the-password")
    code, record = ws18.run_json("nightly")
    assert code == 0 and record["status"] == "succeeded"
    [note] = record["notifications"]
    assert note["status"] == "failed" and note["response"] == "SMTP 535"  # 5xx: not retried
    assert smtp_server.messages == []


def test_doctor_checks_the_login_without_sending(ws18: Workspace,
                                                 smtp_server: SmtpServer) -> None:
    import json

    configure(ws18, smtp_server)
    done = ws18.cli("doctor", "--json")
    report = json.loads(done.stdout)
    [mail] = [c for c in report["checks"] if c["message"].startswith("mail:")]
    assert mail["status"] == "ok" and "login accepted" in mail["message"]
    assert smtp_server.logins == [(SMTP_USER, SMTP_PASSWORD)]
    assert smtp_server.messages == []
    secret_file(ws18.root / "smtp.password", "not-the-password")
    report = json.loads(ws18.cli("doctor", "--json").stdout)
    [mail] = [c for c in report["checks"] if c["message"].startswith("mail:")]
    assert mail["status"] == "fail" and "535" in mail["message"]
    assert "not-the-password" not in json.dumps(report)


def test_implicit_tls(ws18: Workspace, tmp_path) -> None:
    import ssl

    from aiosmtpd.controller import Controller

    cert, key = self_signed(tmp_path)
    received = []

    class Handler:
        async def handle_DATA(self, srv, session, envelope) -> str:
            received.append(envelope)
            return "250 OK"

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, ssl_context=context)
    controller.start()
    try:
        ws18.write_config(f"""
[jobs.nightly]
kind = "check"

[notify.mail]
host = "127.0.0.1"
port = {port}
tls = true
cafile = "{cert}"
from = "backup@example.org"
to = ["ops@example.org"]
""")
        code, record = ws18.run_json("nightly")
        assert code == 0
        assert record["notifications"][0]["status"] == "delivered", record["notifications"]
        assert len(received) == 1
    finally:
        controller.stop()
