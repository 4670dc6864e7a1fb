"""`[notify.pushgateway]`: a run's metrics, pushed to a Prometheus Pushgateway.

Grouping key `job="restic_runner"`, `hostname`, `job_name`, so two jobs or two hosts never
overwrite each other (resticprofile #193). When a run starts: a POST that sets only
`restic_<kind>_running` (and `_running_since_timestamp`), leaving the last run's values in
place; when it ends: a PUT of the whole group, built from the history at delivery time (so a
retried push never brings back older values, and `_last_success_timestamp` survives failures).
When `serve` or `schedule` starts, the same PUT for every job it selects (`notifiers.announce`),
so a job that never ran has its group too. The families are those of the service's `/metrics`
(`notifiers.metrics`).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, delete_from_gateway, push_to_gateway
from prometheus_client import pushadd_to_gateway as post_to_gateway
from prometheus_client.core import GaugeMetricFamily

from notifiers import httpclient
from notifiers.base import (
    STARTED,
    DeliveryContext,
    Event,
    Outcome,
    event_class,
    fingerprint_of,
)
from notifiers.metrics import LABELS, kind_gauge, registry_for
from runner.checks import Check
from runner.configuration.notify import PushgatewaySettings
from runner.engine.record import Status
from security.masking import mask_webhook_url
from security.secretfiles import read_secret_file

if TYPE_CHECKING:
    from runner.configuration.config import Config

GROUP_JOB = "restic_runner"
ANNOUNCE = "job.announce"  # the event of notifiers.announce: a job's group, at start-up


class _Handler:
    """prometheus_client's push `handler`, over our HTTP client: no redirects, masked errors;
    the answer is kept for the outcome."""

    def __init__(self, settings: PushgatewaySettings) -> None:
        self.settings = settings
        self.answer: httpclient.Answer | None = None

    def __call__(self, url: str, method: str, timeout: float | None,
                 headers: list[tuple[str, str]], data: bytes) -> Any:
        def send() -> None:
            all_headers = {**dict(headers), **_auth_headers(self.settings)}
            self.answer = httpclient.request(method, url, body=data, headers=all_headers,
                                       timeout=timeout or self.settings.timeout)
        return send


class PushgatewayTarget:
    name = "pushgateway"

    def __init__(self, settings: PushgatewaySettings, config: Config | None = None) -> None:
        self.settings = settings

    def fingerprint(self) -> str:
        return fingerprint_of(self.settings)

    def wants(self, event: str, job: str) -> bool:
        if self.settings.jobs and job not in self.settings.jobs:
            return False
        if event == ANNOUNCE:
            return True
        return event_class(event) in ("start", "success", "warning", "failure", "test")

    def grouping_key(self, hostname: str, job: str) -> dict[str, str]:
        return {"hostname": hostname, "job_name": job}

    def _start_registry(self, event: Event, ctx: DeliveryContext) -> CollectorRegistry:
        """`_running` only (a late retry of a start push says 0 if the run has ended)."""
        record = event.record
        running = ctx.history.get(event.run_id)
        still = running is not None and running["status"] == Status.RUNNING
        registry = CollectorRegistry(auto_describe=False)
        labels = [record["hostname"], record["job"]]
        gauge = kind_gauge(record["kind"], "running")
        gauge.add_metric(labels, 1.0 if still else 0.0)
        families = [gauge]
        if still:
            from runner.engine.record import parse_rfc3339

            since = kind_gauge(record["kind"], "running_since_timestamp")
            since.add_metric(labels, parse_rfc3339(record["started_at"]).timestamp())
            families.append(since)
        registry.register(_Fixed(families))
        return registry

    def deliver(self, event: Event, ctx: DeliveryContext) -> Outcome:
        record = event.record
        handler = _Handler(self.settings)
        key = self.grouping_key(record["hostname"], record["job"])
        try:
            if event.type == STARTED:
                post_to_gateway(self.settings.url, job=GROUP_JOB, grouping_key=key,
                                registry=self._start_registry(event, ctx), handler=handler,
                                timeout=self.settings.timeout)
            elif event.type == ANNOUNCE and not (record["job"] in ctx.config.jobs
                                                 and self.wants(ANNOUNCE, record["job"])):
                return Outcome.failed("not sent", f"job {record['job']} is no longer pushed "
                                      "(removed from the config or from `jobs`)", retry=False)
            else:
                job = record["job"] if record["job"] in ctx.config.jobs else None
                if job is None:  # notify-test, or a job no longer configured
                    return self._test_push(handler, record["hostname"], record["job"])
                push_to_gateway(self.settings.url, job=GROUP_JOB, grouping_key=key,
                                registry=registry_for(ctx.config, ctx.history, (job,)),
                                handler=handler, timeout=self.settings.timeout)
        except httpclient.HttpError as exc:
            return Outcome.failed("no answer", str(exc))
        return _outcome(handler.answer, self.settings.url)

    def _test_push(self, handler: _Handler, hostname: str, job: str) -> Outcome:
        """A test group, pushed and deleted again: proves reachability and credentials."""
        registry = CollectorRegistry(auto_describe=False)
        gauge = GaugeMetricFamily("restic_runner_notify_test", "restic-runner notify-test",
                                  labels=LABELS)
        gauge.add_metric([hostname, job], 1.0)
        registry.register(_Fixed([gauge]))
        key = self.grouping_key(hostname, job)
        push_to_gateway(self.settings.url, job=GROUP_JOB, grouping_key=key, registry=registry,
                        handler=handler, timeout=self.settings.timeout)
        outcome = _outcome(handler.answer, self.settings.url)
        if outcome.delivered:
            delete_from_gateway(self.settings.url, job=GROUP_JOB, grouping_key=key,
                                handler=handler, timeout=self.settings.timeout)
        return outcome

    def delete_group(self, hostname: str, job: str) -> Outcome:
        handler = _Handler(self.settings)
        try:
            delete_from_gateway(self.settings.url, job=GROUP_JOB,
                                grouping_key=self.grouping_key(hostname, job), handler=handler,
                                timeout=self.settings.timeout)
        except httpclient.HttpError as exc:
            return Outcome.failed("no answer", str(exc))
        return _outcome(handler.answer, self.settings.url)

    def groups(self) -> list[dict[str, str]]:
        """The grouping labels of every `restic_runner` group on the gateway."""
        import json

        url = self.settings.url.rstrip("/") + "/api/v1/metrics"
        answer = httpclient.request("GET", url, headers=_auth_headers(self.settings),
                              timeout=self.settings.timeout, max_body=64 << 20)
        if not answer.ok:
            raise httpclient.HttpError(httpclient.answer_error(answer, self.settings.url,
                                                                quote=True))
        try:
            data = json.loads(answer.body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("data", []), list):
            raise httpclient.HttpError(f"{mask_webhook_url(self.settings.url)}: /api/v1/metrics "
                                       "answered something that is not a Pushgateway's list")
        return [labels for g in data.get("data", []) if isinstance(g, dict)
                and isinstance(labels := g.get("labels"), dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
                and labels.get("job") == GROUP_JOB]

    def stale_groups(self, config: Config) -> list[dict[str, str]]:
        """This host's groups of jobs that are not pushed from here any more: removed from the
        config, or no longer selected by `jobs` (`notify-test`'s, if its delete was lost)."""
        return [{"hostname": g["hostname"], "job_name": g["job_name"]} for g in self.groups()
                if g.get("hostname") == config.hostname and g.get("job_name")
                and not (g["job_name"] in config.jobs and self.wants(ANNOUNCE, g["job_name"]))]

    def check(self, ctx: DeliveryContext) -> Check:
        try:
            answer = httpclient.request("GET", self.settings.url.rstrip("/") + "/api/v1/status",
                                  headers=_auth_headers(self.settings),
                                  timeout=self.settings.timeout)
        except httpclient.HttpError as exc:
            return Check.of(self.name, False, str(exc))
        if not answer.ok:
            return Check.of(self.name, False,
                            httpclient.answer_error(answer, self.settings.url, quote=True))
        auth = "credentials accepted" if self.settings.username else "no credentials configured"
        return Check.of(self.name, True, f"{mask_webhook_url(self.settings.url)} answers, {auth}")

    def preview(self, event: Event, ctx: DeliveryContext) -> dict[str, Any]:
        record = event.record
        method = "POST" if event.type == STARTED else "PUT"
        return {"target": self.name, "method": method,
                "url": mask_webhook_url(self.settings.url),
                "grouping_key": {"job": GROUP_JOB,
                                 **self.grouping_key(record["hostname"], record["job"])}}


class _Fixed:
    """A collector of ready-made families."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self.families


def _outcome(answer: httpclient.Answer | None, url: str) -> Outcome:
    if answer is None:
        return Outcome.failed("no answer", f"{mask_webhook_url(url)}: no request was sent")
    # 400: the gateway refused the push as inconsistent; sending it again will not help
    return httpclient.outcome_of(answer, url, permanent=frozenset({400}))


def _auth_headers(settings: PushgatewaySettings) -> dict[str, str]:
    if not (settings.username and settings.password_file):
        return {}
    password = read_secret_file(settings.password_file, "notify.pushgateway.password_file")
    token = base64.b64encode(f"{settings.username}:{password}".encode()).decode()
    return {"Authorization": "Basic " + token}


def stale_groups(config: Config) -> list[dict[str, str]]:
    """`PushgatewayTarget.stale_groups` of the configured gateway (none configured: none)."""
    if config.notify.pushgateway is None:
        return []
    return PushgatewayTarget(config.notify.pushgateway, config).stale_groups(config)


def prune_groups(config: Config, *, dry_run: bool = False) -> list[dict[str, str]]:
    """`restic-runner metrics prune`: delete this host's stale groups (those the start-up
    announcement names); returns them."""
    from runner.errors import UserError

    if config.notify.pushgateway is None:
        return []
    target = PushgatewayTarget(config.notify.pushgateway, config)
    stale = target.stale_groups(config)
    if not dry_run:
        for group in stale:
            outcome = target.delete_group(group["hostname"], group["job_name"])
            if not outcome.delivered:
                raise UserError(f"notify.pushgateway: deleting {group}: {outcome.error}")
    return stale
