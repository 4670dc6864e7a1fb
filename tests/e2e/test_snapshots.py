"""`restic-runner snapshots [JOB] [--json]`: the repository's snapshots, newest first, masked."""

from __future__ import annotations

import json

from tests.support.secrets import secret_file
from tests.support.workspace import Workspace


def test_snapshots_lists_newest_first(ws18: Workspace) -> None:
    ws18.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws18.data}"]
tags = ["nightly"]

[jobs.offsite]
kind = "replicate"
args = ["sync", "{ws18.data}", "{ws18.root / 'copy'}"]
""")
    first = ws18.run_json("nightly")[1]["stats"]["snapshot_id"]
    (ws18.data / "new.txt").write_text("more")
    second = ws18.run_json("nightly")[1]["stats"]["snapshot_id"]
    done = ws18.cli("snapshots", "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [s["id"][:8] for s in listed[:2]] == [second[:8], first[:8]]
    assert listed[0]["tags"] == ["nightly"]
    table = ws18.cli("snapshots", "nightly").stdout.splitlines()
    assert table[0].split() == ["ID", "TIME", "HOST", "TAGS", "PATHS"]
    assert table[1].startswith(second[:8])
    refused = ws18.cli("snapshots", "offsite")
    assert refused.returncode == 2 and "replicate job" in refused.stderr


def test_a_failure_is_one_masked_line_with_exit_1(ws18: Workspace) -> None:
    password = "snap-pässw/rd@:%-canary"
    wrong = secret_file(ws18.root / "wrong.pw", password)
    ws18.write_config(f"""
[jobs.nightly]
kind = "check"
password_file = "{wrong}"
""")
    done = ws18.cli("snapshots", "--json")
    assert done.returncode == 1
    assert done.stderr.startswith("restic-runner: error: restic snapshots exited 12")
    assert password not in done.stdout + done.stderr
