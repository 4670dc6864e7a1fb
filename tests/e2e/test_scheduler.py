"""The embedded scheduler: cron and interval schedules honouring TZ, one scheduler per state
directory (however many gunicorn workers), skipped ticks, graceful stop, next runs in status."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from runner.configuration.schedule import parse_schedule
from runner.errors import ConfigError
from tests.support.config import config_error
from tests.support.processes import free_port, wait_until
from tests.support.service import start_service
from tests.support.workspace import Workspace


@pytest.mark.parametrize(("text", "after", "expected"), [
    ("0 3 * * *", "2026-03-28T12:00:00", "2026-03-29T03:00:00+02:00"),  # DST starts that night
    # 02:30 does not exist that night: run once right after the gap, as cron does
    ("30 2 * * *", "2026-03-28T12:00:00", "2026-03-29T03:00:00+02:00"),
    ("@daily", "2026-10-24T23:30:00", "2026-10-25T00:00:00+02:00"),
    ("daily at 03:00", "2026-10-25T01:00:00", "2026-10-25T03:00:00+01:00"),  # DST ends
    ("*/15 * * * *", "2026-01-01T10:07:00", "2026-01-01T10:15:00+01:00"),
    ("0 4 * * 0", "2026-11-26T12:00:00", "2026-11-29T04:00:00+01:00"),  # Sunday
])
def test_cron_schedules_honour_tz(monkeypatch: pytest.MonkeyPatch, text: str, after: str,
                                  expected: str) -> None:
    from zoneinfo import ZoneInfo

    monkeypatch.setenv("TZ", "Europe/Berlin")
    moment = datetime.fromisoformat(after).replace(tzinfo=ZoneInfo("Europe/Berlin"))
    assert parse_schedule(text).next_after(moment).isoformat() == expected


def test_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    from zoneinfo import ZoneInfo

    monkeypatch.setenv("TZ", "UTC")
    moment = datetime(2026, 1, 1, 10, 0, tzinfo=ZoneInfo("UTC"))
    assert parse_schedule("every 6h").next_after(moment).hour == 16
    assert parse_schedule("every 90m").next_after(moment).strftime("%H:%M") == "11:30"


@pytest.mark.parametrize(("text", "expected"), [
    ("0 3 * *", "5-field cron expression"),
    ("61 * * * *", "not a valid cron expression"),
    ("every soon", "every 6h"),
    ("daily at 25:00", "5-field cron expression"),
    ("every 0.5s", "at least 1s"),
])
def test_bad_schedules_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    error = config_error(tmp_path, {"jobs": {"nightly": {"kind": "check", "schedule": text}}})
    assert isinstance(error, ConfigError)
    assert error.key == "jobs.nightly.schedule"
    assert expected in str(error)


def _runs(ws: Workspace, job: str) -> list[dict]:
    done = ws.cli("status", "--json")
    assert done.returncode == 0, done.stderr
    import sqlite3

    db = sqlite3.connect(ws.state / "history.db")
    rows = db.execute("SELECT record FROM runs WHERE job = ? ORDER BY started_at",
                      (job,)).fetchall()
    db.close()
    return [json.loads(r[0]) for r in rows]


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout)


def test_schedule_runs_jobs_through_the_engine(ws18: Workspace) -> None:
    ws18.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws18.data}"]
schedule = "every 2s"

[jobs.manual]
kind = "check"
""")
    proc = ws18.popen("schedule")
    try:
        wait_until(lambda: len([r for r in _runs(ws18, "nightly") if r["status"] != "running"])
                   >= 2, timeout=30)
        # exactly one scheduler per state directory
        second = ws18.cli("schedule", timeout=30)
        assert second.returncode == 2
        assert "another scheduler is running" in second.stderr
    finally:
        assert _stop(proc) == 0
    runs = _runs(ws18, "nightly")
    assert all(r["trigger"]["source"] == "schedule" for r in runs)
    # a tick that finds the last run still going (a loaded machine, a niced run) skips
    statuses = {r["status"] for r in runs}
    assert "succeeded" in statuses and statuses <= {"succeeded", "cancelled", "skipped"}
    assert _runs(ws18, "manual") == []
    status = json.loads(ws18.cli("status", "--json").stdout)
    by_job = {j["job"]: j for j in status["jobs"]}
    assert by_job["nightly"]["next_run"] is not None
    assert by_job["manual"]["next_run"] is None


def _verify_every_second_with_a_pre_hook_of(ws: Workspace, seconds: int) -> None:
    """A `check` job scheduled every second whose pre_hook sleeps `seconds`."""
    slow = ws.root / "slow.sh"
    slow.write_text(f"#!/bin/sh\nsleep {seconds}\n")
    slow.chmod(0o755)
    ws.write_config(f"""
[jobs.verify]
kind = "check"
schedule = "every 1s"
pre_hook = ["{slow}"]
""")


