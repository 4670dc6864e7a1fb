"""`[notify.*]` and `[signing]`: where runs report, validated like the rest of the config.

Targets are named `pushgateway`, `textfile`, `webhook:<name>`, `healthchecks:<name>` and `mail`;
those names appear in run records (`notifications`) and in the outbox.
"""

from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from runner.configuration.tables import (
    Table,
    as_bool,
    as_count,
    as_duration,
    as_string,
    as_strings,
    expect,
)

EVENT_CLASSES = ("start", "success", "warning", "failure", "skipped")
END_EVENTS = ("success", "warning", "failure", "skipped")
DEFAULT_HTTP_TIMEOUT = 10.0


class RetryPolicy(NamedTuple):
    """Exponential backoff with jitter, bounded in total time (`[notify] retry_*`)."""

    initial: float = 5.0  # seconds before the first retry
    max_interval: float = 3600.0  # the longest wait between two attempts
    give_up_after: float = 24 * 3600.0  # no attempt later than this after the event


class Filters(NamedTuple):
    """Which events (`on`) of which jobs (`jobs`; empty: all) a target receives."""

    on: tuple[str, ...] = END_EVENTS
    jobs: tuple[str, ...] = ()

    def wants(self, event_class: str, job: str) -> bool:
        return event_class in self.on and (not self.jobs or job in self.jobs)


def _masked(url: str) -> str:
    from security.masking import mask_webhook_url

    return mask_webhook_url(url)


# Every kind of target has a settings type here with the same members: `target` (its name in run
# records and metrics), `key` (its place in the config), `timeout`, `secret_files()` and
# `destination()` (where it points, masked);
# `NotifySettings.targets()` lists the configured ones, and notifiers.registry maps each type to
# the module that delivers it. Adding a kind: one settings type here, one module, one line there.

class PushgatewaySettings(NamedTuple):
    url: str
    username: str | None = None
    password_file: Path | None = None
    timeout: float = DEFAULT_HTTP_TIMEOUT
    jobs: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return "pushgateway"

    @property
    def key(self) -> str:
        return "notify.pushgateway"

    def secret_files(self) -> list[tuple[str, Path | None]]:
        return [(f"{self.key}.password_file", self.password_file)]

    def destination(self) -> str:
        return _masked(self.url)


class TextfileSettings(NamedTuple):
    directory: Path  # node-exporter's textfile collector directory (`[notify] metrics_dir`)

    @property
    def target(self) -> str:
        return "textfile"

    @property
    def key(self) -> str:
        return "notify.metrics_dir"

    @property
    def timeout(self) -> float:
        return 0.0  # a local file

    def secret_files(self) -> list[tuple[str, Path | None]]:
        return []

    def destination(self) -> str:
        return str(self.directory)


class WebhookSettings(NamedTuple):
    name: str
    url: str | None = None
    url_file: Path | None = None
    secret_file: Path | None = None
    auth_header_file: Path | None = None
    filters: Filters = Filters()
    timeout: float = DEFAULT_HTTP_TIMEOUT

    @property
    def target(self) -> str:
        return f"webhook:{self.name}"

    @property
    def key(self) -> str:
        return f"notify.webhooks.{self.name}"

    def secret_files(self) -> list[tuple[str, Path | None]]:
        return [(f"{self.key}.secret_file", self.secret_file),
                (f"{self.key}.url_file", self.url_file),
                (f"{self.key}.auth_header_file", self.auth_header_file)]

    def destination(self) -> str:
        return _masked(self.url) if self.url else f"(from {self.url_file})"


class HealthchecksSettings(NamedTuple):
    name: str
    url: str | None = None  # https://hc-ping.com/<uuid>, .../<ping-key>/<slug>, self-hosted
    url_file: Path | None = None
    create: bool = False  # ?create=1 on slug URLs
    jobs: tuple[str, ...] = ()
    timeout: float = DEFAULT_HTTP_TIMEOUT

    @property
    def target(self) -> str:
        return f"healthchecks:{self.name}"

    @property
    def key(self) -> str:
        return f"notify.healthchecks.{self.name}"

    def secret_files(self) -> list[tuple[str, Path | None]]:
        return [(f"{self.key}.url_file", self.url_file)]

    def destination(self) -> str:
        return _masked(self.url) if self.url else f"(from {self.url_file})"


