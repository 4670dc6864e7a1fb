"""`[notify.webhooks.<name>]`: the run record, POSTed as a Standard Webhooks message.

Body `{"type", "timestamp", "data": <run record>}` (a dry run's record says `"dry_run": true`:
its `run.succeeded` wrote nothing); headers `webhook-id` (the same on every
attempt, so receivers de-duplicate), `webhook-timestamp` (of this attempt), `webhook-signature`
(`v1,` HMAC with the target's `secret_file`; `v1a,` Ed25519 with `[signing] key_file`), and
`Authorization` from `auth_header_file`. 2xx delivers; 410 disables the target; anything else
is retried by the outbox.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from notifiers import httpclient
from notifiers.base import (
    Check,
    DeliveryContext,
    Event,
    Outcome,
    PermanentError,
    event_class,
    fingerprint_of,
)
from runner.configuration.notify import WebhookSettings
from security.auth import parse_whsec
from security.masking import (
    mask_webhook_url,
    register_header_credential,
    register_secret,
    url_secrets,
)
from security.secretfiles import read_secret_file
from security.signing import signature_header

if TYPE_CHECKING:
    from runner.configuration.config import Config


def read_url(url: str | None, url_file: Any, key: str) -> str:
    """The target's URL; one read from a file is a secret as a whole."""
    if url:
        for secret in url_secrets(url):
            register_secret(secret)
        return url
    value = read_secret_file(url_file, key)
    for secret in (*url_secrets(value), *_path_secrets(value)):
        register_secret(secret)
    return value


def _path_secrets(url: str) -> list[str]:
    """The parts of a URL-is-the-credential URL (a healthchecks.io ping URL, a Slack webhook)
    that a receiver may echo without the rest, e.g. a 404 page naming the request path: the
    path and query, and every path segment long enough to be a key (a UUID, a token)."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    found = [path, unquote(path), parts.query, unquote(parts.query)]
    found += [segment for segment in path.split("/") if len(segment) >= 16]
    return [f for f in found if f]


class WebhookTarget:
    def __init__(self, settings: WebhookSettings, config: Config) -> None:
        signing = config.signing
        self.settings, self.signing = settings, signing
        self.name = settings.target
        self._key = f"notify.webhooks.{settings.name}"

    def fingerprint(self) -> str:
        return fingerprint_of(self.settings)

    def wants(self, event: str, job: str) -> bool:
        return event_class(event) == "test" or self.settings.filters.wants(event_class(event), job)

    def url(self) -> str:
        return read_url(self.settings.url, self.settings.url_file, f"{self._key}.url_file")

    def _request(self, event: Event) -> tuple[bytes, dict[str, str]]:
        body = event.payload()
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", "webhook-id": event.id,
                   "webhook-timestamp": str(timestamp)}
        hmac_keys: tuple[bytes, ...] = ()
        if self.settings.secret_file:
            text = read_secret_file(self.settings.secret_file, f"{self._key}.secret_file")
            hmac_keys = tuple(parse_whsec(line) for line in text.splitlines() if line.strip())
        whsk = (read_secret_file(self.signing.key_file, "signing.key_file")
                if self.signing.key_file else None)
        signature = signature_header(event.id, timestamp, body, hmac_keys=hmac_keys, whsk=whsk)
        if signature:
            headers["webhook-signature"] = signature
        if self.settings.auth_header_file:
            value = read_secret_file(self.settings.auth_header_file,
                                     f"{self._key}.auth_header_file")
            if not (value.isascii() and value.isprintable()):
                raise PermanentError(f"{self._key}.auth_header_file: an HTTP header value must "
                                     "be printable ASCII (encode it, e.g. base64)")
            register_header_credential(value)
            headers["Authorization"] = value
        return body, headers

    def deliver(self, event: Event, ctx: DeliveryContext) -> Outcome:
        url = self.url()
        body, headers = self._request(event)
        try:
            answer = httpclient.request("POST", url, body=body, headers=headers,
                                  timeout=self.settings.timeout)
        except httpclient.HttpError as exc:
            return Outcome.failed("no answer", str(exc))
        return httpclient.outcome_of(answer, url)

    def check(self, ctx: DeliveryContext) -> Check:
        return httpclient.reachable_check(self.name, self.url(), self.settings.timeout,
                                    "credentials are checked only by sending: notify-test")

    def preview(self, event: Event, ctx: DeliveryContext) -> dict[str, Any]:
        body, headers = self._request(event)
        shown = {k: ("***" if k == "Authorization" else v) for k, v in headers.items()}
        return {"target": self.name, "method": "POST", "url": mask_webhook_url(self.url()),
                "headers": shown, "body_bytes": len(body)}
