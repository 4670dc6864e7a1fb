"""compat_log_dir's writer on its own: restic-backup-helper's last-<job>.json, <job>-last.log and
cron.log (runner/engine/compatlogs.py), in a directory others may write: nothing planted there
(a FIFO, a symlink, a hard link, a held lock, a hung file system) hangs or fails the run, and
what others may read there says nothing of who triggered the run."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.engine import compatlogs
from runner.engine.compatlogs import CRON_LOG_LIMIT, touch_cron_log, write_compat_logs
from runner.engine.record import new_record

API_TRIGGER = {"source": "api", "client": "ops-team", "idempotency_key": "key-7f3a",
               "remote_addr": "192.0.2.44"}


def _record(job: str = "backup", trigger: dict | None = None) -> dict:
    return dict(new_record(job=job, kind="backup", hostname="h", repository=None,
                           trigger=trigger or {"source": "cli"}, version="0"))


def _bounded(call: Callable[[], object], seconds: float = 15) -> object:
    """`call()`'s result; fails (never hangs the suite) when it takes over `seconds`."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still writing after {seconds}s: it hangs"
    return result[0]


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
    assert json.loads((out / "last-backup.json").read_text()) == \
        json.loads(state_json.read_text())
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


def _planted(tmp_path: Path) -> Path:
    out = tmp_path / "varlog"
    out.mkdir()
    return out


def test_a_fifo_as_cron_log_is_refused_not_waited_for(tmp_path: Path) -> None:
    """The review's M2: a FIFO nobody reads, planted as cron.log, held the run (and its job
    lock) forever. Now refused at once; the other two files are written."""
    out = _planted(tmp_path)
    os.mkfifo(out / "cron.log")
    started = time.monotonic()
    problem = _bounded(lambda: write_compat_logs(out, _record(), None, None, "tail"))
    assert time.monotonic() - started < 5
    assert problem == f"{out / 'cron.log'}: not a regular file, refused", problem
    assert stat.S_ISFIFO(os.lstat(out / "cron.log").st_mode)
    assert (out / "backup-last.log").read_text() == "tail\n"


def test_a_fifo_someone_reads_is_not_written_either(tmp_path: Path) -> None:
    out = _planted(tmp_path)
    os.mkfifo(out / "cron.log")
    reader = os.open(out / "cron.log", os.O_RDONLY | os.O_NONBLOCK)
    try:
        problem = _bounded(lambda: write_compat_logs(out, _record(), None, None, "tail"))
        assert problem is not None and "not a regular file, refused" in problem
        assert os.read(reader, 100) == b""  # nothing was written into it
    finally:
        os.close(reader)


def test_fifos_and_links_as_the_replaced_files_are_replaced_not_followed(tmp_path: Path) -> None:
    out = _planted(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    os.mkfifo(out / "last-backup.json")
    (out / "backup-last.log").symlink_to(victim)
    assert _bounded(lambda: write_compat_logs(out, _record(), None, None, "tail")) is None
    for name in ("last-backup.json", "backup-last.log"):
        assert stat.S_ISREG(os.lstat(out / name).st_mode)
    assert victim.read_text() == "keep me\n"


def test_cron_log_hard_linked_to_another_file_is_refused(tmp_path: Path) -> None:
    out = _planted(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    os.link(victim, out / "cron.log")
    problem = write_compat_logs(out, _record(), None, None, "tail")
    assert problem == f"{out / 'cron.log'}: 2 hard links, refused", problem
    assert victim.read_text() == "keep me\n"


def test_a_lock_held_on_cron_log_is_waited_for_a_few_seconds_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone who can read cron.log can flock it: the run waits LOCK_TIMEOUT, then goes on."""
    monkeypatch.setattr(compatlogs, "LOCK_TIMEOUT", 0.5, raising=False)
    out = _planted(tmp_path)
    (out / "cron.log").write_text("before\n")
    holder = os.open(out / "cron.log", os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        problem = _bounded(lambda: write_compat_logs(out, _record(), None, None, "tail"), 10)
        assert time.monotonic() - started < 5
        assert problem is not None and "locked by another process for 0.5s" in str(problem)
        assert (out / "cron.log").read_text() == "before\n"
    finally:
        os.close(holder)
    assert write_compat_logs(out, _record(), None, None, "tail") is None  # the lock is free
    assert (out / "cron.log").read_text() == "before\ntail\n"


def test_a_hung_write_is_left_behind_after_write_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that hangs (a dead NFS server): the run goes on after WRITE_TIMEOUT."""
    monkeypatch.setattr(compatlogs, "WRITE_TIMEOUT", 0.5, raising=False)
    release = threading.Event()
    monkeypatch.setattr(compatlogs, "_append", lambda path, data: release.wait(30))
    try:
        started = time.monotonic()
        problem = _bounded(lambda: write_compat_logs(_planted(tmp_path), _record(), None, None,
                                                     "tail"), 10)
        assert time.monotonic() - started < 5
        assert problem is not None and "not done after 0.5s" in str(problem)
    finally:
        release.set()


def test_an_unexpected_error_is_said_not_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> bytes:
        raise ValueError("a bug")

    monkeypatch.setattr(compatlogs, "_cron_lines", broken)
    problem = write_compat_logs(_planted(tmp_path), _record(), None, None, "tail")
    assert problem is not None and "ValueError: a bug" in problem


def test_the_copy_others_read_says_not_who_triggered_the_run(tmp_path: Path) -> None:
    """The review's I4: the state directory's last-<job>.json (0600) keeps the API client, its
    address and idempotency key; the 0644 copy keeps only where the run came from."""
    record = _record(trigger=API_TRIGGER)
    record["log_tail"] = "the tail"
    state_json = tmp_path / "last-backup.json"
    state_json.write_text(json.dumps(record, indent=2) + "\n")
    state_json.chmod(0o600)
    out = tmp_path / "varlog"
    for last_json in (state_json, None):  # the state copy, or the record when it is missing
        assert write_compat_logs(out, record, last_json, None, "tail") is None
        copied = (out / "last-backup.json").read_text()
        assert json.loads(copied)["trigger"] == {"source": "api"}
        for detail in ("ops-team", "key-7f3a", "192.0.2.44"):
            assert detail not in copied
        assert json.loads(copied)["log_tail"] == "the tail"  # as <job>-last.log has it all
    assert json.loads(state_json.read_text())["trigger"] == API_TRIGGER
    assert record["trigger"] == API_TRIGGER  # the caller's record is untouched


def test_touch_cron_log_creates_it_and_refuses_fifos_and_symlinks(tmp_path: Path) -> None:
    out = _planted(tmp_path)
    assert touch_cron_log(out) is None and (out / "cron.log").read_bytes() == b""
    assert stat.S_IMODE((out / "cron.log").stat().st_mode) == 0o644
    (out / "cron.log").unlink()
    os.mkfifo(out / "cron.log")
    assert _bounded(lambda: touch_cron_log(out)) == \
        f"{out / 'cron.log'}: not a regular file, refused"
    (out / "cron.log").unlink()
    (out / "cron.log").symlink_to(tmp_path / "elsewhere")
    assert touch_cron_log(out) == f"{out / 'cron.log'}: a symlink, refused"
    assert not (tmp_path / "elsewhere").exists()
    assert touch_cron_log(None) is None