class MailSettings(NamedTuple):
    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 0  # 0: 465 with tls, 587 with starttls, else 25
    starttls: bool = False
    tls: bool = False  # implicit TLS (SMTPS)
    username: str | None = None
    password_file: Path | None = None
    cafile: Path | None = None  # trust this CA instead of the system's
    filters: Filters = Filters()
    timeout: float = 30.0
    body_limit: int = 262144  # bytes of log in the body; the cut is said in the body

    @property
    def effective_port(self) -> int:
        return self.port or (465 if self.tls else 587 if self.starttls else 25)

    @property
    def target(self) -> str:
        return "mail"

    @property
    def key(self) -> str:
        return "notify.mail"

    def secret_files(self) -> list[tuple[str, Path | None]]:
        return [(f"{self.key}.password_file", self.password_file)]

    def destination(self) -> str:
        return f"smtp://{self.host}:{self.effective_port}"


TargetSettings = (PushgatewaySettings | TextfileSettings | WebhookSettings | HealthchecksSettings
                  | MailSettings)


class NotifySettings(NamedTuple):
    pushgateway: PushgatewaySettings | None = None
    webhooks: tuple[WebhookSettings, ...] = ()
    healthchecks: tuple[HealthchecksSettings, ...] = ()
    mail: MailSettings | None = None
    metrics_dir: Path | None = None  # node-exporter textfile collector directory
    retry: RetryPolicy = RetryPolicy()
    cli_wait: float = 15.0  # how long `run` waits for deliveries before it exits

    def targets(self) -> list[TargetSettings]:
        """The configured targets, in a stable order: pushgateway, textfile, webhooks,
        healthchecks, mail."""
        found: list[TargetSettings] = [self.pushgateway] if self.pushgateway else []
        if self.metrics_dir:
            found.append(TextfileSettings(self.metrics_dir))
        found += [*self.webhooks, *self.healthchecks]
        return [*found, self.mail] if self.mail else found

    @property
    def any_target(self) -> bool:
        return bool(self.targets())


class SigningSettings(NamedTuple):
    key_file: Path | None = None  # whsk_… Ed25519 key: a v1a signature on every webhook


