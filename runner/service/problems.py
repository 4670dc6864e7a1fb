"""RFC 9457 problem details: every error the API answers is `application/problem+json`."""

from __future__ import annotations

import functools
import json
from typing import Any

from flask import Response

PROBLEM_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise anywhere in a request; the app turns it into a problem+json answer."""

    def __init__(self, status: int, title: str, detail: str | None = None, *,
                 headers: dict[str, str] | None = None, **members: Any) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.headers = headers or {}
        self.members = members

    def response(self) -> Response:
        if self.members:
            body = _render(self.status, self.title, self.detail, self.members)
        else:  # the common refusals (401, 429, ...) are rendered once, not per request
            body = _render_plain(self.status, self.title, self.detail, _secrets_epoch())
        return Response(body, status=self.status, mimetype=PROBLEM_TYPE, headers=self.headers)


def _secrets_epoch() -> int:
    """Changes whenever a secret is registered, so a cached body is masked anew."""
    from security.masking import REGISTRY

    return REGISTRY.secrets_count


def _render(status: int, title: str, detail: str | None, members: dict[str, Any]) -> str:
    from security.masking import redact_text

    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = redact_text(detail)
    body.update(members)
    return json.dumps(body)


def problem_body(status: int, title: str, detail: str | None) -> str:
    """The problem+json body, masked: also for answers written outside Flask
    (runner.service.server)."""
    return _render(status, title, detail, {})


@functools.lru_cache(maxsize=256)
def _render_plain(status: int, title: str, detail: str | None, epoch: int) -> str:
    return _render(status, title, detail, {})
