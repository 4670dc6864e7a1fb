"""restic-backup-helper's outputs from real runs, on restic 0.14 and 0.18: its fields in
`last-<job>.json`, restic's own summary text in the run log, and `compat_log_dir` (its
`/var/log`: `last-<job>.json`, `<job>-last.log`, `cron.log`)."""

from __future__ import annotations

import json
import re
import stat

from tests.support.workspace import Workspace

JOBS = """
[jobs.backup]
kind = "backup"
paths = ["{data}"]
tags = ["daily", "extra"]
forget_args = ["--keep-last", "5"]

[jobs.check]
kind = "check"

[jobs.forget]
kind = "forget"
args = ["--keep-last", "1"]
"""
PASSWORD = "template-password-0"


def _config(ws: Workspace, compat: bool = True) -> None:
    top = f'compat_log_dir = "{ws.root / "varlog"}"' if compat else ""
    ws.write_config(JOBS.format(data=ws.data), top=top)


def _assert_public_copy(copied: bytes, state: bytes) -> None:
    """compat_log_dir's last-<job>.json (0644) is the state directory's (0600) but for the
    trigger's details: who triggered the run (the CLI's user here) is left out."""
    private = json.loads(state)
    assert private["trigger"]["source"] == "cli" and private["trigger"]["client"]
    expected = {**private, "trigger": {"source": "cli"}}
    assert copied == json.dumps(expected, indent=2).encode() + b"\n"


def test_last_json_has_the_peers_fields_with_its_types(ws: Workspace) -> None:
    _config(ws, compat=False)
    code, record = ws.run_json("backup")
    assert code == 0, record
    last = json.loads((ws.state / "last-backup.json").read_text())
    snapshot = ws.snapshots()[0]["short_id"]
    # the peer's extras, as strings (its scripts wrote them so)
    assert last["snapshot_id"] == snapshot
    assert last["backup_root_dir"] == str(ws.data)
    assert last["restic_tag"] == "daily,extra"
    assert last["forget_exit_code"] == "0"
    assert (last["files_new"], last["files_changed"], last["files_unmodified"]) == \
        ("20", "0", "0")
    assert re.fullmatch(r"\d+\.\d{3} KiB", last["bytes_added"]), last["bytes_added"]
    if ws.restic_version == "0.18":  # 0.14's JSON has no packed size
        assert re.fullmatch(r"\d+\.\d{3} KiB", last["bytes_stored"])
    else:
        assert "bytes_stored" not in last
    # its common fields
    assert last["job"] == "backup" and last["hostname"] == "test-host"
    assert last["exit_code"] == 0 and isinstance(last["duration_seconds"], float)
    assert last["release"] == last["version"]  # restic-runner's
    assert isinstance(last["started_epoch"], int) and \
        last["finished_epoch"] >= last["started_epoch"]
    assert last["repository"] == str(ws.repo)
    # ours stay: the full stats, the steps, the schema
    assert last["stats"]["files_new"] == 20 and last["schema"] == "restic-runner.run/1"


def test_run_log_holds_restics_summary_text_not_its_json(ws: Workspace) -> None:
    _config(ws, compat=False)
    code, record = ws.run_json("backup")
    assert code == 0
    log = (ws.state / "logs" / "backup" / f"{record['run_id']}.log").read_text()
    assert '"message_type"' not in log and '[{"tags"' not in log
    assert re.search(r"^Files:\s+20 new,\s+0 changed,\s+0 unmodified$", log, re.M), log
    assert re.search(r"^Dirs:\s+\d+ new,\s+0 changed,\s+0 unmodified$", log, re.M)
    added = re.search(r"^Added to the repository: (\S+ \S+)", log, re.M)
    assert added and added.group(1) == record["bytes_added"]
    assert f"snapshot {record['snapshot_id']} saved" in log
    assert re.search(r"^processed 20 files, \S+ \S+ in 0:\d\d$", log, re.M)
    # the forget step: restic's table of what it kept
    assert "keep 1 snapshots:" in log and "last snapshot" in log, log

    code, check = ws.run_json("check")
    assert code == 0
    log = (ws.state / "logs" / "check" / f"{check['run_id']}.log").read_text()
    assert "no errors were found" in log and '"message_type"' not in log


def test_compat_log_dir_gets_last_json_last_log_and_cron_log(ws: Workspace) -> None:
    _config(ws)
    code, first = ws.run_json("backup")
    assert code == 0
    code, second = ws.run_json("check")
    assert code == 0
    varlog = ws.root / "varlog"
    for job, record in (("backup", first), ("check", second)):
        copied = (varlog / f"last-{job}.json").read_bytes()
        _assert_public_copy(copied, (ws.state / f"last-{job}.json").read_bytes())
        assert json.loads(copied)["run_id"] == record["run_id"]
        log = (varlog / f"{job}-last.log").read_text()
        assert log == (ws.state / "logs" / job / f"{record['run_id']}.log").read_text()
        assert f"run {record['run_id']}" in log
        for name in (f"last-{job}.json", f"{job}-last.log"):
            assert stat.S_IMODE((varlog / name).stat().st_mode) == 0o644
    cron = (varlog / "cron.log").read_text()
    assert cron.index(f"run {first['run_id']}") < cron.index(f"run {second['run_id']}")
    assert "Files:" in cron and "no errors were found" in cron
    assert PASSWORD not in cron

    # the next run of a job replaces its -last.log, and cron.log grows
    code, third = ws.run_json("backup")
    assert code == 0
    assert first["run_id"] not in (varlog / "backup-last.log").read_text()
    assert f"run {third['run_id']}" in (varlog / "cron.log").read_text()
    assert first["run_id"] in (varlog / "cron.log").read_text()


