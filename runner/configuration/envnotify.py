"""Environment mode: notification targets from restic-backup-helper's variables (WEBHOOK_*,
MAILX_*, METRICS_DIR) and restic-runner's own (SMTP_*, RESTIC_RUNNER_PUSHGATEWAY_*, …), as
docs/migration.md lists them.

Mail: restic-backup-helper hands its mail to msmtp, configured by a mounted `/etc/msmtprc`;
without SMTP_HOST that file is read for the account msmtp would use (`account default`, with
`defaults` and `account NAME : PARENT` inheritance). When no SMTP server can be found, mail is
left out with a reason (a start-up warning and a failing `doctor` line); the jobs run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

MSMTPRC = "/etc/msmtprc"  # where restic-backup-helper's users mount it
MSMTPRC_ENV = "RESTIC_RUNNER_MSMTPRC"  # another place to read it from
ERRORS_ONLY = ["warning", "failure"]  # *_ON_ERROR=ON: a run whose exit code is not 0


class Builder(Protocol):
    env: dict[str, str]
    warnings: list[str]
    problems: dict[str, str]

    def get(self, name: str) -> str | None: ...
    def secret_file(self, name: str, value: str, *, warn: bool = True) -> str: ...
    def note(self, key: str, variable: str) -> None: ...


def on(value: str | None) -> bool:
    """restic-backup-helper's switches: ON in any case; anything else is off."""
    return (value or "").upper() == "ON"


def read_notify(b: Builder) -> dict[str, Any]:
    notify: dict[str, Any] = {}
    if b.get("METRICS_DIR"):
        notify["metrics_dir"] = b.get("METRICS_DIR")
        b.note("notify.metrics_dir", "METRICS_DIR")
    if b.get("WEBHOOK_URL"):
        notify["webhooks"] = {"default": _webhook(b)}
    if b.get("MAILX_RCPT"):
        mail = _mail(b)
        if mail:
            notify["mail"] = mail
    if b.get("RESTIC_RUNNER_PUSHGATEWAY_URL"):
        gateway: dict[str, Any] = {"url": b.get("RESTIC_RUNNER_PUSHGATEWAY_URL")}
        b.note("notify.pushgateway.url", "RESTIC_RUNNER_PUSHGATEWAY_URL")
        if b.get("RESTIC_RUNNER_PUSHGATEWAY_USER"):
            gateway["username"] = b.get("RESTIC_RUNNER_PUSHGATEWAY_USER")
            gateway["password_file"] = b.get("RESTIC_RUNNER_PUSHGATEWAY_PASSWORD_FILE")
            b.note("notify.pushgateway.password_file", "RESTIC_RUNNER_PUSHGATEWAY_PASSWORD_FILE")
        notify["pushgateway"] = gateway
    if b.get("RESTIC_RUNNER_HEALTHCHECKS_URL_FILE"):
        notify["healthchecks"] = {"backup": {
            "url_file": b.get("RESTIC_RUNNER_HEALTHCHECKS_URL_FILE"), "jobs": ["backup"]}}
        b.note("notify.healthchecks.backup.url_file", "RESTIC_RUNNER_HEALTHCHECKS_URL_FILE")
    return notify


def _webhook(b: Builder) -> dict[str, Any]:
    hook: dict[str, Any] = {"url": b.get("WEBHOOK_URL")}
    b.note("notify.webhooks.default.url", "WEBHOOK_URL")
    timeout = b.get("WEBHOOK_TIMEOUT")
    if timeout and timeout.isascii() and timeout.isdecimal() and int(timeout) > 0:
        hook["timeout"] = int(timeout)
    elif timeout:
        b.warnings.append(f"WEBHOOK_TIMEOUT={timeout!r} is not a positive integer; using 10s")
        hook["timeout"] = 10
    if b.get("WEBHOOK_HEADER_AUTH"):
        hook["auth_header_file"] = b.secret_file("WEBHOOK_HEADER_AUTH",
                                                 b.get("WEBHOOK_HEADER_AUTH") or "")
        b.note("notify.webhooks.default.auth_header_file", "WEBHOOK_HEADER_AUTH")
    if on(b.get("WEBHOOK_ON_ERROR")):
        hook["on"] = ERRORS_ONLY
    return hook


def _mail(b: Builder) -> dict[str, Any] | None:
    recipients = [a for a in (b.get("MAILX_RCPT") or "").replace(",", " ").split() if a]
    b.note("notify.mail.to", "MAILX_RCPT")
    if b.get("SMTP_HOST"):
        mail = _mail_from_smtp_variables(b)
    else:
        mail = _mail_from_msmtprc(b)
        if mail is None:
            return None
    mail["to"] = recipients
    mail.setdefault("from", f"restic-runner@{b.get('HOSTNAME') or 'localhost'}")
    if on(b.get("MAILX_ON_ERROR")):
        mail["on"] = ERRORS_ONLY
    return mail


