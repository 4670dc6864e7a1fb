"""A job's `schedule`: when it runs next.

Accepted forms:
- a 5-field cron expression, as restic-backup-helper's `*_CRON` variables: `0 3 * * *`
  (parsed by cronsim; `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly` as shorthands);
- `every <duration>`: `every 6h`, `every 90m` (from the scheduler's start, then from each tick);
- `daily at HH:MM`.

Times are in the zone of `$TZ` (as cron in the container we replace), else the system's.
"""

import os
import re
from datetime import datetime, timedelta, tzinfo
from typing import NamedTuple

from runner.configuration.units import parse_duration

SHORTHANDS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
              "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
              "@annually": "0 0 1 1 *"}
_EVERY = re.compile(r"every\s+(\S+)", re.IGNORECASE)
_DAILY_AT = re.compile(r"daily\s+at\s+([01]?\d|2[0-3]):([0-5]\d)", re.IGNORECASE)
EXPECTED = ('a 5-field cron expression ("0 3 * * *"), "@daily", "every 6h" or '
            '"daily at 03:00"')


class Schedule(NamedTuple):
    text: str
    cron: str | None = None  # a 5-field expression
    interval: float | None = None  # seconds

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment` (an aware datetime), in the schedule's zone."""
        moment = moment.astimezone(zone())
        if self.interval is not None:
            return moment + timedelta(seconds=self.interval)
        from cronsim import CronSim

        return next(CronSim(self.cron or "", moment.replace(microsecond=0)))


def parse_schedule(text: str) -> Schedule:
    """The schedule, or ValueError("expected …")."""
    value = " ".join(text.split())
    if value.lower() in SHORTHANDS:
        return Schedule(text, cron=SHORTHANDS[value.lower()])
    every = _EVERY.fullmatch(value)
    if every:
        try:
            seconds = parse_duration(every.group(1))
        except ValueError:
            raise ValueError(f"expected {EXPECTED}, got {text!r}") from None
        if seconds < 1:
            raise ValueError(f"expected an interval of at least 1s, got {text!r}")
        return Schedule(text, interval=seconds)
    daily = _DAILY_AT.fullmatch(value)
    if daily:
        return Schedule(text, cron=f"{int(daily.group(2))} {int(daily.group(1))} * * *")
    if len(value.split()) != 5:
        raise ValueError(f"expected {EXPECTED}, got {text!r}")
    from cronsim import CronSim, CronSimError

    try:  # validity does not depend on the zone: a naive moment keeps zoneinfo off `run`'s path
        CronSim(value, datetime.now())
    except CronSimError as exc:
        raise ValueError(f"not a valid cron expression ({exc}): {text!r}") from None
    return Schedule(text, cron=value)


def never_fires(text: str) -> bool:
    """A 5-field cron expression whose fields are each valid but whose date never comes, such as
    `0 0 31 2 *` (31 February): restic-backup-helper's "never from cron" idiom, which its cron
    accepts and never fires (cronsim refuses it)."""
    from cronsim import CronSim, CronSimError

    fields = text.split()
    if len(fields) != 5:
        return False
    try:
        CronSim(text, datetime.now())
        return False  # it fires
    except CronSimError:
        pass
    try:
        CronSim(" ".join([*fields[:2], "1", *fields[3:]]), datetime.now())
        CronSim(" ".join([*fields[:3], "*", fields[4]]), datetime.now())
    except CronSimError:
        return False  # another field is wrong
    return True


def zone() -> tzinfo:
    """`$TZ` as a zone (daylight saving time included), else the system's local zone."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local