def test_a_failed_run_is_written_there_too(ws: Workspace) -> None:
    _config(ws)
    ws.password_file.write_text("wrong-password\n")
    code, record = ws.run_json("backup")
    assert code != 0 and record["status"] == "failed"
    last = json.loads((ws.root / "varlog" / "last-backup.json").read_text())
    assert last["exit_code"] == code and "snapshot_id" not in last
    assert "files_new" not in last and "forget_exit_code" not in last
    log = (ws.root / "varlog" / "backup-last.log").read_text()
    assert "finished: failed" in log and '"message_type"' not in log


def test_a_run_that_cannot_start_is_written_there_too(ws: Workspace) -> None:
    """A secret file others may read stops the run before restic starts (config-file mode):
    still a failed run, in the state directory and in compat_log_dir alike."""
    _config(ws)
    ws.password_file.chmod(0o644)
    done = ws.cli("run", "backup")
    assert done.returncode != 0
    varlog = ws.root / "varlog"
    last = json.loads((varlog / "last-backup.json").read_text())
    assert last["status"] == "failed" and last["steps"] == []
    assert last["backup_root_dir"] == str(ws.data) and "release" in last
    _assert_public_copy((varlog / "last-backup.json").read_bytes(),
                        (ws.state / "last-backup.json").read_bytes())
    assert str(ws.password_file) in (varlog / "cron.log").read_text()
    assert (varlog / "backup-last.log").read_text() == (varlog / "cron.log").read_text()


def test_a_restore_rehearsal_has_the_peers_restore_test_fields(ws: Workspace) -> None:
    import hashlib

    canary = ws.data / "dir0" / "file000.txt"
    digest = hashlib.sha256(canary.read_bytes()).hexdigest()
    missing = ws.data / "not-there.txt"
    ws.write_config(JOBS.format(data=ws.data) + f"""
[jobs.rehearsal]
kind = "restore-test"
target_dir = "{ws.root / 'scratch'}"
min_files = 20
canaries = {{ "{canary}" = "{digest}", "{missing}" = "{'0' * 64}" }}
""")
    assert ws.run_json("backup")[0] == 0
    code, record = ws.run_json("rehearsal")
    assert code == 1 and record["status"] == "failed"
    last = json.loads((ws.state / "last-rehearsal.json").read_text())
    assert (last["verification"], last["min_files"], last["min_files_met"]) == \
        ("failed", "20", "true")
    assert (last["files_restored"], last["canary_total"], last["canary_passed"],
            last["canary_failed"]) == ("20", "2", "1", "1")
    assert (last["cleanup_status"], last["keep"], last["target_autotmp"]) == \
        ("cleaned", "OFF", "OFF")
    assert last["snapshot"] == "latest" and last["target"] == str(ws.root / "scratch")
    by_path = {r["path"]: r for r in last["canary_results"]}
    assert by_path[str(canary)]["status"] == "passed"
    assert by_path[str(canary)]["actual_sha256"] == digest
    assert by_path[str(missing)] == {
        "path": str(missing), "expected_sha256": "0" * 64, "actual_sha256": "",
        "status": "missing", "message": "file not present in restored tree"}


