"""The state directory and the tools failing: a full disk under `state_dir` (a 2 MB tmpfs,
before a run and in the middle of one), a read-only `state_dir` (a read-only bind mount: root
ignores file modes), the restic binary gone, and a damaged history database (with the recovery
docs/troubleshooting.md documents, followed step by step).

Mounting needs root and a kernel that allows it (this machine does); where it is not allowed the
test fails saying so, it is never skipped (tests/faults/conftest.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess

from tests.support.faults import (
    DUPLICATED,
    JOB_LOCK,
    LOST,
    MESSAGE,
    REPO_LOCK,
    FaultCheck,
    api,
    assert_clear_message,
    assert_equal,
    assert_job_lock_free,
    assert_job_lock_free_api,
    assert_no_repo_lock,
    assert_no_run_lost,
    assert_not_duplicated,
    assert_one_id_per_event,
    big_data,
    read_runs,
    serve_expecting_refusal,
    server_top,
    wait_uploading,
    waiting_spares,
    with_client,
)
from tests.support.filesystems import fill, read_only, small_filesystem
from tests.support.processes import free_port, kill, wait_until
from tests.support.receivers import Receiver
from tests.support.service import start_service
from tests.support.workspace import Workspace

NIGHTLY = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]
"""
SPACE = r"no space left|disk is full"
ENDS_WEBHOOK = """
[notify.webhooks.ops]
url = "{url}"
on = ["success", "warning", "failure"]
"""


def test_disk_full_before_a_run(ws18: Workspace) -> None:
    """The run cannot even be recorded: it must not start, and the command must say that the
    disk is full, not that the database is damaged (the advice to move it aside would throw the
    history away for nothing)."""
    ws18.write_config(NIGHTLY.format(data=ws18.data))
    with small_filesystem(ws18.state):
        code, first = ws18.run_json("nightly")
        assert code == 0
        filler = fill(ws18.state)
        refused = ws18.cli("run", "nightly")
        filler.unlink()  # the fault clears
        with FaultCheck("disk full under state_dir, before a run") as check:
            check(LOST, assert_no_run_lost, ws18, {first["run_id"]: "succeeded"})
            check(DUPLICATED, assert_not_duplicated, ws18, runs=1, snapshots=1)
            check(REPO_LOCK, assert_no_repo_lock, ws18)
            check(MESSAGE, assert_equal, refused.returncode, 2)
            check(MESSAGE, assert_clear_message, refused.stderr, SPACE, str(ws18.state),
                  where="the stderr of `run`", misleading=[r"move it aside"])
            check(JOB_LOCK, assert_job_lock_free, ws18, "nightly")


def test_disk_full_in_the_middle_of_a_run(ws18: Workspace, hook: Receiver) -> None:
    """The disk fills while restic uploads (restic's repository is elsewhere and has room).
    Expected: restic is not killed for it (no stale repository lock), the run is recorded with
    an end once space returns (its error, unless it succeeded, says the disk was full), its
    end event reaches the webhook once (sent by the next run, when its own process could not
    write it), and `run` says the disk is full instead of printing a traceback."""
    big = big_data(ws18)
    hook.start()
    ws18.write_config(NIGHTLY.format(data=big) + 'args = ["--limit-upload", "100"]\n'
                    + ENDS_WEBHOOK.format(url=hook.url))
    with small_filesystem(ws18.state):
        (big / "random.bin").rename(ws18.root / "random.bin")  # a quick first run: the store
        code, first = ws18.run_json("nightly")                 # exists before the disk fills
        assert code == 0
        (ws18.root / "random.bin").rename(big / "random.bin")
        run = ws18.popen("run", "nightly")
        try:
            wait_uploading(ws18)
            filler = fill(ws18.state)
            _, err = run.communicate(timeout=90)
        finally:
            kill(run)
        filler.unlink()  # the fault clears
        [faulted] = [r for r in read_runs(ws18) if r != first["run_id"]]
        log = (ws18.state / "logs" / "nightly" / f"{faulted}.log").read_text()
        completed = "backup exited 0" in log  # restic wrote its snapshot
        with FaultCheck("disk full under state_dir, mid-run") as check:
            runs = check(LOST, assert_no_run_lost, ws18,
                         {first["run_id"]: "succeeded",
                          faulted: ("succeeded", "failed", "interrupted")})
            check(DUPLICATED, assert_not_duplicated, ws18, runs=2, snapshots=1 + completed)
            check(REPO_LOCK, assert_no_repo_lock, ws18)
            check(MESSAGE, assert_equal, run.returncode != 0, True)
            check(MESSAGE, assert_clear_message, err, SPACE, where="the stderr of `run`")
            if runs and runs[faulted]["status"] != "succeeded":
                check(MESSAGE, assert_clear_message, runs[faulted]["error"], SPACE,
                      where="the run's error", misleading=[r"supervising process died"])
            (big / "random.bin").write_bytes(b"small now")
            after = check(JOB_LOCK, assert_job_lock_free, ws18, "nightly")
            if runs and after:
                ends = {(first["run_id"], "run.succeeded"),
                        (faulted, f"run.{runs[faulted]['status']}"),
                        (after["run_id"], "run.succeeded")}
                check(LOST, wait_until, lambda: len(hook.requests) >= len(ends), 30)
                check(DUPLICATED, assert_one_id_per_event, hook.requests, ends)


