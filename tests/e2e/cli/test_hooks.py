"""pre_hook / post_hook: argv lists under the same supervision, output masked into the run log."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.receivers import Receiver
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


def _env_of(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_the_post_hook_gets_the_exit_code_as_its_argument_and_the_pre_hook_none(
        ws: Workspace) -> None:
    """As restic-backup-helper's hooks: `pre-<job>.sh` with no argument, `post-<job>.sh "$rc"`;
    a post hook with arguments of its own gets the exit code after them."""
    seen = ws.root / "args.txt"
    pre = _hook(ws, "pre.sh", f'echo "pre $#:$*" >> {seen}\n')
    post = _hook(ws, "post.sh", f'echo "post $#:$*:${{1:-0}}" >> {seen}\n')
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
pre_hook = ["{pre}"]
post_hook = ["{post}"]

[jobs.gone]
kind = "backup"
paths = ["{ws.root / 'missing'}"]
pre_hook = ["{pre}"]
post_hook = ["{post}", "--flag"]
""")
    assert ws.run_json("nightly")[0] == 0
    code, record = ws.run_json("gone")
    assert code != 0 and record["status"] == "failed"
    assert seen.read_text().splitlines() == [
        "pre 0:", "post 1:0:0", "pre 0:", f"post 2:--flag {code}:--flag"]


def test_hook_env_star_gives_the_whole_environment_as_restic_backup_helpers_hooks_had(
        ws: Workspace, receiver: Receiver) -> None:
    """restic-backup-helper's documented post-backup alert hook, in our own words: it reads the
    exit code from `${1:-0}` and the Slack URL from the container's environment, and (like its
    users' hooks) may call restic itself. Secrets it prints are masked in the run log."""
    post = _hook(ws, "post-backup.sh", f"""
env > {ws.root}/post-env.txt
restic snapshots --json > {ws.root}/snapshots-seen-by-hook.json || echo "restic failed"
echo "the password is $RESTIC_PASSWORD"
rc="${{1:-0}}"
[ "$rc" -eq 0 ] && exit 0
curl -fsS -m 10 -H 'Content-Type: application/json' \\
  -d "{{\\"text\\": \\"backup failed with rc=$rc\\"}}" "$SLACK_WEBHOOK_URL"
""")
    password = ws.password_file.read_text().strip()
    ws.extra_env.update(SLACK_WEBHOOK_URL=receiver.url, RESTIC_PASSWORD=password,
                        RESTIC_REPOSITORY_FILE=str(ws.root / "unused-repository-file"),
                        PATH=f"{ws.restic.parent}:{os.environ['PATH']}")
    ws.write_config(f"""
[jobs.gone]
kind = "backup"
paths = ["{ws.root / 'missing'}"]
post_hook = ["{post}"]
hook_env = ["*"]
""")
    code, record = ws.run_json("gone")
    assert code != 0
    posted = receiver.wait_for(1)[0].json()
    assert posted == {"text": f"backup failed with rc={code}"}
    env = _env_of(ws.root / "post-env.txt")
    assert env["SLACK_WEBHOOK_URL"] == receiver.url
    assert env["RESTIC_REPOSITORY"] == str(ws.repo)  # the job's, resolved
    assert "RESTIC_REPOSITORY_FILE" not in env  # restic refuses it next to RESTIC_REPOSITORY
    assert env["RESTIC_PASSWORD_FILE"] == str(ws.password_file)
    assert env["RESTIC_RUNNER_JOB"] == "gone" and env["RESTIC_RUNNER_EXIT_CODE"] == str(code)
    assert env["RESTIC_RUNNER_STATUS"] == "failed" and env["RESTIC_RUNNER_RUN_ID"]
    assert isinstance(json.loads((ws.root / "snapshots-seen-by-hook.json").read_text()), list)
    log = (ws.state / "logs" / "gone" / f"{record['run_id']}.log").read_text()
    assert "the password is ***" in log and password not in log


def test_without_hook_env_star_the_hook_gets_no_more_than_it_names(ws: Workspace) -> None:
    post = _hook(ws, "post.sh", f"env > {ws.root}/post-env.txt\n")
    ws.extra_env["SLACK_WEBHOOK_URL"] = "http://127.0.0.1:9/never"
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
post_hook = ["{post}"]
hook_env = ["RESTIC_REPOSITORY"]
""")
    assert ws.run_json("nightly")[0] == 0
    env = _env_of(ws.root / "post-env.txt")
    assert "SLACK_WEBHOOK_URL" not in env and env["RESTIC_REPOSITORY"] == str(ws.repo)
    assert "RESTIC_PASSWORD" not in env and "RESTIC_PASSWORD_FILE" not in env


def test_a_hook_that_is_not_executable_is_reported_not_ignored(ws: Workspace) -> None:
    pre = ws.root / "pre-backup.sh"
    pre.write_text("#!/bin/sh\ntouch ran\n")
    pre.chmod(0o644)
    ws.write_config(f"""
[jobs.tolerant]
kind = "backup"
paths = ["{ws.data}"]
pre_hook = ["{pre}"]
pre_hook_on_error = "continue"

[jobs.strict]
kind = "backup"
paths = ["{ws.data}"]
pre_hook = ["{pre}"]
""")
    code, record = ws.run_json("tolerant")
    assert code == 0 and record["steps"][0]["exit_code"] == 126
    assert f"pre_hook: {pre} is not executable (chmod +x it): not run" in record["log_tail"]
    assert 'pre_hook failed (exit 126); continuing' in record["log_tail"]
    code, record = ws.run_json("strict")
    assert code == 126 and record["error"] == "pre_hook failed with exit code 126"
    assert not (ws.root / "ran").exists()
