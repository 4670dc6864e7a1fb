"""The durable outbox: events and their deliveries in the state store (SQLite, beside the runs).

An event is written once; each target that wants it gets a delivery row, `pending` until it is
`delivered`, `failed` (given up: a permanent error or the retry budget spent), `disabled` (the
target answered 410 Gone, or a healthchecks target 404; it stays disabled until its
configuration changes: `stopped_targets`) or `superseded` (a start event not yet delivered when
the run's end event came for the same target: sent after the end, it would say "running" again,
and a healthchecks server would time the run from it). Several processes
may deliver from one outbox (the service's deliveries worker, a run's own supervisor, a CLI
`run`): a delivery is claimed with a lease in one write transaction, so it is attempted by one
of them at a time. Deliveries to one target for one run go in order (start before end).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from notifiers.base import STARTED, Event, Outcome, Target, event_type
from notifiers.leases import LeaseHolder
from runner.configuration.notify import RetryPolicy
from runner.engine.record import RunRecord, utc_now

LEASE_SECONDS = 120.0  # a claimed delivery is someone's for this long (longer than a timeout)
SUPERSEDED = "the run ended before it was delivered"


def new_event_id() -> str:
    """`msg_` + 32 hex digits: a Standard Webhooks message id (no "." in it)."""
    return "msg_" + os.urandom(16).hex()


def new_event(event_type: str, record: RunRecord) -> Event:
    return Event(new_event_id(), event_type, utc_now(), dict(record))


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    target: str
    attempts: int
    created: float
    event: Event


def next_delay(policy: RetryPolicy, attempts: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter (±20 %), never sooner than the server's Retry-After."""
    import random

    delay = min(policy.max_interval, policy.initial * 2 ** max(0, attempts - 1))
    delay *= random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


