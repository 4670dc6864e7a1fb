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
    # restic-backup-helper's form: the kind capitalised (and the job, not named after it),
    # whole seconds, restic's own size, the short snapshot id
    assert re.fullmatch(rf"\[OK\] Backup nightly test-host · \d+s · \d+\.\d{{3}} KiB new "
                        rf"\(snap {snap}\)", subject), subject
    assert f"{record['bytes_added']} new" in subject
    body = msg.get_payload(decode=True).decode()
    assert f"run {record['run_id']} of job nightly" in body
    assert "finished: succeeded" in body
    # restic's own summary text, as in restic-backup-helper's mails, not its JSON
    assert "\nFiles:  " in body and f"snapshot {snap} saved" in body
    assert '"message_type"' not in body
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
    assert msg["Subject"].startswith(f"[FAIL {code}] Backup broken test-host · ")
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


def _replicate_config(ws: Workspace, smtp: SmtpServer, lines: list[str]) -> None:
    ws.write_config(f"""
[jobs.replicate]
kind = "replicate"
lines = {lines!r}

[notify.mail]
host = "127.0.0.1"
port = {smtp.port}
starttls = true
cafile = "{smtp.cafile}"
username = "{SMTP_USER}"
password_file = "{secret_file(ws.root / "smtp.password", SMTP_PASSWORD)}"
from = "backup@test-host.example"
to = ["ops@example.org"]
""".replace("'", '"'))


def test_replicate_lines_mail_only_when_a_line_failed(ws18: Workspace,
                                                     smtp_server: SmtpServer) -> None:
    """restic-backup-helper's replicate mailed once per run, only when a job line failed
    (whatever MAILX_ON_ERROR said), with the counts in the subject."""
    good = f"{ws18.data};{ws18.root / 'copy'};copy"
    _replicate_config(ws18, smtp_server, [good])
    code, record = ws18.run_json("replicate")
    assert code == 0, record
    assert (record["replicate_jobs_processed"], record["replicate_jobs_failed"]) == ("1", "0")
    assert record["notifications"] == []  # a clean run: no mail at all
    _replicate_config(ws18, smtp_server, [good, f"{ws18.root / 'nowhere'};{ws18.root};copy"])
    code, record = ws18.run_json("replicate")
    assert code != 0, record
    [msg] = smtp_server.wait_for(1)
    assert re.fullmatch(rf"\[FAIL {code}\] Replicate test-host · \d+s · 2 jobs \(1 failed\)",
                        msg["Subject"]), msg["Subject"]