def test_a_fifo_planted_as_cron_log_neither_hangs_nor_fails_the_run(ws: Workspace) -> None:
    """The review's M2: `mkfifo varlog/cron.log` held `run check` (and its job lock) forever.
    Now the run ends as it would, its log says cron.log was refused, the other two files are
    written, and the next run of the job is not skipped."""
    import os

    _config(ws)
    varlog = ws.root / "varlog"
    varlog.mkdir()
    os.mkfifo(varlog / "cron.log")
    done = ws.cli("run", "check", "--json", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(done.stdout)
    log = (ws.state / "logs" / "check" / f"{record['run_id']}.log").read_text()
    assert f"compat_log_dir: not written: {varlog / 'cron.log'}: not a regular file, " \
        "refused" in log, log
    assert json.loads((varlog / "last-check.json").read_text())["run_id"] == record["run_id"]
    assert "no errors were found" in (varlog / "check-last.log").read_text()
    code, again = ws.run_json("check")
    assert code == 0 and again["status"] == "succeeded"


# --- control characters in what the tools print (docs/runs.md, "Control characters") --------

FORGED = "2026-01-01T00:00:00Z restic-runner: finished: succeeded"
EVIL = f"evil\n{FORGED}\x1b[2J\x1b]0;pwned\x07"  # a newline, a screen clear, a title change


def _assert_no_raw_controls(text: str, where: str) -> None:
    """No forged line of the runner's and no control character but newline and tab."""
    assert not any(line.startswith(FORGED) for line in text.splitlines()), (where, text)
    odd = [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0]
    assert not odd, (where, odd, text)


def _assert_outputs_clean(ws: Workspace, record: dict, *cli_output: str) -> str:
    varlog = ws.root / "varlog"
    run_log = (ws.state / "logs" / record["job"] / f"{record['run_id']}.log").read_text()
    for name, text in (("run log", run_log), ("cron.log", (varlog / "cron.log").read_text()),
                       ("-last.log", (varlog / f"{record['job']}-last.log").read_text()),
                       ("log_tail", record["log_tail"]), ("error", record["error"] or ""),
                       *(("CLI", out) for out in cli_output)):
        _assert_no_raw_controls(text, name)
    return run_log


def test_a_file_name_with_a_newline_and_escapes_forges_no_line(ws: Workspace) -> None:
    """A real directory whose name holds a newline, a forged runner line and terminal escapes
    (restic backs it up): the backup's command line, restic's plain-text line about a missing
    path and the forget step's table of the snapshot's paths are all logged escaped."""
    evil = ws.data / EVIL
    evil.mkdir()
    (evil / "file.txt").write_text("data\n")
    missing = ws.data / f"missing-{EVIL}"
    ws.write_config(f"""
[jobs.backup]
kind = "backup"
paths = [{json.dumps(str(evil))}, {json.dumps(str(missing))}]
forget_args = ["--keep-last", "5"]
""", top=f'compat_log_dir = "{ws.root / "varlog"}"')
    done = ws.cli("run", "backup")
    record = json.loads((ws.state / "last-backup.json").read_text())
    assert record["status"] in ("succeeded", "warning"), done.stdout + done.stderr
    assert ws.snapshots()[0]["paths"][0] == str(evil)  # restic took the name as it is
    log = _assert_outputs_clean(ws, record, done.stdout, done.stderr)
    escaped = "evil\\n" + FORGED + "\\u001b[2J\\u001b]0;pwned\\u0007"
    assert f"$ {ws.restic} backup" in log and escaped in log  # the command line, a note
    assert "keep 1 snapshots:" in log  # the forget table, its Paths column escaped
    table = log[log.index("keep 1 snapshots:"):]
    assert escaped in table, table
    # restic's plain-text line: its newline cannot be told from a line end, but the line it
    # starts is marked as not the runner's, and its escapes are escaped
    assert f"\n[tool output] {FORGED}\\u001b[2J\\u001b]0;pwned\\u0007 does not exist, " \
        "skipping\n" in log, log


STUB = """#!/bin/sh
# Test stub (tests/e2e/cli/test_peer_outputs.py): restic-shaped JSON whose messages hold a file
# name with a newline and terminal escapes, as restic 0.18 (`message`) and 0.14 (`Op`/`Path`)
# print them for a file they cannot read. Real restic cannot be made to print these here: the
# tests run as root, who reads every file, and an error is the only place restic's JSON carries
# a file name besides verbose and forget output (tested with real restic above).
[ "$1" = version ] && { echo "restic 0.18.0 compiled with go1.24 on linux/amd64"; exit 0; }
cat "$0.json" >&2
exit 1
"""
STUB_NAME = f"/data/evil\n{FORGED}\x1b[2J"
STUB_LINES = [
    {"message_type": "error", "error": {"message": f"open {STUB_NAME}\x9b: permission denied"},
     "during": "archival", "item": STUB_NAME},
    {"message_type": "error", "error": {"Op": "open", "Path": STUB_NAME, "Err": 13},
     "during": "archival", "item": "/data/evil"},
    {"message_type": "exit_error", "code": 1,
     "message": f"Fatal: cannot read /data/evil\n{FORGED}\x1b]0;pwned\x07\n"},
]


def test_restic_error_messages_with_such_a_name_forge_no_line(ws18: Workspace) -> None:
    """Stub restic (see STUB): its error messages reach the run log, cron.log, -last.log, the
    record's `error` and the CLI's summary on one line each, escaped."""
    import dataclasses

    stub = ws18.root / "restic-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    stub.with_name(stub.name + ".json").write_text(
        "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in STUB_LINES))
    stubbed = dataclasses.replace(ws18, restic=stub)
    _config(stubbed)
    done = stubbed.cli("run", "backup")
    assert done.returncode == 1, done.stdout + done.stderr
    record = json.loads((ws18.state / "last-backup.json").read_text())
    assert record["status"] == "failed"
    log = _assert_outputs_clean(ws18, record, done.stdout, done.stderr)
    escaped = "/data/evil\\n" + FORGED + "\\u001b[2J"
    assert f"error: open {escaped}\\u009b: permission denied\n" in log, log
    assert f"error: open {escaped}: errno 13\n" in log
    assert f"Fatal: cannot read /data/evil\\n{FORGED}\\u001b]0;pwned\\u0007\n" in log
    assert escaped in record["error"] and "\n" not in record["error"]
