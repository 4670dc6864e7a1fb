"""The output parsers on their own: status lines become progress, everything else is logged,
whatever the block boundaries."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.engine.jobs.output import BackupOutput, ForgetOutput, RcloneOutput


def status(n: int) -> bytes:
    return json.dumps({"message_type": "status", "percent_done": n / 100, "files_done": n,
                       "total_files": 100, "bytes_done": n * 10, "total_bytes": 1000},
                      separators=(",", ":")).encode() + b"\n"


VERBOSE = b'{"message_type":"verbose_status","action":"new","item":"/d/f","duration":0.1}\n'
SUMMARY = (b'{"message_type":"summary","files_new":3,"files_changed":1,"files_unmodified":2,'
           b'"dirs_new":1,"data_added":512,"total_files_processed":6,'
           b'"total_bytes_processed":600,"total_duration":1.5,"snapshot_id":"abcd1234"}\n')
TEXT = b'not json, mentions {"message_type":"status" in the middle\n'

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
    assert logged == b"".join(line for line in lines if not line.startswith(b'{"message_type":'
                                                                           b'"status"'))
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
    assert parser.feed(out, "stdout") == out
    assert parser.stats == {"snapshots_kept": 2, "snapshots_removed": 2, "groups": 2}


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
