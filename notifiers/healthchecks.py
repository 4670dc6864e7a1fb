"""`[notify.healthchecks.<name>]`: healthchecks.io pings with run ids.

`<url>/start?rid=<run_id>` when a run starts; `<url>/<exit_code>?rid=<run_id>` when it ends,
with the masked log's tail as the body, within the server's `Ping-Body-Limit` (remembered from
its last answer to this configuration; until one is seen, 10,000 bytes: a self-hosted
healthchecks keeps only the first 10,000 bytes of a longer body, which would lose the log's end).
A log cut to fit keeps its end, under a first line saying how much of its start was left out.
A skipped run sends `<url>/log`, and so do both events of a dry run (never a success ping: a
dry run writes no snapshot). `url` is any check URL: `https://hc-ping.com/<uuid>`, a self-hosted
`https://hc.example/ping/<uuid>`, or a slug URL `.../<ping-key>/<slug>` (with `create = true`,
`?create=1` makes the check on first use). A 404 means the check is gone (or, with `create`, the
ping key is unknown): the target is stopped until its configuration changes, as on a 410.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

from notifiers import httpclient
from notifiers.base import STARTED, TEST, DeliveryContext, Event, Outcome, fingerprint_of
from notifiers.webhooks import read_url
from runner.checks import Check
from runner.configuration.notify import HealthchecksSettings
from runner.engine.record import RunRecord, Status
from security.masking import mask_webhook_url, redact

if TYPE_CHECKING:
    from runner.configuration.config import Config

MAX_BODY_LIMIT = 1_000_000  # a hostile or broken server's limit is capped: a body is read whole
DEFAULT_BODY_LIMIT = 10_000  # self-hosted healthchecks keeps this much by default (hosted: 100,000)
CUT_MARK = "[the first {left_out} bytes of the log are left out: only its end fits in a ping; " \
           "the whole log: GET /runs/{run_id}/log]\n"


def log_tail(ctx: DeliveryContext, record: RunRecord, limit: int) -> bytes:
    """The last `limit` bytes of the run's masked log (whole UTF-8 characters only)."""
    return _tail(ctx, record, limit)[0]


def _tail(ctx: DeliveryContext, record: RunRecord, limit: int) -> tuple[bytes, int]:
    """The masked log's last `limit` bytes (whole characters) and the log's whole size."""
    try:
        path = ctx.history.log_dir / record["job"] / f"{record['run_id']}.log"
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read(limit)
    except OSError:
        data = str(record.get("log_tail") or "").encode()
        size = len(data)
    return _from_a_character(redact(data)[-limit:] if limit > 0 else b""), size


def _from_a_character(data: bytes) -> bytes:
    start = 0
    while start < len(data) and start < 4 and (data[start] & 0xC0) == 0x80:
        start += 1  # never begin in the middle of a multi-byte character
    return data[start:]


def ping_body(ctx: DeliveryContext, record: RunRecord, limit: int) -> bytes:
    """The run's masked log within `limit` bytes. A longer log keeps its end (the summary and
    the error are there), from the start of a line where one is near, under a first line that
    says how many bytes of its start were left out."""
    data, size = _tail(ctx, record, limit)
    if size <= limit and len(data) <= limit:
        return data
    room = limit - len(CUT_MARK.format(left_out=size, run_id=record["run_id"]).encode())
    if room < limit // 2:  # a limit too small for the mark: the end alone
        return data
    kept = _from_a_character(data[-room:])
    line = kept.find(b"\n", 0, 512)
    if 0 <= line < len(kept) - 1:
        kept = kept[line + 1:]
    mark = CUT_MARK.format(left_out=max(0, size - len(kept)), run_id=record["run_id"])
    return mark.encode() + kept


def parse_body_limit(header: str) -> int | None:
    """A server's `Ping-Body-Limit`: ASCII digits only (`isdigit` takes "²"), 1 to
    MAX_BODY_LIMIT; anything else is ignored, never an error after the ping was accepted."""
    text = header.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        return None
    limit = int(text)
    return limit if 1 <= limit <= MAX_BODY_LIMIT else None


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

    def body_limit(self, memory: dict[str, Any]) -> int:
        """The server's Ping-Body-Limit, if it said one to this configuration of the target;
        else DEFAULT_BODY_LIMIT."""
        limit = memory.get("ping_body_limit")
        if isinstance(limit, int) and memory.get("ping_body_limit_of") == self.fingerprint():
            return max(1, min(limit, MAX_BODY_LIMIT))
        return DEFAULT_BODY_LIMIT

    def _body(self, event: Event, ctx: DeliveryContext) -> bytes:
        if event.type == STARTED:
            return b""
        return ping_body(ctx, event.record, self.body_limit(ctx.memory))

    def deliver(self, event: Event, ctx: DeliveryContext) -> Outcome:
        url = self.ping_url(event)
        try:
            answer = httpclient.request("POST", url, body=self._body(event, ctx),
                                  headers={"Content-Type": "text/plain; charset=utf-8"},
                                  timeout=self.settings.timeout)
        except httpclient.HttpError as exc:
            return Outcome.failed("no answer", str(exc))
        outcome = self._missing(answer, url) if answer.status == 404 else \
            httpclient.outcome_of(answer, url)
        limit = parse_body_limit(answer.headers.get("ping-body-limit", ""))
        if limit is not None:
            outcome.remember.update(ping_body_limit=limit, ping_body_limit_of=self.fingerprint())
        return outcome

    def _missing(self, answer: httpclient.Answer, url: str) -> Outcome:
        """A 404: healthchecks has no such check (deleted, or a wrong URL), or, with `create`,
        no project with this ping key (a slug URL with `create=1` makes missing checks, never
        projects; a UUID URL ignores `create`). Every later ping would be lost the same way:
        the target is stopped, as on a 410, until its configuration changes."""
        last = urlsplit(url).path.rstrip("/").split("/")
        by_uuid = len(last) >= 2 and _is_uuid(last[-2])
        if by_uuid:
            why = "the server has no check with this UUID (deleted, or a wrong URL)"
        elif self.settings.create:
            why = ("the server knows no project with this ping key (create = true makes "
                   "missing checks, not projects: a wrong or regenerated ping key)")
        else:
            why = ("the server has no check with this slug for this ping key (deleted or "
                   "renamed; create = true would make it)")
        outcome = Outcome.failed("HTTP 404", f"{httpclient.answer_error(answer, url)}: {why}; "
                                             "pings stopped", retry=False)
        outcome.gone = True
        httpclient.note_refusal(outcome, answer)
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


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return len(text) == 36
