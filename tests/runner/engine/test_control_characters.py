"""Control characters the tools print (a file name holding a newline and a terminal escape)
never reach a log line raw: rendered restic and rclone JSON, plain text lines, the runner's own
notes, and the record's `error` (security/controlchars.py; runner/engine/jobs/humantext.py,
output.py, runlog.py)."""

from __future__ import annotations

import json
from pathlib import Path

from runner.engine.jobs.humantext import forget_groups
from runner.engine.jobs.output import BackupOutput, ForgetOutput, RcloneOutput
from runner.engine.runlog import RunLog, escape_controls, tool_text
from security.controlchars import printable

FORGED = "2026-01-01T00:00:00Z restic-runner: finished: succeeded"
# a file name: a newline to forge a line of the runner's, ESC to clear a terminal, a C1 CSI,
# a carriage return, a Unicode line separator
NAME = f"/data/evil\n{FORGED}\x1b[2J\x9b31m\r\u2028end"
ESCAPED = "/data/evil\\n" + FORGED + "\\u001b[2J\\u009b31m\\r\\u2028end"
RAW_BYTES = (b"\x1b", b"\r", b"\xc2\x9b", "\u2028".encode())


def _clean(log: bytes) -> None:
    """No line of `log` is forged, and no control byte but newline and tab is in it."""
    for raw in RAW_BYTES:
        assert raw not in log, (raw, log)
    for line in log.decode().splitlines():
        assert not line.startswith(FORGED), log
    assert all(b >= 0x20 or b in b"\n\t" for b in log), log


