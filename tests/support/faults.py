"""The fault matrix's helpers: the five properties every fault test checks, reading the state
store directly, and making faults happen (slow backups to hit mid-upload, the service's pieces).
Small and read-only filesystems are in tests/support/filesystems.py; receivers that fail on cue
in tests/support/receivers.py, smtp.py and pushgateway.py.

The five properties (each test checks all five, through `FaultCheck`):

1. no run lost: every run started is in the history with a terminal status, and the events of
   configured notification targets are delivered once the fault clears;
2. none duplicated: exactly the expected runs, snapshots, events and deliveries (a receiver may
   see an event more than once, but always under one `webhook-id`);
3. no stale job lock: the job's lock can be taken, and a new run of the job starts;
4. no stale repository lock: `restic list locks` is empty;
5. a clear message: the run's error, the command's output or the service log says what happened
   in words, and never shows a Python traceback.

Everything is read straight from the SQLite file and from restic, not through the product's own
reading code, so a bug there cannot hide a bug elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

from tests.support.processes import children_of, processes_with_cmdline, wait_until
from tests.support.receivers import Received
from tests.support.service import TOKEN, Service, token_client
from tests.support.workspace import Workspace

T = TypeVar("T")
TERMINAL = frozenset({"succeeded", "warning", "failed", "skipped", "timed_out", "cancelled",
                      "interrupted"})

LOST, DUPLICATED, JOB_LOCK, REPO_LOCK, MESSAGE = (
    "1 no run lost", "2 none duplicated", "3 no stale job lock", "4 no stale repository lock",
    "5 a clear message")
PROPERTIES = (LOST, DUPLICATED, JOB_LOCK, REPO_LOCK, MESSAGE)


# --- reading the state store directly ------------------------------------------------------------

def _db(ws: Workspace) -> sqlite3.Connection:
    path = ws.state / "history.db"
    assert path.exists(), f"no history database at {path}"
    return sqlite3.connect(path, timeout=30)


def read_runs(ws: Workspace) -> dict[str, dict[str, Any]]:
    """Every run in the history, oldest first: run_id -> record (its row's status wins)."""
    db = _db(ws)
    try:
        rows = db.execute("SELECT run_id, status, record FROM runs ORDER BY started_at").fetchall()
    finally:
        db.close()
    return {run_id: {**json.loads(text), "status": status} for run_id, status, text in rows}


@dataclass(frozen=True)
class DeliveryRow:
    event_id: str
    run_id: str
    target: str
    event: str
    state: str
    attempts: int
    error: str | None


def read_deliveries(ws: Workspace, run_id: str | None = None) -> list[DeliveryRow]:
    db = _db(ws)
    try:
        sql = ("SELECT d.event_id, d.run_id, d.target, e.type, d.state, d.attempts, d.error "
               "FROM deliveries d JOIN events e USING (event_id)")
        args: tuple[str, ...] = ()
        if run_id is not None:
            sql, args = sql + " WHERE d.run_id = ?", (run_id,)
        return [DeliveryRow(*row) for row in db.execute(sql + " ORDER BY d.id", args)]
    finally:
        db.close()


def attempts_of(ws: Workspace, target: str, event: str | None = None) -> int:
    """Attempts made so far to `target` (of `event`, or of every event), all runs together;
    0 while the database does not exist yet."""
    if not (ws.state / "history.db").exists():
        return 0
    try:
        rows = read_deliveries(ws)
    except sqlite3.OperationalError:  # the file exists, its schema is being created
        return 0
    return sum(d.attempts for d in rows if d.target == target and event in (None, d.event))


# --- the five properties -------------------------------------------------------------------------

def assert_no_run_lost(ws: Workspace, expected: Mapping[str, str | Iterable[str]], *,
                       delivered: Mapping[str, Iterable[tuple[str, str]]] | None = None,
                       ) -> dict[str, dict[str, Any]]:
    """(1) Each run in `expected` (run_id -> status, or the statuses allowed) is in the history
    with a terminal status and an end time; `restic-runner status` (the next command, which also
    marks runs whose supervisor died) shows nothing still running; each (target, event) named in
    `delivered` for a run was delivered."""
    done = ws.cli("status", "--json")
    assert done.returncode == 0, f"status exited {done.returncode}: {done.stderr}"
    report = json.loads(done.stdout)
    still = [r["run_id"] for job in report["jobs"] for r in job["running"]]
    assert still == [], f"runs still `running` after the fault: {still}"
    runs = read_runs(ws)
    for run_id, want in expected.items():
        assert run_id in runs, f"run {run_id} is missing from the history"
        record = runs[run_id]
        allowed = {want} if isinstance(want, str) else set(want)
        assert record["status"] in TERMINAL and record["status"] in allowed, \
            f"run {run_id} is {record['status']}, expected {sorted(allowed)}"
        assert record["finished_at"], f"run {run_id} has no finished_at"
    for run_id, pairs in (delivered or {}).items():
        states = {(d.target, d.event): d for d in read_deliveries(ws, run_id)}
        for target, event in pairs:
            row = states.get((target, event))
            assert row is not None, f"no delivery of {event} of run {run_id} to {target}"
            assert row.state == "delivered", \
                f"{event} of run {run_id} to {target} is {row.state} ({row.error})"
    return runs


def assert_not_duplicated(ws: Workspace, *, runs: int, snapshots: int | None,
                          hooks: Iterable[Received] | None = None,
                          events: Iterable[tuple[str, str]] | None = None) -> None:
    """(2) Exactly `runs` runs in the history and `snapshots` snapshots in the repository; one
    event per run and type, one delivery per event and target; at a webhook receiver each event
    came under one `webhook-id` however often it was attempted (and, with `events`, exactly
    those (run_id, type) pairs arrived)."""
    found = read_runs(ws)
    assert len(found) == runs, \
        f"{len(found)} runs in the history, expected {runs}: " \
        f"{[(r['job'], r['status']) for r in found.values()]}"
    if snapshots is not None:
        have = ws.snapshots()
        assert len(have) == snapshots, f"{len(have)} snapshots, expected {snapshots}"
    db = _db(ws)
    try:
        twice = db.execute("SELECT run_id, type, COUNT(*) FROM events GROUP BY run_id, type "
                           "HAVING COUNT(*) > 1").fetchall()
        doubled = db.execute("SELECT event_id, target, COUNT(*) FROM deliveries "
                             "GROUP BY event_id, target HAVING COUNT(*) > 1").fetchall()
    finally:
        db.close()
    assert twice == [], f"events written twice: {twice}"
    assert doubled == [], f"deliveries made twice: {doubled}"
    if hooks is not None:
        assert_one_id_per_event(list(hooks), events)


def assert_one_id_per_event(hits: list[Received],
                            events: Iterable[tuple[str, str]] | None) -> None:
    by_id: dict[str, set[tuple[str, str]]] = {}
    for hit in hits:
        body = hit.json()
        by_id.setdefault(hit.headers["webhook-id"], set()).add(
            (body["data"]["run_id"], body["type"]))
    assert all(len(v) == 1 for v in by_id.values()), f"one webhook-id, several events: {by_id}"
    received = [next(iter(v)) for v in by_id.values()]
    assert len(received) == len(set(received)), f"an event under several webhook-ids: {by_id}"
    if events is not None:
        assert set(received) == set(events), \
            f"the receiver got {sorted(received)}, expected {sorted(events)}"


def job_lock_is_free(ws: Workspace, job: str) -> bool:
    path = ws.state / "locks" / f"{job}.lock"
    if not path.exists():
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def assert_job_lock_free(ws: Workspace, job: str, *, status: str = "succeeded"
                         ) -> dict[str, Any]:
    """(3) Nobody holds the job's lock, and `run JOB --fail-if-busy` starts a new run (neither
    `skipped` nor exit 75) that ends `status`. Returns its record."""
    path = ws.state / "locks" / f"{job}.lock"
    assert job_lock_is_free(ws, job), f"job lock {path} is held: {path.read_text()}"
    done = ws.cli("run", job, "--json", "--fail-if-busy")
    assert done.returncode != 75, f"the job is still busy: {done.stdout} {done.stderr}"
    assert done.stdout.strip(), f"run {job} printed no record (exit {done.returncode}): " \
                                f"{done.stderr}"
    record = json.loads(done.stdout)
    assert record["status"] == status, \
        f"a new run of {job} ended {record['status']} ({record['error']}), expected {status}"
    return record


def assert_job_lock_free_api(ws: Workspace, url: str, job: str, *, status: str = "succeeded"
                             ) -> dict[str, Any]:
    """(3) over the API: `POST /trigger/JOB` starts a run (not 409), which ends `status`."""
    assert job_lock_is_free(ws, job), f"job lock of {job} is held"
    response = api(url, "POST", f"/trigger/{job}?wait=20")
    assert response.status_code in (200, 202), (response.status_code, response.text)
    run_id = response.json()["run_id"]
    record = wait_until(lambda: _ended(url, run_id), timeout=60, interval=0.2)
    assert record["status"] == status, \
        f"a new run of {job} ended {record['status']} ({record['error']}), expected {status}"
    return record


def _ended(url: str, run_id: str) -> dict[str, Any] | None:
    response = api(url, "GET", f"/runs/{run_id}/result")
    return response.json() if response.status_code == 200 else None


def repo_locks(ws: Workspace) -> list[str]:
    """`restic list locks` (which takes no lock itself)."""
    done = subprocess.run([ws.restic, "list", "locks"], env=ws.restic_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"restic list locks exited {done.returncode}: {done.stderr}"
    return done.stdout.split()


def assert_no_repo_lock(ws: Workspace) -> None:
    """(4) No lock left in the repository."""
    locks = repo_locks(ws)
    assert locks == [], f"stale repository lock(s) left behind: {locks}"


def assert_clear_message(text: str | None, *patterns: str, where: str,
                         misleading: Iterable[str] = ()) -> None:
    """(5) `text` says each of `patterns` (regular expressions, case-insensitive), none of
    `misleading` (advice that is wrong for this fault), and holds no Python traceback."""
    assert text, f"{where}: no message at all"
    assert "Traceback (most recent call last)" not in text, \
        f"{where} shows a Python traceback:\n{text}"
    for pattern in patterns:
        assert re.search(pattern, text, re.IGNORECASE), \
            f"{where} does not say /{pattern}/:\n{text}"
    for pattern in misleading:
        assert not re.search(pattern, text, re.IGNORECASE), \
            f"{where} says /{pattern}/, which is wrong here:\n{text}"


def assert_equal(got: object, expected: object) -> None:
    """For one-off facts inside a `FaultCheck` (`check(PROP, assert_equal, got, expected)`)."""
    assert got == expected, f"got {got!r}, expected {expected!r}"


class FaultCheck:
    """Checks the five properties of one fault and reports every one that failed, not only the
    first; leaving the `with` block without having checked all five is itself a failure."""

    def __init__(self, fault: str) -> None:
        self.fault = fault
        self.failures: list[tuple[str, str]] = []
        self.checked: set[str] = set()

    def __call__(self, prop: str, check: Callable[..., T], *args: Any, **kwargs: Any
                 ) -> T | None:
        assert prop in PROPERTIES, prop
        self.checked.add(prop)
        try:
            return check(*args, **kwargs)
        except AssertionError as exc:
            self.failures.append((prop, str(exc)))
            return None

    def __enter__(self) -> FaultCheck:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            return
        missing = [p for p in PROPERTIES if p not in self.checked]
        assert not missing, f"{self.fault}: properties not checked: {missing}"
        if self.failures:
            failed = sorted({prop for prop, _ in self.failures})
            raise AssertionError(f"{self.fault}: {len(failed)} of 5 properties failed "
                                 f"({', '.join(failed)}):\n"
                                 + "\n".join(f"({prop}) {text}" for prop, text in self.failures))


# --- runs, restic and the service ----------------------------------------------------------------

# A backup slow enough (upload limited to 100 KiB/s) to be hit by a fault while restic uploads.
SLOW_JOB = """
[jobs.slow]
kind = "backup"
paths = ["{big}"]
args = ["--limit-upload", "100"]
"""


def big_data(ws: Workspace, megabytes: float = 0.6) -> Path:
    """Random (incompressible) data a backup with `--limit-upload` takes a while on."""
    big = ws.root / "big"
    big.mkdir(exist_ok=True)
    (big / "random.bin").write_bytes(os.urandom(int(megabytes * 1024 * 1024)))
    return big


def shrink(ws: Workspace) -> None:
    """Make the next backup of `big_data` quick without touching the config (same job, same
    lock, no restart): a few KB instead of megabytes at `--limit-upload`."""
    (ws.root / "big" / "random.bin").write_bytes(os.urandom(8192))


def restic_pids(ws: Workspace) -> list[int]:
    return processes_with_cmdline(str(ws.root / "big"))


def wait_uploading(ws: Workspace) -> dict[str, Any]:
    """Until restic holds its repository lock and has reported bytes done (restic 0.14 leaves
    its lock behind if signalled in the instant between writing it and registering its
    clean-up; see tests/e2e/cli/test_supervision.py). Returns the running record."""
    wait_until(lambda: list((ws.repo / "locks").iterdir()), timeout=30)

    def uploading() -> dict[str, Any] | None:
        if not (ws.state / "history.db").exists():
            return None
        for record in read_runs(ws).values():
            progress = record.get("progress") or {}
            if record["status"] == "running" and progress.get("bytes_done"):
                return record
        return None

    return wait_until(uploading, timeout=30, interval=0.1)


def waiting_spares(service: Service) -> set[int]:
    """The launcher's spare supervisors (runner/service/launcher.py): grandchildren of `serve`
    blocked reading their socket, their history already open, waiting for the next trigger."""
    spares = set()
    for child in children_of(service.process.pid):
        for grandchild in children_of(child):
            with contextlib.suppress(OSError):
                if "unix_stream_read" in Path(f"/proc/{grandchild}/wchan").read_text():
                    spares.add(grandchild)
    return spares


def api(url: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A request with the bearer token of `token_client(ws)` (see `with_client`)."""
    return requests.request(method, url + path, timeout=60,
                            headers={"Authorization": f"Bearer {TOKEN}"}, **kwargs)


def server_top(port: int) -> str:
    return f'[server]\nbind = "127.0.0.1:{port}"\nworkers = 1\ngraceful_timeout = "20s"\n'


def with_client(ws: Workspace) -> None:
    """Append a bearer-token client for every job to the workspace's config."""
    with open(ws.config_path, "a") as f:
        f.write("\n" + token_client(ws))


def serve_expecting_refusal(ws: Workspace, *args: str, wait: float = 30
                            ) -> subprocess.CompletedProcess[str]:
    """`restic-runner serve ARGS`, which should refuse to start. If it starts after all, it is
    stopped again after `wait` seconds (never left running) and its output says so."""
    process = ws.popen("serve", *args)
    try:
        out, err = process.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        process.terminate()
        out, err = process.communicate(timeout=60)
        err += f"\n[test: serve was still running after {wait:g} s and was stopped]"
        return subprocess.CompletedProcess(process.args, -1, out, err)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