class Outbox:
    def __init__(self, db: sqlite3.Connection, holder: LeaseHolder | None = None) -> None:
        """`holder`: who this process is when it claims (leases.py); without one, a lease
        taken here is freed only when it runs out."""
        self.db = db
        self.holder = holder

    # --- writing events ------------------------------------------------------------------------

    def enqueue(self, event: Event, targets: list[Target]) -> int:
        """Store the event and a delivery for each target that wants it; returns how many."""
        with self._transaction():
            return self._insert_event(event, targets)

    def enqueue_replacing(self, event: Event, targets: list[Target]) -> int:
        """`enqueue` for an event that carries the whole state, so a newer one makes the older
        ones of its run id pointless (notifiers/announce.py's start-up announcements): their
        deliveries still waiting, and not in flight, are `superseded`, in the same transaction.
        """
        with self._transaction():
            self.db.execute(
                "UPDATE deliveries SET state = 'superseded', error = 'replaced by a newer "
                "event' WHERE run_id = ? AND state = 'pending' AND lease_until < ?",
                (event.run_id, time.time()))
            return self._insert_event(event, targets)

    def enqueue_unreported(self, targets: list[Target], since: float) -> int:
        """End events for runs that recovery ended, so their own process never wrote one: runs
        marked `interrupted`, and runs whose end was recorded late from their job lock (the
        disk was full when it came). Checked and written in one transaction, so two processes
        never both do it; only runs that ended after `since`."""
        from runner.engine.record import parse_rfc3339

        count = 0
        with self._transaction():
            rows = self.db.execute(
                "SELECT record FROM runs r WHERE (status = 'interrupted' OR (status != "
                "'running' AND json_extract(record, '$.end_recorded_late'))) AND NOT EXISTS "
                "(SELECT 1 FROM events e WHERE e.run_id = r.run_id AND e.type != ?)",
                (STARTED,)).fetchall()
            for (text,) in rows:
                record = json.loads(text)
                finished = record.get("finished_at")
                if finished and parse_rfc3339(finished).timestamp() >= since:
                    count += self._insert_event(new_event(event_type(record), record), targets,
                                                dead_run=True)
        return count

    def _insert_event(self, event: Event, targets: list[Target], *,
                      dead_run: bool = False) -> int:
        now = time.time()
        wanted = [t for t in targets if t.wants(event.type, event.job)]
        self.db.execute(
            "INSERT INTO events (event_id, run_id, job, type, event, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (event.id, event.run_id, event.job, event.type,
             json.dumps({"id": event.id, "type": event.type, "timestamp": event.timestamp,
                         "record": event.record}), now))
        for target in wanted:
            disabled = self._disabled(target)
            self.db.execute(
                "INSERT INTO deliveries (event_id, run_id, job, target, state, created, "
                "next_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (event.id, event.run_id, event.job, target.name,
                 "disabled" if disabled else "pending", now, now,
                 f"target disabled: {disabled}" if disabled else None))
        if event.type != STARTED:
            self._supersede_starts(now, run_id=event.run_id, dead_run=dead_run)
        return len(wanted)

    def _supersede_starts(self, now: float, *, run_id: str | None = None,
                          dead_run: bool = False) -> None:
        """The rule of order: a start delivery not yet delivered when the run's end is queued
        for the same target is dropped (`superseded`), so the end goes out at once, never behind
        the start's retries. Sent after the end, a start would say "running" again (and a
        healthchecks server would time the run from it). Applies to a start never tried, one
        waiting for a retry, and one whose lease ran out or whose holder died (`claim` frees
        those leases first). A start in flight in a live process cannot be called back: the end
        waits for that one attempt, and `settle` drops the start if it failed. `dead_run`: the
        run's own process died, and so did any lease no holder is named for (a process that
        could not make its lease file), so only a live named holder's attempt is waited for."""
        leased = "(lease_until < ? OR lease_holder IS NULL)" if dead_run else "lease_until < ?"
        sql = ("UPDATE deliveries SET state = 'superseded', lease_until = 0, error = ? "
               f"WHERE state = 'pending' AND {leased} AND EXISTS (SELECT 1 FROM events e "
               "WHERE e.event_id = deliveries.event_id AND e.type = ?) AND EXISTS (SELECT 1 "
               "FROM deliveries later WHERE later.run_id = deliveries.run_id AND "
               "later.target = deliveries.target AND later.id > deliveries.id)")
        args: list[Any] = [SUPERSEDED, now, STARTED]
        if run_id is not None:
            sql += " AND run_id = ?"
            args.append(run_id)
        self.db.execute(sql, args)

    def _ended_since(self, delivery: Delivery) -> bool:
        """Whether the run's end was queued for this delivery's target after it."""
        return self.db.execute(
            "SELECT 1 FROM deliveries WHERE run_id = ? AND target = ? AND id > ? LIMIT 1",
            (delivery.event.run_id, delivery.target, delivery.id)).fetchone() is not None

    # --- claiming and settling -----------------------------------------------------------------

    def claim(self, *, run_ids: tuple[str, ...] | None = None, limit: int = 16,
              now: float | None = None) -> list[Delivery]:
        """Due deliveries, leased to the caller. None for `run_ids` means any run's."""
        now = time.time() if now is None else now
        sql = ("SELECT d.id, d.target, d.attempts, d.created, e.event FROM deliveries d "
               "JOIN events e USING (event_id) WHERE d.state = 'pending' AND d.next_at <= ? "
               "AND d.lease_until < ? AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE "
               "p.run_id = d.run_id AND p.target = d.target AND p.id < d.id "
               "AND p.state = 'pending')")
        args: list[Any] = [now, now]
        if run_ids is not None:
            sql += f" AND d.run_id IN ({','.join('?' * len(run_ids))})"
            args.extend(run_ids)
        sql += " ORDER BY d.id LIMIT ?"
        args.append(limit)
        holder = self._holder_name()
        with self._transaction():
            self._free_leases_of_the_dead(now)
            self._supersede_starts(now)
            rows = self.db.execute(sql, args).fetchall()
            for row in rows:
                self.db.execute("UPDATE deliveries SET lease_until = ?, lease_holder = ? "
                                "WHERE id = ?", (now + LEASE_SECONDS, holder, row[0]))
        out = []
        for delivery_id, target, attempts, created, text in rows:
            e = json.loads(text)
            out.append(Delivery(delivery_id, target, attempts, created,
                                Event(e["id"], e["type"], e["timestamp"], e["record"])))
        return out

    def _holder_name(self) -> str | None:
        if self.holder is None:
            return None
        try:
            return self.holder.name
        except OSError:  # no lease file (a full or read-only state_dir): leases only run out
            return None

    def _free_leases_of_the_dead(self, now: float) -> None:
        """Leases whose holder died mid-attempt are due again now, not when they run out."""
        if self.holder is None:
            return
        names = [name for (name,) in self.db.execute(
            "SELECT DISTINCT lease_holder FROM deliveries WHERE state = 'pending' AND "
            "lease_until >= ? AND lease_holder IS NOT NULL", (now,))]
        for name in self.holder.dead(names):
            self.db.execute("UPDATE deliveries SET lease_until = 0 WHERE state = 'pending' "
                            "AND lease_holder = ?", (name,))

    def settle(self, delivery: Delivery, outcome: Outcome, seconds: float, *,
               policy: RetryPolicy, target: Target | None) -> str:
        """Record an attempt and decide what comes next; returns the delivery's new state."""
        now = time.time()
        attempts = delivery.attempts + 1
        if outcome.delivered:
            state, next_at = "delivered", now
        elif outcome.gone:
            state, next_at = "disabled", now
        else:
            next_at = now + next_delay(policy, attempts, outcome.retry_after)
            within_budget = next_at - delivery.created <= policy.give_up_after
            state = "pending" if outcome.retry and within_budget else "failed"
        stamp = utc_now()
        error = outcome.error
        with self._transaction():
            if state == "pending" and delivery.event.type == STARTED \
                    and self._ended_since(delivery):
                state, error = "superseded", SUPERSEDED  # the end waited for this attempt only
            self.db.execute(
                "INSERT INTO delivery_attempts (delivery_id, at, delivered, detail, error, "
                "seconds) VALUES (?, ?, ?, ?, ?, ?)",
                (delivery.id, stamp, int(outcome.delivered), outcome.detail, outcome.error,
                 round(seconds, 4)))
            self.db.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, next_at = ?, lease_until = 0, "
                "last_at = ?, detail = ?, error = ? WHERE id = ?",
                (state, attempts, next_at, stamp, outcome.detail, error, delivery.id))
            if not outcome.delivered:
                self._count(delivery.event.job, given_up=state in ("failed", "disabled"))
            if outcome.remember:
                self._remember(delivery.target, outcome.remember)
            if outcome.delivered:  # what it last said when refusing is no longer the news
                self.db.execute(
                    "UPDATE targets SET memory = json_remove(memory, '$.last_refusal') WHERE "
                    "target = ? AND json_extract(memory, '$.last_refusal') IS NOT NULL",
                    (delivery.target,))
            if outcome.gone and target is not None:
                self._disable(target, outcome.error or outcome.detail)
        return state

    def release(self, delivery: Delivery) -> None:
        """Give a claimed delivery back untried (the process is stopping)."""
        self.db.execute("UPDATE deliveries SET lease_until = 0 WHERE id = ?", (delivery.id,))

    # --- what the outbox knows -----------------------------------------------------------------

    def next_due(self, run_ids: tuple[str, ...] | None = None) -> float | None:
        """When the next pending delivery falls due (None: nothing pending). One in order behind
        another (an end behind its start's attempt in flight) is not due before that one: a
        courier waiting for it sleeps instead of asking again and again."""
        sql = ("SELECT MIN(MAX(d.next_at, d.lease_until)) FROM deliveries d WHERE d.state = "
               "'pending' AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.run_id = d.run_id "
               "AND p.target = d.target AND p.id < d.id AND p.state = 'pending')")
        args: tuple[str, ...] = ()
        if run_ids is not None:
            sql += f" AND d.run_id IN ({','.join('?' * len(run_ids))})"
            args = run_ids
        row = self.db.execute(sql, args).fetchone()
        return row[0] if row and row[0] is not None else None

    def job_counters(self) -> dict[str, tuple[int, int, int]]:
        """job -> (deliveries waiting for a retry, failed attempts ever, deliveries given up
        ever). A delivery not yet tried is not counted: a push would count itself."""
        out: dict[str, tuple[int, int, int]] = {}
        for job, failures, given_up in self.db.execute(
                "SELECT job, failures, given_up FROM delivery_counters"):
            out[job] = (0, failures, given_up)
        for job, pending in self.db.execute(
                "SELECT job, COUNT(*) FROM deliveries WHERE state = 'pending' AND attempts > 0 "
                "GROUP BY job"):
            _, failures, given_up = out.get(job, (0, 0, 0))
            out[job] = (pending, failures, given_up)
        return out

    def memory(self, target: str) -> dict[str, Any]:
        row = self.db.execute("SELECT memory FROM targets WHERE target = ?",
                              (target,)).fetchone()
        return json.loads(row[0]) if row else {}

    def stopped_targets(self, targets: Iterable[Target] | None = None) -> dict[str, str]:
        """Targets the outbox has stopped using for good (a 410 Gone, a healthchecks 404) ->
        why, on one masked line. Given the configured `targets`, only those still stopped: one
        whose configuration changed since is used again, one no longer configured is left out.
        Without them, every target ever stopped (its configuration may have changed since)."""
        from security.masking import redact_text

        rows = self.db.execute(
            "SELECT target, disabled_fingerprint, disabled_at, disabled_reason FROM targets "
            "WHERE disabled_fingerprint IS NOT NULL ORDER BY target").fetchall()
        current = None if targets is None else {t.name: t.fingerprint() for t in targets}
        stopped = {}
        for name, fingerprint, since, reason in rows:
            if current is not None and current.get(name) != fingerprint:
                continue
            stopped[name] = redact_text(" ".join(_stopped(reason, since).split()))
        return stopped

    def pending_retries(self) -> int:
        """Deliveries waiting for a retry (tried at least once), of every job."""
        return sum(pending for pending, _, _ in self.job_counters().values())

    # --- internals -----------------------------------------------------------------------------

    def _disabled(self, target: Target) -> str | None:
        row = self.db.execute(
            "SELECT disabled_fingerprint, disabled_at, disabled_reason FROM targets "
            "WHERE target = ?", (target.name,)).fetchone()
        if not row or not row[0] or row[0] != target.fingerprint():
            return None
        return _stopped(row[2], row[1])

    def _disable(self, target: Target, reason: str) -> None:
        self._ensure_target(target.name)
        self.db.execute(
            "UPDATE targets SET disabled_fingerprint = ?, disabled_at = ?, disabled_reason = ? "
            "WHERE target = ?", (target.fingerprint(), utc_now(), reason, target.name))
        self.db.execute(
            "UPDATE deliveries SET state = 'disabled', error = ? WHERE target = ? "
            "AND state = 'pending'", (f"target disabled: {reason}", target.name))

    def _remember(self, target: str, values: dict[str, Any]) -> None:
        self._ensure_target(target)
        memory = self.memory(target)
        memory.update(values)
        self.db.execute("UPDATE targets SET memory = ? WHERE target = ?",
                        (json.dumps(memory), target))

    def _ensure_target(self, target: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO targets (target) VALUES (?)", (target,))

    def _count(self, job: str, *, given_up: bool) -> None:
        self.db.execute("INSERT OR IGNORE INTO delivery_counters (job) VALUES (?)", (job,))
        self.db.execute("UPDATE delivery_counters SET failures = failures + 1, "
                        "given_up = given_up + ? WHERE job = ?", (int(given_up), job))

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)


def _stopped(reason: str | None, since: str) -> str:
    return f"{reason or 'stopped'} (since {since}; change its configuration to enable it again)"


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error): a claim is atomic across processes."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
