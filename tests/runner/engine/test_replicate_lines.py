"""A replicate job made of job-file lines (runner.engine.jobs.replicatelines), run by the engine
in the test's own process with real rclone (Debian's 1.60 and PyPI's 1.75) on local
directories: every line in order, a failed line does not stop the next, a malformed one counts
failed without running, the run's exit code is the first unrecovered failure's, and a bisync
that fails (first run, lost state) is recovered as restic-backup-helper recovers it: copy
--update both ways, then bisync --resync, and the run exits 0."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.configuration.config import Config, ReplicateLine
from runner.configuration.load import load_config
from runner.engine.history import History
from runner.engine.jobs import plan
from runner.engine.jobs.rclonecalls import line_args
from runner.engine.runs import Engine
from tests.support.paths import RCLONE_BINARIES
from tests.support.workspace import Workspace


@pytest.fixture(params=sorted(RCLONE_BINARIES))
def rclone_bin(request: pytest.FixtureRequest) -> Path:
    binary = RCLONE_BINARIES[request.param]
    if not binary.exists():
        pytest.fail(f"rclone {request.param} missing at {binary}: run `make test`")
    return binary


Lines = tuple[ReplicateLine, ...]


@pytest.fixture
def replicate(ws18: Workspace, rclone_bin: Path) -> Callable[..., dict[str, Any]]:
    """Run the job `replicate` made of `lines` (bisync keeps its state under the workspace,
    through RCLONE_WORKDIR, which only bisync reads); its final record."""
    ws18.write_config(f"""
[rclone]
binary = "{rclone_bin}"
env = {{ RCLONE_WORKDIR = "{ws18.root / 'bisync-state'}" }}

