"""A run whose main step did not run to its end is never a success (issue 13, item 10).

A pre_hook that ignores SIGINT and SIGTERM (and whose children inherit that) runs to its end
with exit 0 although the run was stopped while it ran: restic never starts, so the run is
`cancelled` (or `timed_out`), never `succeeded`, and the job's last success does not move.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.support.workspace import Workspace, job_metrics

STUBBORN_HOOK = """#!/bin/sh
trap '' INT TERM
echo started > {marker}
sleep 3
"""


def _stubborn_hook(ws: Workspace) -> tuple[Path, Path]:
    marker = ws.root / "hook-started"
    hook = ws.root / "pre.sh"
    hook.write_text(STUBBORN_HOOK.format(marker=marker))
    hook.chmod(0o755)
    return hook, marker


def _config(ws: Workspace, hook: Path, extra: str = "") -> None:
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
pre_hook = ["{hook}"]
stop_grace = "10s"
{extra}
""")


def _metrics(ws: Workspace) -> dict[str, float]:
    """`restic_backup_*` values of job nightly."""
    return {k: v for k, v in job_metrics(ws, "nightly").items() if k.startswith("restic_backup_")}


def test_a_run_cancelled_during_its_pre_hook_is_cancelled_not_succeeded(
        ws: Workspace, wait_for) -> None:
    hook, marker = _stubborn_hook(ws)
    _config(ws, hook)
    proc = ws.popen("run", "nightly", "--json")
    wait_for(marker.exists)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    record = json.loads(out)
    assert record["status"] == "cancelled", record
    assert proc.returncode == 130 and record["exit_code"] == 130
    assert "SIGTERM" in record["error"]
    # the hook itself ran to its end (exit 0); restic never started
    assert [s["name"] for s in record["steps"]] == ["pre_hook"]
    assert record["steps"][0]["exit_code"] == 0
    assert ws.snapshots() == []
    last = json.loads((ws.state / "last-nightly.json").read_text())
    assert last["status"] == "cancelled"
    values = _metrics(ws)
    assert values["restic_backup_last_success"] == 0
    assert "restic_backup_last_success_timestamp" not in values


def test_a_cancel_during_the_pre_hook_leaves_the_last_success_where_it_was(
        ws: Workspace, wait_for) -> None:
    hook, marker = _stubborn_hook(ws)
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
""")
    code, first = ws.run_json("nightly")
    assert code == 0 and first["status"] == "succeeded"
    success_at = _metrics(ws)["restic_backup_last_success_timestamp"]
    _config(ws, hook)
    proc = ws.popen("run", "nightly", "--json")
    wait_for(marker.exists)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert json.loads(out)["status"] == "cancelled"
    values = _metrics(ws)
    assert values["restic_backup_last_success_timestamp"] == success_at
    assert values["restic_backup_last_success"] == 0
    assert len(ws.snapshots()) == 1

