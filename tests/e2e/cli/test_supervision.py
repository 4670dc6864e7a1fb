"""Timeouts, cancellation and a dying supervisor, with the real CLI and real restic doing slow
backups.

A backup is made slow on purpose with restic's own `--limit-upload` (KiB/s) on a few MB of
random data. Only the "ignores SIGINT and SIGTERM" case needs a stub: no real restic does that.
(A job's lock held by a live process, and cancelling through the cancel flag, in-process:
tests/runner/engine/test_engine.py.)
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from tests.support.processes import pids_of_group_members, processes_with_cmdline
from tests.support.workspace import Workspace

SLOW = """
[jobs.slow]
kind = "backup"
paths = ["{data}"]
args = ["--limit-upload", "100"]
{extra}
"""


def _slow_config(ws: Workspace, extra: str = "", size_mb: int = 4) -> Path:
    big = ws.root / "big"
    big.mkdir(exist_ok=True)
    (big / "random.bin").write_bytes(os.urandom(size_mb * 1024 * 1024))
    ws.write_config(SLOW.format(data=big, extra=extra))
    return big


def _running_record(ws: Workspace, wait_for) -> dict:
    def running():
        out = json.loads(ws.cli("status", "--json").stdout)
        runs = out["jobs"][0]["running"]
        return runs[0] if runs else None
    return wait_for(running, timeout=30)


def _restic_locks(ws: Workspace) -> list[str]:
    return [p.name for p in (ws.repo / "locks").iterdir()]


def _wait_until_restic_is_uploading(ws: Workspace, wait_for) -> None:
    """Signal restic only once it is well into its work. restic 0.14 has a race of its own: a
    SIGINT in the instant after it writes its lock file, before it registers the lock for
    clean-up, leaves the lock behind (reproduced with bare restic; `auto_unlock` and `restic
    unlock` clear such stale locks)."""
    wait_for(lambda: processes_with_cmdline(str(ws.root / "big")))
    wait_for(lambda: _restic_locks(ws))
    wait_for(lambda: (_running_record(ws, wait_for).get("progress") or {}).get("bytes_done"))


def test_progress_is_live_while_running(ws: Workspace, wait_for) -> None:
    _slow_config(ws, size_mb=2)
    proc = ws.popen("run", "slow")
    try:
        def progress():
            record = _running_record(ws, wait_for)
            p = record.get("progress")
            return p if p and p.get("bytes_done") else None
        progress = wait_for(progress, timeout=30)
        assert 0 <= progress["percent_done"] <= 1
        assert progress["total_bytes"] == 2 * 1024 * 1024
        assert progress["step"] == "backup"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_sigkill_of_the_supervisor_marks_the_run_interrupted(ws: Workspace, wait_for) -> None:
    _slow_config(ws, size_mb=2)
    proc = ws.popen("run", "slow")
    running = _running_record(ws, wait_for)
    _wait_until_restic_is_uploading(ws, wait_for)
    proc.kill()
    proc.wait()
    # the kernel sends restic SIGINT when its supervisor dies: restic removes its lock and exits
    wait_for(lambda: not processes_with_cmdline(str(ws.root / "big")), timeout=30)
    status = json.loads(ws.cli("status", "--json", check=True).stdout)
    job = status["jobs"][0]
    assert job["running"] == []
    assert job["last"]["run_id"] == running["run_id"]
    assert job["last"]["status"] == "interrupted"
    last = json.loads((ws.state / "last-slow.json").read_text())
    assert last["status"] == "interrupted"
    assert _restic_locks(ws) == []
    # the job lock is free: a new run succeeds
    ws.write_config(SLOW.format(data=ws.root / "big", extra="").replace(
        '"--limit-upload", "100"', '"--limit-upload", "100000"'))
    code, record = ws.run_json("slow")
    assert code == 0 and record["status"] == "succeeded"


def test_timeout_stops_restic_gracefully(ws: Workspace) -> None:
    _slow_config(ws, 'timeout = "4s"\nstop_grace = "10s"', size_mb=2)
    started = time.monotonic()
    code, record = ws.run_json("slow")
    assert code == 124
    assert record["status"] == "timed_out" and record["exit_code"] == 124
    assert time.monotonic() - started < 30
    assert "timed out after 4s" in record["error"]
    assert not processes_with_cmdline(str(ws.root / "big"))
    assert _restic_locks(ws) == []  # SIGINT let restic remove its repository lock


def test_sigterm_to_run_cancels_and_restic_releases_its_lock(ws: Workspace, wait_for) -> None:
    _slow_config(ws, size_mb=2)
    proc = ws.popen("run", "slow", "--json")
    _running_record(ws, wait_for)
    _wait_until_restic_is_uploading(ws, wait_for)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    record = json.loads(out)
    assert proc.returncode == 130
    assert record["status"] == "cancelled" and record["exit_code"] == 130
    assert "SIGTERM" in record["error"]
    assert _restic_locks(ws) == []
    assert not processes_with_cmdline(str(ws.root / "big"))


def test_a_tool_that_ignores_signals_is_killed(ws: Workspace) -> None:
    """Stub binary: a real restic always honours SIGINT; this one ignores INT and TERM and
    starts a grandchild, to prove escalation to SIGKILL and that nothing is left behind."""
    stub = ws.root / "stubborn-restic"
    marker = ws.root / "stubborn-marker"
    stub.write_text(f"""#!/bin/sh
trap '' INT TERM
sleep 300 &
echo "$!" > {marker}
while :; do sleep 0.1; done
""")
    stub.chmod(0o755)
    ws.write_config(f"""
[jobs.stuck]
kind = "check"
binary = "{stub}"
timeout = "1s"
stop_grace = "0.5s"
""")
    code, record = ws.run_json("stuck")
    assert code == 124 and record["status"] == "timed_out"
    grandchild = int(marker.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{grandchild}").exists() or \
        Path(f"/proc/{grandchild}/stat").read_text().split()[2] == "Z"
    assert not processes_with_cmdline(str(stub))


def test_restic_runs_in_its_own_process_group_with_a_minimal_env(ws: Workspace, wait_for) -> None:
    _slow_config(ws, size_mb=2)
    ws.extra_env["RESTIC_PASSWORD"] = "runner-own-secret"
    ws.extra_env["SOME_RUNNER_TOKEN"] = "runner-own-token"
    proc = ws.popen("run", "slow")
    try:
        pid = wait_for(lambda: processes_with_cmdline(str(ws.root / "big")))[0]
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[2]) == pid  # process group leader
        assert pid in pids_of_group_members(pid)
        assert int(stat[2]) != os.getpgid(proc.pid)
        environ = dict(item.split("=", 1) for item in
                       Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
        assert "RESTIC_PASSWORD" not in environ and "SOME_RUNNER_TOKEN" not in environ
        assert environ["RESTIC_PASSWORD_FILE"] == str(ws.password_file)
        assert set(environ) <= {"PATH", "HOME", "TMPDIR", "TZ", "LANG", "LC_ALL", "USER",
                                "LOGNAME", "RESTIC_REPOSITORY", "RESTIC_PASSWORD_FILE",
                                "RESTIC_CACHE_DIR", "RESTIC_PROGRESS_FPS"}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