[jobs.replicate]
kind = "replicate"
args = ["version"]
""")

    def run(lines: Lines, **job: Any) -> dict[str, Any]:
        config = load_config(str(ws18.config_path))
        config = with_lines(config, lines, **job)
        engine = Engine(config, lambda: History(config.state_dir))
        try:
            return dict(engine.run("replicate"))
        finally:
            engine.close()
    return run


def with_lines(config: Config, lines: Lines, **job: Any) -> Config:
    jobs = dict(config.jobs)
    jobs["replicate"] = jobs["replicate"]._replace(args=(), replicate_lines=lines, **job)
    return config._replace(jobs=jobs)


def files(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): p.read_text() for p in directory.rglob("*")
            if p.is_file()}


def tree(root: Path, **content: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in content.items():
        (root / name).write_text(text)
    return root


def run_log(ws: Workspace, record: dict[str, Any]) -> str:
    return (ws.state / "logs" / "replicate" / f"{record['run_id']}.log").read_text()


def test_every_line_runs_in_order_and_the_first_failure_gives_the_exit_code(
        ws18: Workspace, replicate: Callable[..., dict[str, Any]]) -> None:
    a, c = tree(ws18.root / "a", one="1"), tree(ws18.root / "c", three="3")
    lines = (
        ReplicateLine(1, "copy", str(a), str(ws18.root / "b")),
        ReplicateLine(3, "bisync", "", str(ws18.root / "x"), problem="invalid line 3: ..."),
        ReplicateLine(4, "sync", str(ws18.root / "missing"), str(ws18.root / "y")),
        ReplicateLine(5, "copy", str(c), str(ws18.root / "d")),
    )
    record = replicate(lines)
    # the malformed line 3 is the first failure: 2, as restic-backup-helper's; the failed sync
    # (rclone 3: directory not found) does not stop line 5
    assert record["status"] == "failed" and record["exit_code"] == 2
    assert record["stats"]["replicate_jobs_processed"] == 4
    assert record["stats"]["replicate_jobs_failed"] == 2
    assert record["stats"]["transfers"] == 2
    assert files(ws18.root / "b") == {"one": "1"} and files(ws18.root / "d") == {"three": "3"}
    steps = [(s["name"], s["exit_code"], s["line"]) for s in record["steps"]]
    assert steps == [("line 1 copy", 0, 1), ("line 3", 2, 3), ("line 4 sync", 3, 4),
                     ("line 5 copy", 0, 5)]
    assert record["steps"][0]["stats"]["transfers"] == 1
    assert record["error"] == "line 3: invalid line 3: ..."
    log = run_log(ws18, record)
    for text in ("line 1: copy", "line 1: copy succeeded", "line 3 not run: invalid line 3",
                 "line 4: sync failed (exit 3)", "line 5: copy succeeded",
                 "replicate: 4 lines processed, 2 failed"):
        assert text in log, text


def test_a_failed_one_way_line_gives_its_rclone_exit_code(
        ws18: Workspace, replicate: Callable[..., dict[str, Any]]) -> None:
    lines = (ReplicateLine(1, "sync", str(ws18.root / "missing"), str(ws18.root / "y")),
             ReplicateLine(2, "copy", "", "", problem="invalid line 2"))
    record = replicate(lines)
    assert record["exit_code"] == 3 and record["status"] == "failed"
    assert record["error"].startswith("line 1 (sync) exited 3: ")
    assert [s["name"] for s in record["steps"]] == ["line 1 sync", "line 2"]


def test_bisync_first_run_is_recovered_and_exits_0(
        ws18: Workspace, replicate: Callable[..., dict[str, Any]]) -> None:
    a = tree(ws18.root / "a", left="L", both="old")
    b = tree(ws18.root / "b", right="R")
    (b / "both").write_text("new")  # newer than a's: --update keeps it on both sides
    line = ReplicateLine(1, "bisync", str(a), str(b), args=("--resync",))
    record = replicate((line,))
    assert record["status"] == "succeeded" and record["exit_code"] == 0, record
    # counted failed as restic-backup-helper counts it, though recovered
    assert record["stats"]["replicate_jobs_failed"] == 1
    steps = [(s["name"], s["exit_code"]) for s in record["steps"]]
    assert steps[0][0] == "line 1 bisync" and steps[0][1] != 0  # 2 (1.60) or 7 (1.75)
    assert steps[1:] == [("line 1 recovery copy to destination", 0),
                         ("line 1 recovery copy to source", 0), ("line 1 recovery resync", 0)]
    expected = {"left": "L", "right": "R", "both": "new"}
    assert files(a) == expected and files(b) == expected
    log = run_log(ws18, record)
    assert "line 1: bisync failed" in log and "line 1: recovered" in log
    # the line's --resync never reaches the routine call: only the recovery's resync has it
    calls = [ln.split("$ ", 1)[1] for ln in log.splitlines() if "restic-runner: $ " in ln]
    assert "--resync" not in calls[0] and calls[3].count("--resync") == 1
    assert "--update" in calls[1] and "--update" in calls[2]

    # the state is there now: the next run is a plain bisync
    (a / "later").write_text("+")
    again = replicate((line,))
    assert again["exit_code"] == 0 and again["stats"]["replicate_jobs_failed"] == 0
    assert [s["name"] for s in again["steps"]] == ["line 1 bisync"]
    assert files(b)["later"] == "+"


def test_bisync_state_lost_after_a_good_run_is_recovered(
        ws18: Workspace, replicate: Callable[..., dict[str, Any]]) -> None:
    a, b = tree(ws18.root / "a", one="1"), tree(ws18.root / "b")
    line = ReplicateLine(1, "bisync", str(a), str(b))
    assert replicate((line,))["exit_code"] == 0  # first run: recovered
    assert replicate((line,))["steps"][0]["exit_code"] == 0  # a good run
    shutil.rmtree(ws18.root / "bisync-state")  # the listings are lost
    (b / "two").write_text("2")
    record = replicate((line,))
    assert record["exit_code"] == 0 and record["status"] == "succeeded"
    assert record["steps"][0]["exit_code"] != 0 and len(record["steps"]) == 4
    assert files(a) == files(b) == {"one": "1", "two": "2"}


def test_a_bisync_that_cannot_be_recovered_fails_with_the_recovery_code(
        ws18: Workspace, replicate: Callable[..., dict[str, Any]]) -> None:
    b = tree(ws18.root / "b", one="1")
    line = ReplicateLine(1, "bisync", str(ws18.root / "missing"), str(b))
    record = replicate((line,))
    assert record["status"] == "failed" and record["exit_code"] == 3  # the first copy's
    names = [s["name"] for s in record["steps"]]
    assert names == ["line 1 bisync", "line 1 recovery copy to destination",
                     "line 1 recovery copy to source"]  # no resync after a failed copy
    assert "recovery failed: copy to destination exited 3" in record["error"]
    assert record["stats"]["replicate_jobs_failed"] == 1


def test_replicate_hooks_run_once_per_run_the_post_hook_with_the_runs_exit_code(
        ws18: Workspace, replicate: Callable[..., dict[str, Any]]) -> None:
    seen = ws18.root / "hooks.out"
    pre, post = ws18.root / "pre-replicate.sh", ws18.root / "post-replicate.sh"
    for hook in (pre, post):
        hook.write_text(f'#!/bin/sh\necho "$(basename "$0") $# $*" >> {seen}\n')
        hook.chmod(0o755)
    lines = (ReplicateLine(1, "copy", str(tree(ws18.root / "a", x="1")), str(ws18.root / "b")),
             ReplicateLine(2, "sync", str(ws18.root / "missing"), str(ws18.root / "c")),
             ReplicateLine(3, "copy", str(ws18.root / "a"), str(ws18.root / "d")))
    record = replicate(lines, pre_hook=(str(pre),), post_hook=(str(post),),
                       pre_hook_on_error="continue")
    assert record["exit_code"] == 3
    assert seen.read_text().splitlines() == ["pre-replicate.sh 0 ", "post-replicate.sh 1 3"]
    assert [s["name"] for s in record["steps"]] == ["pre_hook", "line 1 copy", "line 2 sync",
                                                    "line 3 copy", "post_hook"]


def test_doctor_and_views_see_each_lines_call(ws18: Workspace) -> None:
    ws18.write_config("""
