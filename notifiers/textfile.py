"""`[notify] metrics_dir`: the job's metrics as a node-exporter textfile,
`<metrics_dir>/restic_<job>.prom` (restic-backup-helper's name), rewritten atomically when a run
starts and when it ends. Same families and labels as `/metrics` and the Pushgateway."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import generate_latest

from notifiers.base import TEST, DeliveryContext, Event, Outcome, event_class
from notifiers.metrics import registry_for
from runner.checks import Check
from runner.configuration.notify import TextfileSettings
from runner.fsutil import atomic_write

if TYPE_CHECKING:
    from runner.configuration.config import Config


class TextfileTarget:
    name = "textfile"

    def __init__(self, settings: TextfileSettings, config: Config | None = None) -> None:
        self.directory = settings.directory

    def fingerprint(self) -> str:
        return hashlib.sha256(str(self.directory).encode()).hexdigest()[:16]

    def path(self, job: str) -> Path:
        return self.directory / f"restic_{job.replace('-', '_').replace('.', '_')}.prom"

    def wants(self, event: str, job: str) -> bool:
        return event_class(event) in ("start", "success", "warning", "failure")

    def deliver(self, event: Event, ctx: DeliveryContext) -> Outcome:
        if event.type == TEST:
            return self._write_test_file()
        job = event.job
        if job not in ctx.config.jobs:
            return Outcome.failed("not written", f"job {job} is not configured", retry=False)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            data = generate_latest(registry_for(ctx.config, ctx.history, (job,)))
            atomic_write(self.path(job), data, mode=0o644)  # node-exporter reads it
        except OSError as exc:
            return Outcome.failed("not written", f"{self.path(job)}: {exc.strerror or exc}")
        return Outcome.ok("written")

    def _write_test_file(self) -> Outcome:
        """`notify-test`: prove the directory takes a file, without leaving one behind that
        node-exporter would export (the test job is not a configured job)."""
        probe = self.directory / ".restic_runner_notify_test.prom"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(probe, b"# restic-runner notify-test\n", mode=0o644)
            probe.unlink()
        except OSError as exc:
            return Outcome.failed("not written", f"{probe}: {exc.strerror or exc}", retry=False)
        return Outcome.ok("written and removed a test file")

    def check(self, ctx: DeliveryContext) -> Check:
        if self.directory.is_dir() and os.access(self.directory, os.W_OK | os.X_OK):
            return Check.of(self.name, True, f"{self.directory} writable")
        existing = next((p for p in self.directory.parents if p.exists()), None)
        if (not self.directory.exists() and existing is not None and existing.is_dir()
                and os.access(existing, os.W_OK | os.X_OK)):
            return Check.of(self.name, True, f"{self.directory} will be created (in {existing})")
        return Check.of(self.name, False, f"{self.directory} is not a writable directory")

    def preview(self, event: Event, ctx: DeliveryContext) -> dict[str, Any]:
        return {"target": self.name, "file": str(self.path(event.job))}
