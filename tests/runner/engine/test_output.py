"""The output parsers on their own: status lines become progress, everything else is logged,
whatever the block boundaries; what restic and rclone print as JSON is logged as their text."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.engine.jobs.output import (
    BackupOutput,
    CheckOutput,
    ForgetOutput,
    RcloneOutput,
    ResticOutput,
)


def status(n: int) -> bytes:
    return json.dumps({"message_type": "status", "percent_done": n / 100, "files_done": n,
                       "total_files": 100, "bytes_done": n * 10, "total_bytes": 1000},
                      separators=(",", ":")).encode() + b"\n"


VERBOSE = b'{"message_type":"verbose_status","action":"new","item":"/d/f","duration":0.1}\n'
SUMMARY = (b'{"message_type":"summary","files_new":3,"files_changed":1,"files_unmodified":2,'
           b'"dirs_new":1,"data_added":512,"total_files_processed":6,'
           b'"total_bytes_processed":600,"total_duration":1.5,"snapshot_id":"abcd1234"}\n')
TEXT = b'not json, mentions {"message_type":"status" in the middle\n'
# restic -v's closing lines for SUMMARY, as restic 0.14 prints them (0.14 has no packed size)
SUMMARY_TEXT = b"""
Files:           3 new,     1 changed,     2 unmodified
Dirs:            1 new,     0 changed,     0 unmodified
Data Blobs:      0 new
Tree Blobs:      0 new
Added to the repository: 512 B

