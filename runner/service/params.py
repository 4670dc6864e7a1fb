"""Trigger request bodies: `{"params": {...}}`, validated against what the job allows. Nothing
from a request reaches argv without passing through here."""

from __future__ import annotations

import json
from typing import Any

from runner.configuration.config import JobConfig
from runner.service.problems import Problem

MAX_TAGS = 16


def _bad(detail: str) -> Problem:
    return Problem(400, "Bad request", detail)


def _tags(value: object, job: JobConfig) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > MAX_TAGS:
        raise _bad(f"params.tags: expected a list of 1 to {MAX_TAGS} tags")
    for tag in value:
        if not isinstance(tag, str) or tag not in job.allowed_tags:
            # never which one: the answer must not depend on the tag's text
            raise _bad("params.tags: every tag must be one of the job's allowed_tags "
                       f"({', '.join(job.allowed_tags)})")
    return list(dict.fromkeys(value))


def _dry_run(value: object, job: JobConfig) -> bool:
    if not isinstance(value, bool):
        raise _bad("params.dry_run: expected true or false")
    return value


VALIDATORS = {"tags": _tags, "dry_run": _dry_run}


def parse_trigger_body(body: bytes, job: JobConfig) -> dict[str, Any]:
    """The validated params of a trigger request (an empty body or `{}` means none)."""
    if not body.strip():
        return {}
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _bad("the body is not valid JSON (or nested too deep)") from None
    if not isinstance(doc, dict):
        raise _bad('expected a JSON object such as {"params": {"tags": ["weekly"]}}')
    unknown = set(doc) - {"params"}
    if unknown:
        raise _bad("the body has a member other than params")
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise _bad("params: expected a JSON object")
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name not in job.params:
            allowed = ", ".join(job.params) or "none"
            # named by its role, never by its name: an answer never quotes the request
            raise _bad(f"params has a member this job does not allow (allowed: {allowed})")
        out[name] = VALIDATORS[name](value, job)
    if job.dry_run and out.get("dry_run") is False:
        raise _bad("params.dry_run: this job always runs dry (dry_run = true in its "
                   "configuration); a trigger cannot turn that off")
    return out
