"""pre_hook / post_hook: argv lists under the same supervision, output masked into the run log."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.workspace import Workspace


def _hook(ws: Workspace, name: str, body: str) -> Path:
    path = ws.root / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_hooks_run_around_the_backup(ws: Workspace) -> None:
    pre = _hook(ws, "pre.sh", 'echo "pre says hello"; touch "$0.ran"\n')
    post = _hook(ws, "post.sh", f"""
echo "post: $RESTIC_RUNNER_JOB $RESTIC_RUNNER_STATUS $RESTIC_RUNNER_EXIT_CODE"
cp "$RESTIC_RUNNER_RESULT_FILE" {ws.root}/seen-by-post.json
env > {ws.root}/post-env.txt
""")
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
pre_hook = ["{pre}"]
post_hook = ["{post}", "--flag"]
""")
    code, record = ws.run_json("nightly")
    assert code == 0
    assert [s["name"] for s in record["steps"]] == ["pre_hook", "backup", "post_hook"]
    assert Path(f"{pre}.ran").exists()
    seen = json.loads((ws.root / "seen-by-post.json").read_text())
    assert seen["run_id"] == record["run_id"] and seen["status"] == "succeeded"
    env = dict(line.split("=", 1) for line in (ws.root / "post-env.txt").read_text().splitlines()
               if "=" in line)
    assert env["RESTIC_RUNNER_EXIT_CODE"] == "0"
    assert env["RESTIC_RUNNER_RESULT_FILE"] == str(ws.state / "last-nightly.json")
    assert "RESTIC_PASSWORD_FILE" not in env and "RESTIC_REPOSITORY" not in env
    log = (ws.state / "logs" / "nightly" / f"{record['run_id']}.log").read_text()
    assert "pre says hello" in log and "post: nightly succeeded 0" in log
    last = json.loads((ws.state / "last-nightly.json").read_text())
    assert last["steps"][-1]["name"] == "post_hook"


def test_failing_pre_hook_stops_the_run_before_restic(ws: Workspace) -> None:
    pre = _hook(ws, "pre.sh", "echo 'mount failed' >&2; exit 7\n")
    post = _hook(ws, "post.sh", f'echo "$RESTIC_RUNNER_STATUS $RESTIC_RUNNER_EXIT_CODE" > '
                                f'{ws.root}/post.out\n')
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
pre_hook = ["{pre}"]
post_hook = ["{post}"]
""")
    code, record = ws.run_json("nightly")
    assert code == 7 and record["status"] == "failed"
    assert [s["name"] for s in record["steps"]] == ["pre_hook", "post_hook"]
    assert record["error"] == "pre_hook failed with exit code 7"
    assert ws.snapshots() == []
    assert (ws.root / "post.out").read_text().strip() == "failed 7"
    assert "mount failed" in record["log_tail"]


def test_pre_hook_on_error_continue(ws: Workspace) -> None:
    pre = _hook(ws, "pre.sh", "exit 1\n")
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
pre_hook = ["{pre}"]
pre_hook_on_error = "continue"
""")
    code, record = ws.run_json("nightly")
    assert code == 0 and record["status"] == "succeeded"
    assert record["steps"][0] == {"name": "pre_hook", "exit_code": 1,
                                  "duration_seconds": record["steps"][0]["duration_seconds"]}
    assert len(ws.snapshots()) == 1


def test_hook_timeout(ws: Workspace) -> None:
    pre = _hook(ws, "pre.sh", "sleep 30\n")
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
pre_hook = ["{pre}"]
hook_timeout = "1s"
stop_grace = "1s"
""")
    code, record = ws.run_json("nightly")
    assert code == 124 and record["status"] == "failed"
    assert record["steps"][0]["exit_code"] == 124
    assert ws.snapshots() == []


def test_missing_hook_binary_fails_clearly(ws: Workspace) -> None:
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
pre_hook = ["{ws.root}/no-such-hook"]
""")
    code, record = ws.run_json("nightly")
    assert code == 127 and record["status"] == "failed"
    assert "cannot start" in record["log_tail"]