[jobs.replicate]
kind = "replicate"
args = ["version"]
""")
    config = with_lines(load_config(str(ws18.config_path)), (
        ReplicateLine(1, "bisync", "/a", "/b", args=("--check-access", "--resync")),
        ReplicateLine(2, "sync", "", "/c", problem="invalid"),
        ReplicateLine(3, "copy", "/a", "remote:d", args=("--check-access", "--workdir", "/w",
                                                        "--transfers=2")),
    ))
    steps = plan(config.jobs["replicate"])
    assert [s.name for s in steps] == ["line 1 bisync", "line 3 copy"]
    assert steps[0].argv[1:5] == ("bisync", "/a", "/b", "--check-access")
    assert steps[1].argv[1:5] == ("copy", "/a", "remote:d", "--transfers=2")


@pytest.mark.parametrize(("args", "command", "kept"), [
    (("--resync", "--check-access", "--workdir", "/w", "-v"), "bisync",
     ("--check-access", "--workdir", "/w", "-v")),
    (("--resync", "--check-access", "--workdir", "/w", "-v"), "copy", ("-v",)),
    (("--workdir=/w", "--filters-file", "f", "--exclude", "x"), "sync", ("--exclude", "x")),
])
def test_which_arguments_each_call_gets(args: tuple[str, ...], command: str,
                                        kept: tuple[str, ...]) -> None:
    assert line_args(ReplicateLine(1, "bisync", "/a", "/b", args=args), command) == kept


def test_a_timeout_during_a_line_stops_the_run_there(
        ws18: Workspace, replicate: Callable[..., dict[str, Any]]) -> None:
    big = tree(ws18.root / "big")
    (big / "blob").write_bytes(b"\0" * 2_000_000)
    lines = (ReplicateLine(1, "copy", str(big), str(ws18.root / "slow"), args=("--bwlimit", "50k")),
             ReplicateLine(2, "copy", str(tree(ws18.root / "a", x="1")), str(ws18.root / "b")))
    record = replicate(lines, timeout=2.0, stop_grace=1.0)
    assert record["status"] == "timed_out" and record["exit_code"] == 124
    assert [s["name"] for s in record["steps"]] == ["line 1 copy"]  # line 2 never started
    assert record["stats"]["replicate_jobs_processed"] == 1
    assert not (ws18.root / "b").exists()


def test_a_password_inside_an_endpoint_is_masked_everywhere(
        ws18: Workspace, replicate: Callable[..., dict[str, Any]]) -> None:
    canary = "canary-Repl1cate-pw"
    source = f"sftp://helper:{canary}@127.0.0.1:9/inbox"
    record = replicate((ReplicateLine(1, "copy", source, str(ws18.root / "b")),))
    assert record["status"] == "failed"
    log = run_log(ws18, record)
    assert "line 1: copy sftp://helper:***@127.0.0.1:9/inbox -> " in log
    assert canary not in log and canary not in str(record)
    assert canary not in (ws18.state / "last-replicate.json").read_text()


def test_a_job_file_of_malformed_lines_runs_nothing_and_fails_with_2(
        ws18: Workspace, replicate: Callable[..., dict[str, Any]]) -> None:
    record = replicate((ReplicateLine(1, "bisync", "/a", "", problem="invalid line 1"),
                        ReplicateLine(2, "mirror", "/a", "/b", problem="invalid mode")))
    assert record["status"] == "failed" and record["exit_code"] == 2
    assert record["stats"] == {"replicate_jobs_processed": 2, "replicate_jobs_failed": 2}
    assert [s["name"] for s in record["steps"]] == ["line 1", "line 2"]
    assert (ws18.state / "last-replicate.json").exists()
