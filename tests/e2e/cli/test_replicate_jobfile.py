"""restic-backup-helper's replicate job file and hooks in environment mode, through the real
`restic-runner` with real rclone on local directories: one `replicate` run processes every
line (a first bisync recovered, a failed sync, a malformed line, a copy after them), the hooks
run once with the peer's arguments and see the container's environment."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.envmode import EnvRunner, explain
from tests.support.workspace import Workspace


def tree(root: Path, **content: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in content.items():
        (root / name).write_text(text)
    return root


def files(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in directory.iterdir() if p.is_file()}


def test_one_run_processes_the_whole_job_file_with_bisync_recovery_and_hooks(
        ws18: Workspace) -> None:
    root = ws18.root / "env"
    a, b = tree(root / "a", left="L"), tree(root / "b", right="R")
    site, archive = tree(root / "site", page="P"), tree(root / "archive", old="O")
    job_file = root / "replicate_jobs.txt"
    job_file.write_text(
        "# SOURCE;DESTINATION[;MODE[;EXTRA_ARGS]]\n"
        f"{a};{b}\n"  # two columns: bisync; a first run, which the recovery makes good
        f"{root / 'missing'};{root / 'mirror'};sync\n"  # rclone exits 3
        f";{root / 'nowhere'};copy\n"  # malformed: not run, counted failed
        "\n"  # blank lines and comments are skipped
        f"{archive};{root / 'kept'};copy;--update\n")
    runner = EnvRunner(root, ws18.restic, {
        "RESTIC_REPOSITORY": str(ws18.repo), "RESTIC_PASSWORD_FILE": str(ws18.password_file),
        "REPLICATE_CRON": "*/30 * * * *", "REPLICATE_JOB_FILE": str(job_file),
        "REPLICATE_JOB_ARGS": "--resync", "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "RESTIC_CACHE_DIR": str(ws18.root / "cache")})
    runner.hooks.mkdir(parents=True)
    for phase in ("pre", "post"):
        hook = runner.hooks / f"{phase}-replicate.sh"
        hook.write_text(f'#!/bin/sh\necho "{phase} $#:$*" >> {root}/hooks.out\n'
                        f"env > {root}/{phase}-env.txt\n")
        hook.chmod(0o755)

    done = runner.cli("run", "replicate", "--json")
    record = json.loads(done.stdout) if done.stdout.startswith("{") else None
    assert record is not None, explain(done)
    # the first unrecovered failure decides: the sync's 3 (the malformed line comes after it)
    assert done.returncode == 3 and record["exit_code"] == 3, explain(done)
    assert record["stats"]["replicate_jobs_processed"] == 4
    assert record["stats"]["replicate_jobs_failed"] == 3  # the recovered bisync counts
    names = [s["name"] for s in record["steps"]]
    assert names == ["pre_hook", "line 2 bisync", "line 2 recovery copy to destination",
                     "line 2 recovery copy to source", "line 2 recovery resync",
                     "line 3 sync", "line 4", "line 6 copy", "post_hook"]
    assert [s["exit_code"] for s in record["steps"]][2:] == [0, 0, 0, 3, 2, 0, 0]
    assert files(a) == files(b) == {"left": "L", "right": "R"}
    assert files(root / "kept") == {"old": "O"} and files(site) == {"page": "P"}

    assert (root / "hooks.out").read_text().splitlines() == ["pre 0:", "post 1:3"]
    env = dict(line.split("=", 1) for line in (root / "post-env.txt").read_text().splitlines()
               if "=" in line)
    assert env["SLACK_WEBHOOK_URL"] == "http://127.0.0.1:9/hook"
    assert env["REPLICATE_JOB_FILE"] == str(job_file)
    assert env["RESTIC_RUNNER_JOB"] == "replicate" and env["RESTIC_RUNNER_EXIT_CODE"] == "3"

    # the bisync has its state now: the next run's bisync needs no recovery
    again = json.loads(runner.cli("run", "replicate", "--json").stdout)
    assert again["steps"][1] == {**again["steps"][1], "name": "line 2 bisync", "exit_code": 0}
    assert again["stats"]["replicate_jobs_failed"] == 2
