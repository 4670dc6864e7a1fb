"""RFC 9457 problem details: every error the API answers is `application/problem+json`."""

from __future__ import annotations

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
        from security.masking import redact_text

        body: dict[str, Any] = {"type": "about:blank", "title": self.title,
                                "status": self.status}
        if self.detail:
            body["detail"] = redact_text(self.detail)
        body.update(self.members)
        return Response(json.dumps(body), status=self.status, mimetype=PROBLEM_TYPE,
                        headers=self.headers)
