"""`[notify.mail]`: one mail per run end, over SMTP (STARTTLS or implicit TLS, optional login).

Subject as restic-backup-helper wrote it (docs/notifications.md):
`[OK] <Kind> <hostname> · <whole seconds> · <details>` or `[FAIL <exit>] …` (`[DRY RUN OK]`,
`[DRY RUN FAIL <exit>]` for a dry run; `<Kind> <job>` when the job is not named after its kind);
body: the masked run log (restic's own text), cut from the start to `body_limit` bytes, saying
so. A replicate job made of job-file lines mails only when a line failed, as the helper's
replicate did. Credentials go to the SMTP session only, never into a header.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any

from notifiers.base import DeliveryContext, Event, Outcome, event_class, fingerprint_of
from notifiers.healthchecks import log_tail
from runner.checks import Check
from runner.configuration.notify import MailSettings
from runner.engine.jobs.humantext import format_bytes
from runner.engine.peerfields import kind_title
from runner.engine.record import RunRecord, Status
from security.masking import redact_text
from security.secretfiles import read_secret_file

if TYPE_CHECKING:
    from runner.configuration.config import Config


def subject(record: RunRecord, test: bool = False) -> str:
    status, code = record["status"], record.get("exit_code")
    if test:
        tag = "[TEST]"
    elif status == Status.SUCCEEDED:
        tag = "[OK]"
    elif status == Status.SKIPPED:
        tag = "[SKIPPED]"
    else:
        tag = f"[FAIL {code if code is not None else status}]"
    if record.get("dry_run") and not test:  # "[DRY RUN OK]": never mistaken for a backup
        tag = "[DRY RUN " + tag[1:]
    title = kind_title(record["kind"])
    if record["job"] != record["kind"]:  # several jobs of one kind: which one
        title += f" {record['job']}"
    parts = [f"{tag} {title} {record['hostname']}", whole_duration(record)]
    details = mail_details(record)
    if details:
        parts.append(details)
    return redact_text(" · ".join(parts))


def whole_duration(record: RunRecord) -> str:
    """restic-backup-helper's run length: whole seconds (end second − start second), `0s`,
    `1m5s`, `1h2m`."""
    start, end = record.get("started_epoch"), record.get("finished_epoch")
    seconds = end - start if isinstance(start, int) and isinstance(end, int) else \
        int(float(record.get("duration_seconds") or 0.0))
    seconds = max(seconds, 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60}m"


def mail_details(record: RunRecord) -> str:
    """restic-backup-helper's details: a backup's data added as restic says it (or its new
    files) and short snapshot id; a replicate's lines run and failed; else the (masked)
    repository."""
    stats = record.get("stats") or {}
    if record["kind"] == "backup":
        text = (f"{format_bytes(stats['data_added'])} new" if "data_added" in stats
                else f"{stats['files_new']} new files" if "files_new" in stats else "")
        if stats.get("snapshot_id") and not record.get("dry_run"):
            text += f"{' ' if text else ''}(snap {str(stats['snapshot_id'])[:8]})"
        if text:
            return text
    if record["kind"] == "replicate" and "replicate_jobs_processed" in stats:
        return (f"{stats['replicate_jobs_processed']} jobs "
                f"({stats.get('replicate_jobs_failed', 0)} failed)")
    if record["status"] == Status.SKIPPED:
        return str(record.get("error") or "")
    return str(record.get("repository") or "")


class MailTarget:
    name = "mail"

    def __init__(self, settings: MailSettings, config: Config | None = None) -> None:
        self.settings = settings
        # replicate jobs made of job-file lines: mailed only when a line failed (the helper's
        # rule, whatever MAILX_ON_ERROR said)
        self.failures_only = frozenset(
            name for name, job in (config.jobs.items() if config else ())
            if job.kind == "replicate" and job.replicate_lines)
        _warm_up()

    def fingerprint(self) -> str:
        return fingerprint_of(self.settings)

    def wants(self, event: str, job: str) -> bool:
        cls = event_class(event)
        if cls == "success" and job in self.failures_only:
            return False
        return cls == "test" or (cls != "start" and self.settings.filters.wants(cls, job))

    def message(self, event: Event, ctx: DeliveryContext) -> EmailMessage:
        s = self.settings
        msg = EmailMessage()
        msg["Subject"] = subject(event.record, test=event_class(event.type) == "test")
        msg["From"] = s.sender
        msg["To"] = ", ".join(s.to)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid("restic-runner", domain=event.record["hostname"])
        msg["X-Restic-Runner-Run-Id"] = event.run_id
        limit = s.body_limit
        log = log_tail(ctx, event.record, limit + 1)
        text = log[-limit:].decode("utf-8", "replace")
        if len(log) > limit:
            text = (f"[the log is longer than {limit} bytes: only its end is shown; the whole "
                    f"log: `GET /runs/{event.run_id}/log`]\n" + text)
        # quoted-printable: restic's JSON lines are longer than SMTP's 998-byte line limit
        msg.set_content(redact_text(text) or "(no log)", cte="quoted-printable")
        return msg

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = None  # loading the CA store costs ~30 ms: only when TLS is used
        if s.tls or s.starttls:
            context = ssl.create_default_context(cafile=str(s.cafile) if s.cafile else None)
        smtp: smtplib.SMTP
        if s.tls:
            smtp = smtplib.SMTP_SSL(s.host, s.effective_port, timeout=s.timeout, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.effective_port, timeout=s.timeout)
        try:
            smtp.ehlo()
            if s.starttls:
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.username and s.password_file:
                _login(smtp, s.username, read_secret_file(s.password_file,
                                                          "notify.mail.password_file"))
        except BaseException:
            smtp.close()
            raise
        return smtp

    def deliver(self, event: Event, ctx: DeliveryContext) -> Outcome:
        msg = self.message(event, ctx)
        try:
            smtp = self._connect()
            try:
                code, reply = smtp.mail(self.settings.sender)
                if code != 250:
                    return _refused(code, reply, "MAIL FROM")
                for rcpt in self.settings.to:
                    code, reply = smtp.rcpt(rcpt)
                    if code not in (250, 251):
                        return _refused(code, reply, f"RCPT TO {rcpt}")
                # CRLF line ends: smtplib passes bytes through as they are
                code, reply = smtp.data(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))
                if code != 250:
                    return _refused(code, reply, "DATA")
                return Outcome.ok(f"SMTP {code}")
            finally:
                _quit(smtp)
        except smtplib.SMTPResponseException as exc:
            return _refused(exc.smtp_code, exc.smtp_error, "SMTP")
        except (OSError, smtplib.SMTPException) as exc:
            return Outcome.failed("no answer", f"{self._where()}: {exc or type(exc).__name__}")

    def _where(self) -> str:
        return f"smtp://{self.settings.host}:{self.settings.effective_port}"

    def check(self, ctx: DeliveryContext) -> Check:
        try:
            _quit(self._connect())
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(
                exc.smtp_error, bytes) else str(exc.smtp_error)
            return Check.of(self.name, False,
                            redact_text(f"{self._where()}: {exc.smtp_code} {reply}"))
        except (OSError, smtplib.SMTPException) as exc:
            return Check.of(self.name, False, redact_text(f"{self._where()}: {exc}"))
        login = "login accepted" if self.settings.username else "no login configured"
        return Check.of(self.name, True, f"{self._where()} reachable, {login}")

    def preview(self, event: Event, ctx: DeliveryContext) -> dict[str, Any]:
        msg = self.message(event, ctx)
        return {"target": self.name, "server": self._where(), "subject": msg["Subject"],
                "to": list(self.settings.to), "body_bytes": len(msg.get_content())}


def _warm_up() -> None:
    """Build and render one message: `email` imports its content manager, generator and header
    parsers on first use (~30 ms). Targets are built in the courier's thread while the tool
    runs, so that is when it should happen, not after the run."""
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = "·", "a@example.org", "b@example.org, c@example.org"
    msg.set_content("·", cte="quoted-printable")
    msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """AUTH PLAIN in UTF-8 (RFC 4616) where offered: smtplib's own `login` encodes as ASCII and
    fails on a password such as "pässwort"; other mechanisms go through `login`."""
    mechanisms = smtp.esmtp_features.get("auth", "").upper().split()
    if "PLAIN" not in mechanisms:
        smtp.login(user, password)
        return
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    code, reply = smtp.docmd("AUTH", "PLAIN " + token)
    if code not in (235, 503):  # 503: already authenticated
        raise smtplib.SMTPAuthenticationError(code, reply)


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def _refused(code: int, reply: bytes | str, stage: str) -> Outcome:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    # 4xx: try again later; 5xx: the server will say the same tomorrow
    return Outcome.failed(f"SMTP {code}", f"{stage}: {code} {text}", retry=code < 500)
