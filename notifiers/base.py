"""The small interface every notifier implements, and the events they deliver.

An event is `run.started` or `run.<status>` for one run. A target decides whether it wants an
event (`wants`), delivers it once (`deliver` -> `Outcome`), and can be checked without sending
anything (`check`, for `doctor`). Retrying, backoff and bookkeeping are the outbox's job, never a
target's: a target makes one attempt and says how it went.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from runner.checks import Check
from runner.engine.record import RunRecord, Status
from security.masking import redact_text

if TYPE_CHECKING:
    from runner.configuration.config import Config
    from runner.engine.history import History

STARTED = "run.started"
TEST = "run.test"  # `notify-test`: every target takes it, whatever its filters say
_CLASS_OF_STATUS = {
    Status.SUCCEEDED: "success",
    Status.WARNING: "warning",
    Status.SKIPPED: "skipped",
    Status.FAILED: "failure",
    Status.TIMED_OUT: "failure",
    Status.CANCELLED: "failure",
    Status.INTERRUPTED: "failure",
}


def event_type(record: RunRecord) -> str:
    return STARTED if record["status"] == Status.RUNNING else f"run.{record['status']}"


def event_class(event: str) -> str:
    """`start`, `success`, `warning`, `failure` or `skipped`: what `on` filters name."""
    if event == STARTED:
        return "start"
    if event == TEST:
        return "test"
    return _CLASS_OF_STATUS.get(event.removeprefix("run."), "failure")


@dataclass(frozen=True, slots=True)
class Event:
    """One event of one run, as kept in the outbox. `id` is the `webhook-id` of every attempt
    (receivers de-duplicate on it); `record` is the run record when the event happened."""

    id: str
    type: str
    timestamp: str
    record: RunRecord

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    @property
    def job(self) -> str:
        return str(self.record["job"])

    def payload(self) -> bytes:
        """The webhook body (docs/notifications.md), masked once more on the way out."""
        body = {"type": self.type, "timestamp": self.timestamp, "data": self.record}
        return redact_text(json.dumps(body, separators=(",", ":"))).encode()


class PermanentError(Exception):
    """A delivery that cannot work until the configuration changes (not worth a retry)."""


@dataclass(slots=True)
class Outcome:
    """One attempt: delivered, or failed (and then: retry later, or never again)."""

    delivered: bool
    detail: str = ""  # "HTTP 200", "SMTP 250", "written": what the other side said
    error: str | None = None  # masked
    retry: bool = True  # a failure worth retrying
    gone: bool = False  # 410 Gone: disable the target until its configuration changes
    retry_after: float | None = None  # seconds the server asked us to wait
    remember: dict[str, Any] = field(default_factory=dict)  # target state, e.g. body limits
    said: str = ""  # what a refusing server's body said: for the service log only, never stored

    @classmethod
    def ok(cls, detail: str, **remember: Any) -> Outcome:
        return cls(True, detail, remember=remember)

    @classmethod
    def failed(cls, detail: str, error: str, *, retry: bool = True,
               retry_after: float | None = None) -> Outcome:
        return cls(False, detail, redact_text(error), retry=retry, retry_after=retry_after)




@dataclass(slots=True)
class DeliveryContext:
    """What a delivery may read: the config, the history (current metrics, run logs) and what
    the outbox remembers about this target (e.g. a healthchecks server's Ping-Body-Limit)."""

    config: Config
    history: History
    memory: dict[str, Any] = field(default_factory=dict)


class Target(Protocol):
    name: str

    def fingerprint(self) -> str:
        """Changes when the target's configuration changes (a 410 disables it until then)."""
        ...

    def wants(self, event: str, job: str) -> bool: ...

    def deliver(self, event: Event, ctx: DeliveryContext) -> Outcome: ...

    def check(self, ctx: DeliveryContext) -> Check:
        """Reachable, credentials accepted, without sending an event."""
        ...

    def preview(self, event: Event, ctx: DeliveryContext) -> dict[str, Any]:
        """What `deliver` would send (masked), for `notify-test --dry-run`."""
        ...


def fingerprint_of(settings: tuple[Any, ...]) -> str:
    """A short digest of a target's settings: their repr (which names secret files but holds no
    secret) and the modification times of those files, so editing either counts as a change."""
    import hashlib

    digest = hashlib.sha256(repr(settings).encode())
    for value in settings:  # a NamedTuple of the configuration
        if isinstance(value, Path):
            try:
                digest.update(str(value.stat().st_mtime_ns).encode())
            except OSError:
                digest.update(b"missing")
    return digest.hexdigest()[:16]