def test_state_dir_read_only(ws18: Workspace) -> None:
    """Twice: with nothing running (`run` then cannot open the database at all), and while
    `serve` runs (its open database lets `run` and a second `serve` get further). Expected each
    time: exit 2 and one line naming the state directory and saying it is not writable; the
    service's /readyz and triggers say so too; once the mount is writable again, the very next
    trigger starts a run."""
    port = free_port()
    ws18.write_config(NIGHTLY.format(data=ws18.data), top=server_top(port))
    with_client(ws18)
    code, first = ws18.run_json("nightly")
    assert code == 0
    with read_only(ws18.state):
        alone = ws18.cli("run", "nightly")
    service = start_service(ws18, port)
    try:
        with read_only(ws18.state):
            beside = ws18.cli("run", "nightly")
            second = serve_expecting_refusal(ws18, "--bind", f"127.0.0.1:{free_port()}")
            ready = api(service.url, "GET", "/readyz")
            spares = wait_until(lambda: waiting_spares(service))
            trigger = api(service.url, "POST", "/trigger/nightly")
            # the launcher forks the next spare supervisor at once: it starts (and opens the
            # history) while the mount is still read-only, as it would in production
            wait_until(lambda: waiting_spares(service) - spares)
        with FaultCheck("state_dir read-only") as check:
            check(LOST, assert_no_run_lost, ws18, {first["run_id"]: "succeeded"})
            check(DUPLICATED, assert_not_duplicated, ws18, runs=1, snapshots=1)
            check(REPO_LOCK, assert_no_repo_lock, ws18)
            commands = (("run, nothing else running", alone), ("run, beside serve", beside),
                        ("a second serve", second))
            check(MESSAGE, assert_equal, [done.returncode for _, done in commands], [2, 2, 2])
            for name, done in commands:
                check(MESSAGE, assert_clear_message, done.stderr, str(ws18.state),
                      r"read-only|not writable", where=f"the stderr of {name}",
                      misleading=[r"move it aside"])
            check(MESSAGE, assert_equal, (ready.status_code, trigger.status_code), (503, 503))
            check(MESSAGE, assert_clear_message, ready.text, r'"state_dir", "ok": false',
                  where="/readyz")
            check(MESSAGE, assert_clear_message, trigger.text, str(ws18.state),
                  r"read-only file system", where="the trigger's 503")
            check(MESSAGE, assert_clear_message, service.log.read_text(), r"POST /trigger",
                  where="the service log")
            check(JOB_LOCK, assert_job_lock_free_api, ws18, service.url, "nightly")
    finally:
        service.stop()


