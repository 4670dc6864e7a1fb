"""A delivery leased by a process that died is due again at once, not when its lease runs out;
one leased by a live process stays its own. Real processes (killed with SIGKILL) claim from a
real history database; liveness is each holder's flock under `state_dir/leases/`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from notifiers.leases import LeaseHolder
from notifiers.outbox import Outbox, new_event
from runner.engine.history import _SCHEMA, SCHEMA_VERSION, History
from runner.engine.record import new_record
from tests.support.paths import ROOT
from tests.support.processes import wait_until
from tests.support.runs import OneTarget

# A process that claims every due delivery, says how many, then lives on. With a child pid file,
# it first forks a child that lives on after it (the child must not keep its parent's leases
# alive) and writes its pid there: not on the shared stdout, where unbuffered writes of the
# two processes could interleave within a line.
CLAIMER = """
import os, sys, time
from pathlib import Path
from notifiers.leases import lease_holder
from notifiers.outbox import Outbox
from runner.engine.history import History
state = Path(sys.argv[1])
history = History(state)
claimed = Outbox(history.db, lease_holder(state / "leases")).claim()
if sys.argv[2] != "-" and os.fork() == 0:
    Path(sys.argv[2] + ".draft").write_text(str(os.getpid()))
    os.rename(sys.argv[2] + ".draft", sys.argv[2])
    time.sleep(120)
    os._exit(0)
print(len(claimed), flush=True)
time.sleep(120)
"""


class Claimer:
    """A claiming process that has claimed (`claimed` deliveries) and sleeps; with `fork`,
    `child` is the pid of the child it forked after claiming."""

    def __init__(self, state: Path, *, fork: bool = False) -> None:
        pid_file = state / "child.pid"
        self.process = subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(state), str(pid_file) if fork else "-"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.claimed = int(self.process.stdout.readline())
        self.child = 0
        if fork:
            self.child = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(),
                                        timeout=30))

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state directory whose outbox holds one due delivery."""
    history = History(tmp_path)
    record = new_record(job="nightly", kind="backup", hostname="h", repository=None,
                        trigger={"source": "cli"}, version="test")
    history.insert(record)
    Outbox(history.db).enqueue(new_event("run.started", record), [OneTarget()])
    history.close()
    return tmp_path


def _claim(state: Path) -> int:
    history = History(state)
    try:
        return len(Outbox(history.db, LeaseHolder(state / "leases")).claim())
    finally:
        history.close()


def test_a_live_claimers_lease_holds_and_a_dead_ones_is_due_at_once(state: Path) -> None:
    claimer = Claimer(state)
    try:
        assert claimer.claimed == 1
        assert _claim(state) == 0  # its process lives: the delivery is its own
    finally:
        claimer.kill()  # dies mid-attempt, its lease (120 s) still running
    assert _claim(state) == 1
    assert list((state / "leases").glob(f"{claimer.process.pid}-*")) == [], \
        "the dead holder's file is removed"


def test_a_forked_child_does_not_keep_its_parents_leases_alive(state: Path) -> None:
    claimer = Claimer(state, fork=True)
    child = claimer.child
    try:
        assert claimer.claimed == 1
        claimer.kill()
        os.kill(child, 0)  # the child lives on, holding a copy of its parent's descriptors
        assert _claim(state) == 1
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_claim_without_a_lease_file_only_waits_for_the_lease(state: Path) -> None:
    # a read-only or full state_dir: no holder file, leases run out as before
    (state / "leases").write_text("not a directory")
    history = History(state)
    try:
        assert len(Outbox(history.db, LeaseHolder(state / "leases")).claim()) == 1
        assert Outbox(history.db, LeaseHolder(state / "leases")).claim() == []
        holders = history.db.execute("SELECT lease_holder FROM deliveries").fetchall()
        assert holders == [(None,)]
    finally:
        history.close()


def test_the_files_of_gone_holders_are_swept_and_a_live_ones_kept(tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    live = LeaseHolder(leases)
    live_name = live.name
    for gone in ("123-00000000abcd.lock", ".124-00000000abcd.draft"):  # their processes died
        (leases / gone).write_text("")
    other = LeaseHolder(leases)  # making a holder sweeps what the gone ones left
    other_name = other.name
    assert sorted(p.name for p in leases.iterdir()) == sorted(
        [f"{live_name}.lock", f"{other_name}.lock"])
    assert live.dead([live_name, other_name, "123-00000000abcd", "not-a-holder"]) \
        == ["123-00000000abcd"]


def test_a_store_from_before_lease_holders_gains_the_column(tmp_path: Path) -> None:
    schema_3 = _SCHEMA.replace("    lease_holder TEXT,\n", "")
    assert schema_3 != _SCHEMA  # the column really is left out
    old = sqlite3.connect(tmp_path / "history.db")
    old.executescript(schema_3 + "PRAGMA user_version=3;")
    old.execute("INSERT INTO events VALUES ('msg_1', 'r1', 'nightly', 'run.started', '{}', 0)")
    old.execute("INSERT INTO deliveries (event_id, run_id, job, target, state, created, "
                "next_at) VALUES ('msg_1', 'r1', 'nightly', 'webhook:ops', 'pending', 0, 0)")
    old.commit()
    old.close()
    history = History(tmp_path)
    try:
        db = history.db
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        columns = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
        assert "lease_holder" in columns
        assert db.execute("SELECT run_id, state, lease_holder FROM deliveries").fetchall() \
            == [("r1", "pending", None)]
    finally:
        history.close()
