"""`[notify.healthchecks.<name>]`: healthchecks.io pings with run ids.

`<url>/start?rid=<run_id>` when a run starts; `<url>/<exit_code>?rid=<run_id>` when it ends,
with the masked log's tail as the body, cut from the end to the server's `Ping-Body-Limit`
(remembered from its last answer; 100,000 bytes, hosted healthchecks.io's limit, until one is
seen); a skipped run sends `<url>/log`, and so do both events of a dry run (never a success
ping: a dry run writes no snapshot). `url` is any check URL: `https://hc-ping.com/<uuid>`, a
self-hosted `https://hc.example/ping/<uuid>`, or a slug URL `.../<ping-key>/<slug>` (with
`create = true`, `?create=1` makes the check on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from notifiers import httpclient
from notifiers.base import STARTED, TEST, DeliveryContext, Event, Outcome, fingerprint_of
from notifiers.webhooks import read_url
from runner.checks import Check
from runner.configuration.notify import HealthchecksSettings
from runner.engine.record import RunRecord, Status
from security.masking import mask_webhook_url, redact

if TYPE_CHECKING:
    from runner.configuration.config import Config

DEFAULT_BODY_LIMIT = 100_000


def log_tail(ctx: DeliveryContext, record: RunRecord, limit: int) -> bytes:
    """The last `limit` bytes of the run's masked log (whole UTF-8 characters only)."""
    try:
        path = ctx.history.log_dir / record["job"] / f"{record['run_id']}.log"
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read(limit)
    except OSError:
        data = str(record.get("log_tail") or "").encode()
    data = redact(data)[-limit:] if limit > 0 else b""
    start = 0
    while start < len(data) and start < 4 and (data[start] & 0xC0) == 0x80:
        start += 1  # never begin in the middle of a multi-byte character
    return data[start:]


class HealthchecksTarget:
    def __init__(self, settings: HealthchecksSettings, config: Config | None = None) -> None:
        self.settings = settings
        self.name = settings.target

    def fingerprint(self) -> str:
        return fingerprint_of(self.settings)

    def wants(self, event: str, job: str) -> bool:
        return not self.settings.jobs or job in self.settings.jobs or event == "run.test"

    def ping_url(self, event: Event) -> str:
        base = read_url(self.settings.url, self.settings.url_file,
                        f"notify.healthchecks.{self.settings.name}.url_file")
        record = event.record
        if event.type == TEST or record["status"] == Status.SKIPPED or record.get("dry_run"):
            suffix = "log"  # no state change: a dry run neither starts nor completes the check
        elif event.type == STARTED:
            suffix = "start"
        elif isinstance(record.get("exit_code"), int) and 0 <= record["exit_code"] <= 255:
            suffix = str(record["exit_code"])
        else:
            suffix = "fail"
        parts = urlsplit(base)
        query = [q for q in parts.query.split("&") if q] + [f"rid={event.run_id}"]
        if self.settings.create:
            query.append("create=1")
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + suffix,
                                         query="&".join(query)))

    def _body(self, event: Event, ctx: DeliveryContext) -> bytes:
        if event.type == STARTED:
            return b""
        limit = int(ctx.memory.get("ping_body_limit") or DEFAULT_BODY_LIMIT)
        return log_tail(ctx, event.record, limit)

    def deliver(self, event: Event, ctx: DeliveryContext) -> Outcome:
        url = self.ping_url(event)
        try:
            answer = httpclient.request("POST", url, body=self._body(event, ctx),
                                  headers={"Content-Type": "text/plain; charset=utf-8"},
                                  timeout=self.settings.timeout)
        except httpclient.HttpError as exc:
            return Outcome.failed("no answer", str(exc))
        outcome = httpclient.outcome_of(answer, url)
        limit = answer.headers.get("ping-body-limit", "").strip()
        if limit.isdigit():
            outcome.remember["ping_body_limit"] = int(limit)
        return outcome

    def check(self, ctx: DeliveryContext) -> Check:
        base = read_url(self.settings.url, self.settings.url_file,
                        f"notify.healthchecks.{self.settings.name}.url_file")
        return httpclient.reachable_check(self.name, base, self.settings.timeout,
                                    "a ping would count as a check-in, so none is sent")

    def preview(self, event: Event, ctx: DeliveryContext) -> dict[str, Any]:
        return {"target": self.name, "method": "POST",
                "url": mask_webhook_url(self.ping_url(event)),
                "body_bytes": len(self._body(event, ctx))}
