"""compat_log_dir's writer on its own: restic-backup-helper's last-<job>.json, <job>-last.log and
cron.log (runner/engine/compatlogs.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from runner.engine.compatlogs import CRON_LOG_LIMIT, write_compat_logs
from runner.engine.record import new_record


def _record(job: str = "backup") -> dict:
    return dict(new_record(job=job, kind="backup", hostname="h", repository=None,
                           trigger={"source": "cli"}, version="0"))


def test_a_long_log_goes_whole_to_last_log_and_its_end_to_cron_log(tmp_path: Path) -> None:
    run_log = tmp_path / "run.log"
    lines = [f"line {i:07d} of a verbose backup\n".encode() for i in range(20000)]
    run_log.write_bytes(b"".join(lines))
    run_log.chmod(0o600)
    state_json = tmp_path / "last-backup.json"
    state_json.write_text('{"from": "the state directory"}\n')
    state_json.chmod(0o600)
    out = tmp_path / "varlog"
    assert write_compat_logs(out, _record(), state_json, run_log) is None
    assert (out / "last-backup.json").read_bytes() == state_json.read_bytes()
    assert (out / "backup-last.log").read_bytes() == run_log.read_bytes()
    cron = (out / "cron.log").read_bytes()
    first, rest = cron.split(b"\n", 1)
    assert first.startswith(b"[backup: the first ") and b"backup-last.log has all" in first
    assert len(rest) <= CRON_LOG_LIMIT and rest.endswith(lines[-1])
    assert rest.startswith(b"line ")  # from a whole line on
    for name in ("last-backup.json", "backup-last.log", "cron.log"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644


def test_without_a_run_log_the_tail_stands_in(tmp_path: Path) -> None:
    out = tmp_path / "varlog"
    record = _record("check")
    assert write_compat_logs(out, record, None, None, "the tail") is None
    assert json.loads((out / "last-check.json").read_text())["run_id"] == record["run_id"]
    assert (out / "check-last.log").read_text() == "the tail\n"
    assert (out / "cron.log").read_text() == "the tail\n"
    write_compat_logs(out, record, None, None, "the next tail\n")
    assert (out / "cron.log").read_text() == "the tail\nthe next tail\n"


def test_a_directory_that_cannot_be_written_is_said_not_raised(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    problem = write_compat_logs(blocked / "varlog", _record(), None, None, "tail")
    assert problem is not None and str(blocked / "varlog") in problem


def test_cron_log_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    out = tmp_path / "varlog"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (out / "cron.log").symlink_to(victim)
    problem = write_compat_logs(out, _record(), None, None, "tail")
    assert problem is not None and "cron.log" in problem
    assert victim.read_text() == "keep me\n"