def _http_url(value: object) -> str:
    text = as_string(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise expect("an http:// or https:// URL", "<url>")  # the URL may hold a credential
    return text


def _on(value: object) -> tuple[str, ...]:
    events = as_strings(value)
    for event in events:
        if event not in EVENT_CLASSES:
            raise expect(" | ".join(EVENT_CLASSES), event)
    return events


def _port(value: object) -> int:
    port = as_count(value)
    if port > 65535:
        raise expect("a TCP port (1-65535)", value)
    return port


def _jobs(t: Table, known: tuple[str, ...]) -> tuple[str, ...]:
    jobs = t.get("jobs", as_strings, ())
    for job in jobs:
        if job not in known:
            raise t.error("jobs", f"no job named {job!r} (configured: "
                                  f"{', '.join(known) or 'none'})")
    return jobs


def _filters(t: Table, known: tuple[str, ...]) -> Filters:
    return Filters(on=t.get("on", _on, END_EVENTS), jobs=_jobs(t, known))


def _url_or_file(t: Table) -> tuple[str | None, Path | None]:
    if t.has("url") and t.has("url_file"):
        raise t.error("url_file", "set url or url_file, not both")
    url = t.get("url", _http_url)
    url_file = t.secret_path("url_file")
    if not (url or url_file):
        raise t.error("url", "missing (set url, or url_file for a URL that is itself a secret)")
    return url, url_file


def _whsec_lines(text: str) -> None:
    from security.signing import check_whsec_lines

    check_whsec_lines(text)


def _header_value(text: str) -> None:
    from security.signing import check_header_value

    check_header_value(text)


def _whsk(text: str) -> None:
    from security.signing import check_whsk

    check_whsk(text)


def _read_pushgateway(t: Table, known: tuple[str, ...]) -> PushgatewaySettings:
    settings = PushgatewaySettings(
        url=t.get("url", _http_url) or "",
        username=t.get("username", as_string),
        password_file=t.secret_path("password_file"),
        timeout=t.get("timeout", as_duration, DEFAULT_HTTP_TIMEOUT),
        jobs=_jobs(t, known),
    )
    if not settings.url:
        raise t.error("url", 'missing (e.g. "http://127.0.0.1:9091")')
    if bool(settings.username) != bool(settings.password_file):
        raise t.error("password_file", "basic auth needs both username and password_file")
    t.finish()
    return settings


def _read_webhook(t: Table, name: str, known: tuple[str, ...]) -> WebhookSettings:
    url, url_file = _url_or_file(t)
    settings = WebhookSettings(
        name=name, url=url, url_file=url_file,
        secret_file=t.secret_path("secret_file", check=_whsec_lines),
        auth_header_file=t.secret_path("auth_header_file", check=_header_value),
        filters=_filters(t, known),
        timeout=t.get("timeout", as_duration, DEFAULT_HTTP_TIMEOUT),
    )
    t.finish()
    return settings


def _read_healthchecks(t: Table, name: str, known: tuple[str, ...]) -> HealthchecksSettings:
    url, url_file = _url_or_file(t)
    settings = HealthchecksSettings(
        name=name, url=url, url_file=url_file,
        create=t.get("create", as_bool, False),
        jobs=_jobs(t, known),
        timeout=t.get("timeout", as_duration, DEFAULT_HTTP_TIMEOUT),
    )
    t.finish()
    return settings


def _read_mail(t: Table, known: tuple[str, ...]) -> MailSettings:
    host, sender = t.get("host", as_string), t.get("from", as_string)
    to = t.get("to", as_strings, ())
    for key, value in (("host", host), ("from", sender)):
        if not value:
            raise t.error(key, "missing")
    if not to:
        raise t.error("to", 'missing (a list of addresses, e.g. ["ops@example.org"])')
    settings = MailSettings(
        host=host, sender=sender, to=to,
        port=t.get("port", _port, 0),
        starttls=t.get("starttls", as_bool, False),
        tls=t.get("tls", as_bool, False),
        username=t.get("username", as_string),
        password_file=t.secret_path("password_file"),
        cafile=t.path("cafile", must_exist=True),
        filters=_filters(t, known),
        timeout=t.get("timeout", as_duration, 30.0),
        body_limit=t.get("body_limit", as_count, 262144),
    )
    if settings.starttls and settings.tls:
        raise t.error("starttls", "set starttls (port 587) or tls (implicit TLS, port 465), "
                                  "not both")
    if bool(settings.username) != bool(settings.password_file):
        raise t.error("password_file", "SMTP login needs both username and password_file")
    t.finish()
    return settings


def _named_tables(t: Table, key: str) -> list[tuple[str, Table]]:
    raw = t.get(key, lambda v: v, {})
    if not isinstance(raw, dict):
        raise t.error(key, f"expected tables [notify.{key}.<name>]")
    return [(name, Table(t.file, f"{t.key(key)}.{name}", body, t.base))
            for name, body in raw.items()]


def read_notify(file: str, data: object, base: Path, job_names: tuple[str, ...]
                ) -> NotifySettings:
    t = Table(file, "notify", data, base)
    pushgateway = mail = None
    if t.has("pushgateway"):
        t.seen.add("pushgateway")
        pushgateway = _read_pushgateway(
            Table(file, "notify.pushgateway", t.data["pushgateway"], base), job_names)
    if t.has("mail"):
        t.seen.add("mail")
        mail = _read_mail(Table(file, "notify.mail", t.data["mail"], base), job_names)
    webhooks = tuple(_read_webhook(body, name, job_names)
                     for name, body in _named_tables(t, "webhooks"))
    healthchecks = tuple(_read_healthchecks(body, name, job_names)
                         for name, body in _named_tables(t, "healthchecks"))
    d = RetryPolicy()
    retry = RetryPolicy(
        initial=t.get("retry_initial", as_duration, d.initial),
        max_interval=t.get("retry_max_interval", as_duration, d.max_interval),
        give_up_after=t.get("retry_give_up_after", as_duration, d.give_up_after),
    )
    settings = NotifySettings(
        pushgateway=pushgateway, webhooks=webhooks, healthchecks=healthchecks, mail=mail,
        metrics_dir=t.path("metrics_dir"), retry=retry,
        cli_wait=t.get("cli_wait", _seconds, 15.0),
    )
    t.finish()
    return settings


def _seconds(value: object) -> float:
    if value == 0:
        return 0.0
    return as_duration(value)


def read_signing(file: str, data: object, base: Path) -> SigningSettings:
    t = Table(file, "signing", data, base)
    settings = SigningSettings(key_file=t.secret_path("key_file", check=_whsk))
    t.finish()
    return settings


def secret_files(notify: NotifySettings, signing: SigningSettings) -> list[tuple[str, Path]]:
    """Every secret file `[notify.*]` and `[signing]` name, with the key that names it."""
    named = [("signing.key_file", signing.key_file)]
    named += [pair for target in notify.targets() for pair in target.secret_files()]
    return [(key, path) for key, path in named if path is not None]


def read_notify_secrets(notify: NotifySettings, signing: SigningSettings) -> None:
    """Read every secret file of `[notify]` and `[signing]` now, so a missing or loose one stops
    a run before anything runs, and the redactor knows the values before any output flows (a
    hook that prints one is masked like restic's output)."""
    from security.masking import register_header_credential, register_secret
    from security.secretfiles import read_secret_file

    for key, path in secret_files(notify, signing):
        for line in read_secret_file(path, key).splitlines():  # several whsec_ lines
            if key.endswith("auth_header_file"):
                register_header_credential(line.strip())
            else:
                register_secret(line.strip())