def _line(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def test_printable_escapes_c0_c1_and_line_separators_only() -> None:
    assert printable(NAME) == ESCAPED
    assert printable("plain – ünïcödé ° € \\n stays") == "plain – ünïcödé ° € \\n stays"
    assert printable("\x00\x7f\x85\t") == "\\u0000\\u007f\\u0085\\t"


def test_restic_errors_of_either_version_are_one_escaped_line() -> None:
    parser = BackupOutput()
    block = b"".join([
        _line({"message_type": "error", "error": {"message": f"open {NAME}: permission denied"},
               "during": "archival", "item": NAME}),
        _line({"message_type": "error", "error": {"Op": "open", "Path": NAME, "Err": 13},
               "during": "archival", "item": NAME}),
        _line({"message_type": "exit_error", "code": 1, "message": f"Fatal: {NAME}\n"}),
    ])
    out = parser.feed(block, "stderr")
    _clean(out)
    assert out.decode().splitlines() == [
        f"error: open {ESCAPED}: permission denied",
        f"error: open {ESCAPED}: errno 13",
        f"Fatal: {ESCAPED}"]
    # the record's error (the CLI prints it, notifications send it) is escaped too
    assert parser.error is not None and "\n" not in parser.error and ESCAPED in parser.error
    _clean(parser.error.encode())


def test_forget_table_paths_tags_and_hosts_are_escaped() -> None:
    snap = {"time": "2026-12-06T10:00:00Z", "short_id": "abcd1234", "hostname": f"h{NAME}",
            "tags": [f"t{NAME}"], "paths": [NAME], "tree": "t"}
    groups = [{"host": f"h{NAME}", "paths": [NAME], "tags": None, "keep": [snap],
               "remove": [snap], "reasons": [{"snapshot": snap, "matches": [f"m{NAME}"]}]},
              {"host": "other", "paths": ["/x"], "keep": [], "remove": []}]
    text = forget_groups(groups)
    _clean(text.encode())
    assert ESCAPED in text
    parser = ForgetOutput()
    _clean(parser.feed(json.dumps(groups).encode() + b"\n", "stdout"))


def test_verbose_items_and_snapshot_ids_are_escaped() -> None:
    from runner.engine.jobs.humantext import backup_summary, verbose_item

    _clean(verbose_item({"action": "new", "item": NAME, "duration": 0.1}).encode())
    _clean(verbose_item({"action": f"x{NAME}", "item": NAME}).encode())
    _clean(backup_summary({"snapshot_id": "\n" + FORGED}).encode())


def test_rclone_json_log_lines_are_escaped() -> None:
    parser = RcloneOutput()
    out = parser.feed(_line({"time": "2026-12-06T14:48:24.1+00:00", "level": "error",
                             "object": NAME, "msg": f"Failed to copy: {NAME}"}), "stderr")
    _clean(out)
    assert out.decode() == f"2026/12/06 14:48:24 ERROR : {ESCAPED}: Failed to copy: {ESCAPED}\n"
    assert parser.error == f"Failed to copy: {ESCAPED}"


def test_rclone_stats_keep_their_lines_unless_a_name_in_them_is_odd() -> None:
    stats = {"bytes": 1, "transferring": [{"name": "ok.txt"}]}
    block = "\nTransferred:   \t1 B\nTransferring:\n *  ok.txt: 0%\n"
    out = RcloneOutput().feed(_line({"level": "notice", "msg": block, "stats": stats,
                                     "time": "2026-12-06T14:48:24Z"}), "stderr")
    assert out.decode().splitlines()[1:] == ["Transferred:   \t1 B", "Transferring:",
                                             " *  ok.txt: 0%"]
    stats["transferring"] = [{"name": NAME}]
    out = RcloneOutput().feed(_line({"level": "notice", "msg": block.replace("ok.txt", NAME),
                                     "stats": stats, "time": "2026-12-06T14:48:24Z"}),
                              "stderr")
    _clean(out)
    assert out.count(b"\n") == 1


def test_plain_text_lines_keep_tabs_and_line_ends_but_no_other_control() -> None:
    # a line as restic 0.14 and 0.18 print it for a missing path given on the command line
    # (plain text, even with --json): its newline cannot be told from a line end, its escape
    # sequences can
    raw = f"{NAME} does not exist, skipping\n".encode() + b"col1\tcol2\n"
    out = escape_controls(raw)
    assert b"\x1b" not in out and b"\r" not in out and b"\xc2\x9b" not in out
    assert b"\\u001b[2J\\u009b31m\\r\\u2028end does not exist" in out
    assert out.endswith(b"col1\tcol2\n")
    ordinary = "a – b ° c € d\n".encode() * 1000
    assert escape_controls(ordinary) is ordinary  # nothing to escape: the block itself


def test_a_tool_line_that_reads_like_a_runner_note_is_marked() -> None:
    block = (f"/data/evil\n{FORGED}\n".encode() + b"   restic-runner: x\n"
             b"Fatal: /var/lib/restic-runner: no such file\nplain\n")
    assert tool_text(block) == (f"/data/evil\n[tool output] {FORGED}\n".encode()
                                + b"[tool output]    restic-runner: x\n"
                                b"Fatal: /var/lib/restic-runner: no such file\nplain\n")


def test_run_log_escapes_tool_output_and_the_runners_own_notes(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    with RunLog(path) as log:
        pipes = log.pipes(BackupOutput())
        pipes["stderr"].feed(f"{NAME} does not exist, skipping\n".encode())
        pipes["stdout"].feed(f"{FORGED}\n".encode())
        pipes["stderr"].feed(_line({"message_type": "error", "error": {"message": NAME},
                                    "during": "scan", "item": NAME}))
        pipes["stdout"].feed(b"\x1b]0;title\x07 a hook's escape, no line end")
        for pipe in pipes.values():
            pipe.close()
        log.note(f"$ restic backup {NAME}")
    written = path.read_bytes()
    for raw in (*RAW_BYTES, b"\x07"):
        assert raw not in written, raw
    assert f"restic-runner: $ restic backup {ESCAPED}\n".encode() in written
    assert f"error: {ESCAPED}\n".encode() in written
    _clean(written)
    assert "\x1b" not in log.tail()