processed 6 files, 600 B in 0:01
snapshot abcd1234 saved
"""

LINES = st.lists(st.sampled_from([status(1), status(50), VERBOSE, TEXT, b"\n"]), max_size=40)


@settings(max_examples=200, deadline=None)
@given(lines=LINES, cuts=st.lists(st.integers(min_value=0, max_value=41), max_size=8))
def test_status_lines_become_progress_and_the_rest_is_logged(lines: list[bytes],
                                                             cuts: list[int]) -> None:
    lines = [*lines, status(99), VERBOSE, SUMMARY]
    parser = BackupOutput()
    bounds = sorted({0, len(lines), *(c for c in cuts if c < len(lines))})
    logged = b"".join(parser.feed(b"".join(lines[a:b]), "stdout")
                      for a, b in itertools.pairwise(bounds))
    assert logged == b"".join(line for line in lines[:-1] if not line.startswith(
        b'{"message_type":"status"')) + SUMMARY_TEXT
    assert parser.progress() == {"percent_done": 0.99, "files_done": 99, "total_files": 100,
                                 "bytes_done": 990, "total_bytes": 1000}
    assert parser.stats == {"snapshot_id": "abcd1234", "files_new": 3, "files_changed": 1,
                            "files_unmodified": 2, "dirs_new": 1, "data_added": 512,
                            "total_files_processed": 6, "total_bytes_processed": 600,
                            "total_duration": 1.5}


def test_restic_018_errors_and_014_text_errors() -> None:
    parser = BackupOutput()
    parser.feed(b'{"message_type":"error","error":{"message":"open /d/x: permission denied"},'
                b'"during":"archival","item":"/d/x"}\n'
                b'{"message_type":"exit_error","code":3,"message":"Warning: at least one source '
                b'file could not be read"}\n', "stderr")
    assert parser.error == ("open /d/x: permission denied; "
                            "Warning: at least one source file could not be read")
    old = BackupOutput()
    old.feed(b'{"message_type":"error","error":{"Op":"open","Path":"/d/x","Err":13},'
             b'"during":"archival","item":"/d/x"}\nWarning: at least one source file could not '
             b'be read\n', "stderr")
    assert old.error == "open /d/x: errno 13; Warning: at least one source file could not be read"
    fatal = BackupOutput()
    fatal.feed(b"Fatal: wrong password or no key found\n", "stderr")
    assert fatal.error == "Fatal: wrong password or no key found"


def test_skip_if_unchanged_summary_quirk_of_018() -> None:
    parser = BackupOutput()
    parser.feed(b'{"message_type":"summary","files_new":0,"total_duration":-9223372036.85,'
                b'"backup_end":"0001-01-01T00:00:00Z"}\n', "stdout")
    assert parser.stats == {"files_new": 0}


def test_a_damaged_summary_never_makes_the_snapshot_id_a_number() -> None:
    """Found by the mixed-garbage fuzzer: a bit flip turned `"snapshot_id":"…"` into a number,
    which the summary took as a numeric stat."""
    parser = BackupOutput()
    parser.feed(b'{"message_type":"summary","files_new":1,"snapshot_id":-2.1e16}\n', "stdout")
    assert parser.stats == {"files_new": 1}


def test_forget_with_prune_reads_only_the_json_line() -> None:
    parser = ForgetOutput()
    out = (b'[{"tags":null,"host":"h","paths":["/d"],"keep":[{"id":"a"}],'
           b'"remove":[{"id":"b"},{"id":"c"}],"reasons":[]},'
           b'{"host":"h","paths":["/e"],"keep":[{"id":"d"}],"remove":null}]\n'
           b"[0:00] 100.00%  3 / 3 files deleted\nloading indexes...\n"
           b"[not json either\n")
    logged = parser.feed(out, "stdout").decode()
    assert parser.stats == {"snapshots_kept": 2, "snapshots_removed": 2, "groups": 2}
    assert logged.startswith("snapshots for (host [h], paths [/d]):\n\nkeep 1 snapshots:\n")
    assert "snapshots for (host [h], paths [/e]):" in logged and "remove 2 snapshots:" in logged
    # the text restic prints after the JSON line (with --prune) is logged as it came
    assert logged.endswith("[0:00] 100.00%  3 / 3 files deleted\nloading indexes...\n"
                           "[not json either\n")


def test_rclone_stats_from_either_version() -> None:
    for level in ("warning", "notice"):  # 1.60 says warning, 1.75 notice
        parser = RcloneOutput()
        line = json.dumps({"level": level, "msg": "\nTransferred: ...", "stats": {
            "bytes": 2048, "checks": 1, "deletes": 0, "errors": 0, "renames": 0,
            "totalBytes": 4096, "totalTransfers": 4, "transfers": 2, "elapsedTime": 0.5,
            "eta": None, "speed": 0}}).encode() + b"\n"
        parser.feed(line, "stderr")
        assert parser.stats == {"transferred_bytes": 2048, "transfers": 2, "checks": 1,
                                "deletes": 0, "renames": 0, "errors": 0, "total_bytes": 4096,
                                "total_transfers": 4, "elapsed_seconds": 0.5}
        assert parser.progress()["percent_done"] == 0.5


def test_run_ids_are_version_4_uuids() -> None:
    import uuid

    from runner.engine.record import new_run_id

    ids = {new_run_id() for _ in range(1000)}
    assert len(ids) == 1000
    for run_id in list(ids)[:50]:
        parsed = uuid.UUID(run_id)
        assert parsed.version == 4 and str(parsed) == run_id


def test_018_summary_says_what_it_stored_and_a_dry_run_what_it_would_add() -> None:
    parser = BackupOutput()
    logged = parser.feed(b'{"message_type":"summary","files_new":0,"files_changed":0,'
                         b'"files_unmodified":3,"dirs_new":0,"dirs_changed":0,'
                         b'"dirs_unmodified":2,"data_added":0,"data_added_packed":0,'
                         b'"total_files_processed":3,"total_bytes_processed":3747,'
                         b'"total_duration":3725.5,"snapshot_id":"' + b"d3d8ba59" * 8 + b'"}\n',
                         "stdout")
    assert logged.decode().splitlines() == [
        "",
        "Files:           0 new,     0 changed,     3 unmodified",
        "Dirs:            0 new,     0 changed,     2 unmodified",
        "Added to the repository: 0 B   (0 B   stored)",
        "",
        "processed 3 files, 3.659 KiB in 1:02:05",
        "snapshot d3d8ba59 saved"]
    dry = BackupOutput().feed(b'{"message_type":"summary","data_added":1048576,'
                              b'"data_added_packed":2000,"snapshot_id":"abc","dry_run":true}\n',
                              "stdout").decode()
    assert "Would add to the repository: 1.000 MiB (1.953 KiB stored)" in dry
    assert "saved" not in dry


def test_errors_are_logged_as_restic_says_them() -> None:
    parser = BackupOutput()
    logged = parser.feed(
        b'{"message_type":"error","error":{"message":"open /d/x: permission denied"},'
        b'"during":"archival","item":"/d/x"}\n'
        b'{"message_type":"exit_error","code":10,"message":"Fatal: repository does not exist:'
        b' unable to open config file\\nIs there a repository at the following location?"}\n',
        "stderr")
    # restic's messages on one line each: a newline in them is written `\n`, so that a file
    # name cannot forge a line (tests/runner/engine/test_control_characters.py)
    assert logged == (b"error: open /d/x: permission denied\n"
                      b"Fatal: repository does not exist: unable to open config file\\n"
                      b"Is there a repository at the following location?\n")


def test_check_018_summary_as_its_text() -> None:
    ok = CheckOutput().feed(b'{"message_type":"summary","num_errors":0,"broken_packs":null}\n',
                            "stdout")
    assert ok == b"no errors were found\n"
    bad = CheckOutput()
    assert bad.feed(b'{"message_type":"summary","num_errors":2}\n', "stdout") == \
        b"2 errors were found\n"
    assert bad.stats == {"errors_found": 2}


def test_rclone_json_log_lines_read_like_its_text_log() -> None:
    parser = RcloneOutput()
    logged = parser.feed(
        b'{"level":"info","msg":"Copied (new)","object":"sub/c","objectType":"*local.Object",'
        b'"source":"operations/operations.go:566","time":"2026-12-06T14:48:23.981745+00:00"}\n'
        b'{"level":"warning","msg":"\\nTransferred:   \\t   24 B / 24 B, 100%\\n\\n",'
        b'"stats":{"bytes":24,"transfers":3},"time":"2026-12-06T14:48:23.981876+00:00"}\n'
        b'2026/12/06 14:48:24 plain text stays\n', "stderr")
    assert logged == (b"2026/12/06 14:48:23 INFO  : sub/c: Copied (new)\n"
                      b"2026/12/06 14:48:23 NOTICE: \nTransferred:   \t   24 B / 24 B, 100%\n"
                      b"2026/12/06 14:48:24 plain text stays\n")
    assert parser.stats == {"transferred_bytes": 24, "transfers": 3}


def test_a_summary_of_an_unknown_kind_stays_json() -> None:
    """prune and unlock print no JSON summary; if one came, it is logged as it came."""
    line = b'{"message_type":"summary","x":1}\n'
    assert ResticOutput().feed(line, "stdout") == line


def test_a_restore_summary_as_restic_018_prints_it() -> None:
    parser = ResticOutput()
    assert parser.feed(b'{"message_type":"summary","total_files":7,"files_restored":7,'
                       b'"total_bytes":10,"bytes_restored":10}\n', "stdout") == \
        b"Summary: Restored 7 files/dirs (10 B) in 0:00\n"
    assert parser.feed(b'{"message_type":"summary","total_files":4,"files_restored":4,'
                       b'"files_skipped":3,"bytes_skipped":2048,"seconds_elapsed":65}\n',
                       "stdout") == \
        b"Summary: Restored 4 files/dirs (0 B) in 1:05, skipped 3 files/dirs 2.000 KiB\n"