def _mail_from_smtp_variables(b: Builder) -> dict[str, Any]:
    mail: dict[str, Any] = {"host": b.get("SMTP_HOST"), "starttls": on(b.get("SMTP_STARTTLS")),
                            "tls": on(b.get("SMTP_TLS"))}
    if b.get("SMTP_FROM"):
        mail["from"] = b.get("SMTP_FROM")
    if b.get("SMTP_PORT"):
        mail["port"] = int(b.get("SMTP_PORT") or "") if (b.get("SMTP_PORT") or "").isdecimal() \
            else b.get("SMTP_PORT")  # refused by validation, naming SMTP_PORT
    if b.get("SMTP_USER"):
        mail["username"] = b.get("SMTP_USER")
        if b.get("SMTP_PASSWORD_FILE"):
            mail["password_file"] = b.get("SMTP_PASSWORD_FILE")
        elif b.get("SMTP_PASSWORD"):
            mail["password_file"] = b.secret_file("SMTP_PASSWORD", b.get("SMTP_PASSWORD") or "")
    for key, var in (("host", "SMTP_HOST"), ("from", "SMTP_FROM"), ("port", "SMTP_PORT"),
                     ("password_file", "SMTP_PASSWORD_FILE"), ("username", "SMTP_USER"),
                     ("starttls", "SMTP_STARTTLS"), ("tls", "SMTP_TLS")):
        b.note(f"notify.mail.{key}", var)
    return mail


def _mail_from_msmtprc(b: Builder) -> dict[str, Any] | None:
    path = Path(b.get(MSMTPRC_ENV) or MSMTPRC)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        reason = "does not exist" if isinstance(exc, FileNotFoundError) else \
            f"cannot be read ({exc.strerror})"
        return _no_mail(b, f"MAILX_RCPT is set but no SMTP server is configured: {path} "
                           f"{reason} and SMTP_HOST is not set")
    account = msmtp_account(text)
    if not account.get("host"):
        return _no_mail(b, f"MAILX_RCPT is set but {path} names no SMTP host for its default "
                           "account (and SMTP_HOST is not set)")
    try:
        mail = _mail_settings(b, account, path)
    except ValueError as exc:
        return _no_mail(b, f"{path}: {exc}")
    for key in mail:
        b.note(f"notify.mail.{key}", str(path))
    return mail


def _no_mail(b: Builder, reason: str) -> None:
    b.problems["notify.mail"] = reason + "; mail is disabled, the jobs run"
    return None


def _mail_settings(b: Builder, account: dict[str, str], path: Path) -> dict[str, Any]:
    tls = account.get("tls", "off") == "on"
    starttls = tls and account.get("tls_starttls", "on") == "on"
    mail: dict[str, Any] = {"host": account["host"], "starttls": starttls,
                            "tls": tls and not starttls}
    port = account.get("port")
    if port:
        if not (port.isascii() and port.isdecimal()):
            raise ValueError(f"port {port!r} is not a TCP port")
        mail["port"] = int(port)
    if account.get("from"):
        mail["from"] = account["from"]
    trust = account.get("tls_trust_file")
    if tls and trust and os.access(trust, os.R_OK):
        mail["cafile"] = trust
    if account.get("auth", "off") != "off" and account.get("user"):
        mail["username"] = account["user"]
        mail["password_file"] = _msmtp_password(b, account)
    return mail


def _msmtp_password(b: Builder, account: dict[str, str]) -> str:
    if "password" in account:
        return b.secret_file("SMTP_PASSWORD", account["password"], warn=False)
    import shlex  # msmtprc with passwordeval only

    command = shlex.split(account.get("passwordeval", ""))
    if len(command) == 2 and command[0] == "cat":  # the common form: the password in a file
        return command[1]
    if command:
        raise ValueError("passwordeval is supported only as `cat FILE`")
    raise ValueError("auth is on but there is no password (or passwordeval `cat FILE`)")


def msmtp_account(text: str) -> dict[str, str]:
    """The settings of the account msmtp uses without `-a`: `default`, with what `defaults`
    and its `: PARENT` accounts give it (msmtprc(5) syntax, one `key value` a line); empty when
    there is no `default` account."""
    defaults: dict[str, str] = {}
    accounts: dict[str, dict[str, str]] = {}
    current: dict[str, str] = defaults
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.replace("\t", " ").partition(" ")
        key, value = key.strip(), value.strip() or "on"  # a bare `tls` means `tls on`
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == "defaults":
            current = defaults
        elif key == "account":
            name, _, parents = value.partition(":")
            current = dict(defaults)
            for parent in parents.split(","):
                current.update(accounts.get(parent.strip(), {}))
            accounts[name.strip()] = current
        else:
            current[key] = value
    return accounts.get("default", {})