def test_restic_binary_missing(ws18: Workspace) -> None:
    """The configured binary disappears (a package upgrade, a broken image). Product's choice,
    asserted: /readyz says which binary; a run is started and recorded `failed` with exit 127
    and says it cannot start restic; once the binary is back the same job runs."""
    port = free_port()
    binary = ws18.root / "bin" / "restic"
    binary.parent.mkdir()
    binary.symlink_to(ws18.restic)
    ws18.write_config(NIGHTLY.format(data=ws18.data) + f'binary = "{binary}"\n',
                    top=server_top(port))
    with_client(ws18)
    binary.unlink()  # the fault
    code, by_cli = ws18.run_json("nightly")
    service = start_service(ws18, port)
    try:
        ready = api(service.url, "GET", "/readyz")
        response = api(service.url, "POST", "/trigger/nightly?wait=20")
        by_api = response.json()
        binary.symlink_to(ws18.restic)  # the fault clears
        with FaultCheck("restic binary missing") as check:
            codes = (code, by_cli["exit_code"], response.status_code, by_api.get("exit_code"))
            check(LOST, assert_equal, codes, (127, 127, 200, 127))
            check(LOST, assert_no_run_lost, ws18, {by_cli["run_id"]: "failed",
                                                 by_api["run_id"]: "failed"})
            check(DUPLICATED, assert_not_duplicated, ws18, runs=2, snapshots=0)
            check(REPO_LOCK, assert_no_repo_lock, ws18)
            for where, text in (("the CLI run's error", by_cli["error"]),
                                ("the API run's error", by_api.get("error"))):
                check(MESSAGE, assert_clear_message, text,
                      rf"cannot start {binary}: not found or not executable", where=where)
            check(MESSAGE, assert_equal, ready.status_code, 503)
            check(MESSAGE, assert_clear_message, ready.text, rf"binary:{binary}",
                  r"not found", where="/readyz")
            check(JOB_LOCK, assert_job_lock_free_api, ws18, service.url, "nightly")
            check(MESSAGE, assert_clear_message, service.log.read_text(), r"POST /trigger",
                  where="the service log")
    finally:
        service.stop()


def test_damaged_history_database_and_the_documented_recovery(ws18: Workspace) -> None:
    port = free_port()
    ws18.write_config(NIGHTLY.format(data=ws18.data), top=server_top(port))
    with_client(ws18)
    earlier = [ws18.run_json("nightly")[1]["run_id"] for _ in range(2)]
    db = ws18.state / "history.db"
    db.write_bytes(b"this is not a database, it is garbage " * 200)  # the fault
    refused = ws18.cli("run", "nightly")
    not_served = serve_expecting_refusal(ws18)
    message = "the history database .*history.db cannot be used .*move it aside"
    # docs/troubleshooting.md, "The history database": 1. stop serve, schedule and cron (none
    # runs here); 2. keep a copy of the three files
    kept = ws18.root / "history-damaged"
    kept.mkdir()
    files = [ws18.state / f"history.db{suffix}" for suffix in ("", "-wal", "-shm")]
    for path in files:
        if path.exists():
            shutil.copy2(path, kept / path.name)
    # 3. try to save the rows
    check_db = subprocess.run(["sqlite3", str(db), "PRAGMA integrity_check"],
                              capture_output=True, text=True)
    # 4. otherwise move the three files aside
    assert check_db.returncode != 0, check_db.stdout
    for path in files:
        if path.exists():
            path.rename(kept / (path.name + ".aside"))
    with FaultCheck("damaged history.db") as check:
        # documented: the history is lost with the file; the run logs and last-<job>.json stay
        check(LOST, assert_no_run_lost, ws18, {})
        logs = [(ws18.state / "logs" / "nightly" / f"{r}.log").exists() for r in earlier]
        check(LOST, assert_equal, logs, [True, True])
        last = json.loads((ws18.state / "last-nightly.json").read_text())
        check(LOST, assert_equal, last["run_id"], earlier[1])
        check(DUPLICATED, assert_not_duplicated, ws18, runs=0, snapshots=2)
        check(REPO_LOCK, assert_no_repo_lock, ws18)
        check(MESSAGE, assert_equal, (refused.returncode, not_served.returncode), (2, 2))
        for name, text in (("run", refused.stderr), ("serve", not_served.stderr)):
            check(MESSAGE, assert_clear_message, text, message, r"file is not a database",
                  where=f"the stderr of `{name}`")
        check(MESSAGE, assert_clear_message, check_db.stderr, r"not a database",
              where="sqlite3's integrity check")
        service = start_service(ws18, port)  # the service works again
        try:
            new = check(JOB_LOCK, assert_job_lock_free_api, ws18, service.url, "nightly")
            if new:
                check(DUPLICATED, assert_not_duplicated, ws18, runs=1, snapshots=3)
        finally:
            service.stop()