def test_a_tick_that_finds_its_job_running_records_skipped(ws18: Workspace) -> None:
    _verify_every_second_with_a_pre_hook_of(ws18, seconds=3)
    proc = ws18.popen("schedule")
    try:
        wait_until(lambda: any(r["status"] == "skipped" for r in _runs(ws18, "verify")),
                   timeout=30)
    finally:
        _stop(proc)
    skipped = [r for r in _runs(ws18, "verify") if r["status"] == "skipped"]
    assert skipped[0]["trigger"]["source"] == "schedule"
    assert "still active" in skipped[0]["error"]


def test_sigterm_cancels_a_running_scheduled_job_and_leaves_no_restic_lock(
        ws18: Workspace) -> None:
    big = ws18.root / "big"
    big.mkdir()
    (big / "random.bin").write_bytes(__import__("os").urandom(1 << 20))
    # restic finishes the pack it is uploading before it heeds SIGINT: at 100 KiB/s that is up
    # to ~10 s, so the scheduler is given time to wait for it (30 s by default is tight under
    # load, and the scheduler then exits with the run still ending)
    ws18.write_config(f"""
[jobs.slow]
kind = "backup"
paths = ["{big}"]
args = ["--limit-upload", "100"]
schedule = "every 1s"
""", top='[server]\ngraceful_timeout = "90s"\n')
    proc = ws18.popen("schedule")
    try:
        wait_until(lambda: any(r["status"] == "running" for r in _runs(ws18, "slow")),
                   timeout=30)
        time.sleep(1.5)  # restic is uploading, its lock in the repository
    finally:
        assert _stop(proc, timeout=120) == 0
    runs = _runs(ws18, "slow")
    assert runs[0]["status"] == "cancelled" and runs[0]["exit_code"] == 130
    assert not any(r["status"] == "running" for r in runs)
    locks = subprocess.run([ws18.restic, "list", "locks"], env=ws18.restic_env(),
                           capture_output=True, text=True, check=True)
    assert locks.stdout.strip() == ""


# `restic-runner schedule`, with the scheduler's SIGTERM forced into the moment between forking a
# run and that run's own signal handlers: the run, before it installs them, signals the scheduler
# and waits for the scheduler's stop to reach it (held pending, as it must be, or run by the
# scheduler's handler it inherited, which a plain fork leaves it). `{fork}` lets the test show
# that the signal mask across the fork is what makes the run see the stop.
FORK_WINDOW_DRIVER = """
import os, signal, sys, time
import runner.scheduling.scheduler

stopped_in = []
stop = runner.scheduling.scheduler.Scheduler._stop

def recording_stop(self, signum, frame):
    stopped_in.append(os.getpid())
    stop(self, signum, frame)

installs_handlers = runner.scheduling.scheduler.cancel_on_stop_signals

def signal_the_scheduler_first():
    os.kill(os.getppid(), signal.SIGTERM)
    deadline = time.monotonic() + 60
    while (signal.SIGTERM not in signal.sigpending() and os.getpid() not in stopped_in
           and time.monotonic() < deadline):
        time.sleep(0.01)
    return installs_handlers()

runner.scheduling.scheduler.Scheduler._stop = recording_stop
runner.scheduling.scheduler.cancel_on_stop_signals = signal_the_scheduler_first
runner.scheduling.scheduler.fork_run_process = {fork}
from runner.cli.main import main
sys.exit(main(["schedule"]))
"""


def test_a_stop_sent_while_a_run_is_being_forked_cancels_that_run(ws18: Workspace) -> None:
    _verify_every_second_with_a_pre_hook_of(ws18, seconds=2)

    def scheduled_run_with(fork: str) -> dict:
        done = subprocess.run([sys.executable, "-c", FORK_WINDOW_DRIVER.format(fork=fork)],
                              env=ws18.env(), cwd=ws18.root, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return _runs(ws18, "verify")[-1]

    run = scheduled_run_with("runner.scheduling.scheduler.fork_run_process")
    assert run["status"] == "cancelled" and run["error"] == "cancelled (SIGTERM)"
    assert [step["name"] for step in run["steps"]] == ["pre_hook"]
    # a plain fork: the stop reaches the scheduler's handler, inherited, and is lost
    assert scheduled_run_with("os.fork")["status"] == "succeeded"
    assert len(_runs(ws18, "verify")) == 2


def test_serve_runs_exactly_one_scheduler(ws18: Workspace) -> None:

    port = free_port()
    ws18.write_config("""
[jobs.verify]
kind = "check"
schedule = "every 2s"
""", top=f'[server]\nbind = "127.0.0.1:{port}"\nworkers = 3\n')
    service = start_service(ws18, port)
    try:
        wait_until(lambda: len(_runs(ws18, "verify")) >= 3, timeout=30)
        # `schedule` next to the service: refused, the service's scheduler holds the lock
        other = ws18.cli("schedule", timeout=30)
        assert other.returncode == 2 and "another scheduler" in other.stderr
    finally:
        service.stop()
    starts = [datetime.fromisoformat(r["started_at"].replace("Z", "+00:00"))
              for r in _runs(ws18, "verify")]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    # one tick every 2 s; two schedulers would make it one a second on average. The mean, not
    # each gap: under load a run that starts late (its record is written after the fork) makes
    # the next gap short, e.g. [2.0, 2.7, 1.25]
    assert sum(gaps) / len(gaps) > 1.5, gaps
