"""Hostile tool output: the restic and rclone parsers (runner/engine/jobs/output.py) fed arbitrary
bytes,
arbitrary JSON lines, and real lines from restic 0.14, restic 0.18 and rclone 1.60/1.75 (captured
from the real binaries at the start of this module) mixed with garbage, truncated and bit-flipped,
cut into random blocks and passed through the run log's StreamPipe (runner/engine/runlog.py), which
masks them, cuts them into whole lines and hands them to the parser, as during a run.

Properties: no exception; stats hold finite numbers (not booleans) where numbers are expected;
the same stream cut differently gives the same stats, errors, progress and log."""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.engine.jobs.output import (
    BACKUP_STATS,
    PROGRESS_FIELDS,
    RCLONE_STATS,
    BackupOutput,
    CheckOutput,
    ForgetOutput,
    OutputParser,
    RcloneOutput,
    ResticOutput,
    RestoreTestOutput,
)
from runner.engine.runlog import RunLog
from tests.support.fuzzing import fuzz, hard_deadline
from tests.support.paths import RCLONE_BINARIES, RESTIC_BINARIES
from tests.support.workspace import init_template

PARSERS: tuple[type[OutputParser], ...] = (OutputParser, ResticOutput, BackupOutput, CheckOutput,
                                           ForgetOutput, RcloneOutput, RestoreTestOutput)
STREAMS = ("stdout", "stderr")
Line = tuple[str, bytes]  # (stream, one line ending in b"\n")


# --------------------------------------------------------------------------- real output


def _lines(stream: str, data: bytes) -> list[Line]:
    return [(stream, line if line.endswith(b"\n") else line + b"\n")
            for line in data.splitlines(keepends=True)]


def _run(argv: list[str | Path], env: dict[str, str], cwd: Path) -> list[Line]:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=120)
    return _lines("stdout", done.stdout) + _lines("stderr", done.stderr)


def _restic_corpus(version: str, binary: Path, root: Path, data: Path) -> dict[str, list[Line]]:
    (root / f"restic-{version}").mkdir()
    base = init_template(binary, root / f"restic-{version}")
    wrong = base / "wrong-password"
    wrong.write_text("not the password\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(base), "RESTIC_REPOSITORY": str(base / "repo"),
           "RESTIC_PASSWORD_FILE": str(base / "password"),
           "RESTIC_CACHE_DIR": str(base / "cache"), "RESTIC_PROGRESS_FPS": "60"}
    name = f"restic-{version}"
    return {
        f"{name}-backup": _run([binary, "backup", "--json", data], env, root),
        f"{name}-backup-missing": _run(
            [binary, "backup", "--json", data / "missing", data / "small.txt"], env, root),
        f"{name}-forget": _run([binary, "forget", "--json", "--keep-last", "1"], env, root),
        f"{name}-check": _run([binary, "check", "--json"], env, root),
        f"{name}-wrong-password": _run([binary, "snapshots", "--json"],
                                       env | {"RESTIC_PASSWORD_FILE": str(wrong)}, root),
    }


def _rclone_corpus(version: str, binary: Path, root: Path, data: Path) -> dict[str, list[Line]]:
    env = {"PATH": os.environ["PATH"], "HOME": str(root), "RCLONE_CONFIG": "/dev/null"}
    return {
        f"rclone-{version}-sync": _run(
            [binary, "sync", data, root / f"copy-{version}", "--use-json-log", "--stats",
             "100ms", "-v"], env, root),
        f"rclone-{version}-missing": _run(
            [binary, "sync", root / "missing", root / "nowhere", "--use-json-log"], env, root),
    }


@pytest.fixture(scope="module")
def real_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Line]]:
    """What the real tools print, by source `<tool>-<version>-<command>` (each restic command
    costs ~0.7 s of key derivation: the versions run side by side)."""
    root = tmp_path_factory.mktemp("real-output")
    data = root / "data"
    data.mkdir()
    (data / "big.bin").write_bytes(os.urandom(2_000_000))  # big enough for status lines
    (data / "small.txt").write_text("small\n")
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [pool.submit(_restic_corpus, v, b, root, data) for v, b in RESTIC_BINARIES.items()]
        jobs += [pool.submit(_rclone_corpus, v, b, root, data) for v, b in RCLONE_BINARIES.items()]
        out = {name: lines for job in jobs for name, lines in job.result().items()}
    summaries = [line for source, lines in out.items() if "backup" in source
                 for _, line in lines if b'"message_type":"summary"' in line]
    assert len(summaries) >= 4, f"no backup summaries captured: {out}"
    assert any(b'"stats":' in line for source, lines in out.items() if "rclone" in source
               for _, line in lines), "no rclone stats captured"
    return out


# --------------------------------------------------------------------------- helpers


def feed(parser: OutputParser, lines: list[Line], cuts: list[int], tmp: Path) -> bytes:
    """Feed the lines through the real StreamPipe (mask, cut into whole lines, parse, log), the
    bytes of each stream cut into blocks at `cuts`; return what was logged."""
    log_path = tmp / f"run-{os.getpid()}.log"
    log_path.unlink(missing_ok=True)
    with hard_deadline(), RunLog(log_path) as log:
        pipes = log.pipes(parser)
        for stream, group in itertools.groupby(lines, key=lambda item: item[0]):
            data = b"".join(line for _, line in group)
            bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
            for start, end in itertools.pairwise(bounds):
                pipes[stream].feed(data[start:end])
        for pipe in pipes.values():
            pipe.close()
        parser.finish(0)
    return log_path.read_bytes()


def state(parser: OutputParser) -> dict[str, Any]:
    """Everything a run keeps from a parser."""
    with hard_deadline():
        return {"stats": copy.deepcopy(parser.stats), "errors": list(parser.errors),
                "error": parser.error, "progress": parser.progress()}


def is_number(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def check_types(parser: OutputParser) -> None:
    """Stats and progress hold numbers where numbers are expected (the run record's schema:
    every stat a number or a string; JSON has no NaN or Infinity)."""
    stats, progress = parser.stats, parser.progress()
    assert isinstance(stats, dict)
    assert all(isinstance(e, str) for e in parser.errors)
    numeric: set[str] = set()
    if isinstance(parser, BackupOutput):
        assert set(stats) <= set(BACKUP_STATS), stats
        numeric = set(BACKUP_STATS) - {"snapshot_id"}
        assert isinstance(stats.get("snapshot_id", ""), str), stats
    elif isinstance(parser, CheckOutput):
        numeric = {"errors_found", "broken_packs"}
        assert set(stats) <= numeric, stats
    elif isinstance(parser, ForgetOutput):
        numeric = {"snapshots_kept", "snapshots_removed", "groups"}
        assert set(stats) <= numeric, stats
    elif isinstance(parser, RcloneOutput):
        numeric = set(RCLONE_STATS.values())
        assert set(stats) <= numeric, stats
    for name in numeric & set(stats):
        assert is_number(stats[name]), (name, stats[name])
    if progress is not None:
        if isinstance(parser, RcloneOutput):
            assert all(v is None or is_number(v) for v in progress.values()), progress
        else:
            assert set(progress) <= set(PROGRESS_FIELDS), progress
            assert all(is_number(v) for v in progress.values()), progress


def equivalent(a: Any, b: Any) -> bool:
    """Equality that counts NaN equal to NaN (a NaN stat is reported by check_types)."""
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True,
                                                                       default=repr)


def assert_split_invariant(cls: type[OutputParser], lines: list[Line], cuts_a: list[int],
                           cuts_b: list[int], tmp: Path) -> OutputParser:
    """Feed the same stream cut two ways: the same result, and sound types. Returns a parser."""
    first, second = cls(), cls()
    logged_a = feed(first, lines, cuts_a, tmp)
    logged_b = feed(second, lines, cuts_b, tmp)
    check_types(first)
    assert logged_a == logged_b
    state_a, state_b = state(first), state(second)
    assert equivalent(state_a, state_b), (state_a, state_b)
    return first


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("output-fuzz")


# --------------------------------------------------------------------------- strategies

CUTS = st.lists(st.integers(min_value=0, max_value=5000), max_size=12)
PARSER = st.sampled_from(PARSERS)
KEYS = st.sampled_from(["message_type", "error", "message", "item", "during", "code",
                        "num_errors", "broken_packs", "keep", "remove", "stats", "level", "msg",
                        "restore_test", *BACKUP_STATS, *PROGRESS_FIELDS, *RCLONE_STATS, "Op",
                        "Path", "Err"]) | st.text(max_size=12)
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
           | st.sampled_from(["summary", "status", "error", "exit_error", "verbose_status"]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(KEYS, inner, max_size=5), max_leaves=16)


@st.composite
def json_line(draw: st.DrawFn) -> bytes:
    """One line of JSON shaped like restic's or rclone's, with values of any type."""
    doc: Any = draw(st.dictionaries(KEYS, JSON_VALUES, max_size=8))
    shape = draw(st.sampled_from(["restic", "rclone", "forget", "restore", "any"]))
    if shape == "restic":
        doc = {"message_type": draw(st.sampled_from(["summary", "status", "error",
                                                     "exit_error"])), **doc}
    elif shape == "rclone":
        doc = {"level": draw(st.sampled_from(["error", "info"])), "msg": draw(SCALARS),
               "stats": draw(st.dictionaries(st.sampled_from(list(RCLONE_STATS)), JSON_VALUES)
                             | JSON_VALUES), **doc}
    elif shape == "forget":
        doc = draw(st.lists(st.dictionaries(st.sampled_from(["keep", "remove", "tags"]),
                                            JSON_VALUES, max_size=3) | JSON_VALUES, max_size=4))
    elif shape == "restore":
        doc = {"restore_test": draw(st.dictionaries(KEYS, JSON_VALUES, max_size=6))}
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=draw(st.booleans()))
    return text.replace("\n", " ").encode() + b"\n"


TEXT_LINES = st.sampled_from([
    b"Fatal: unable to open config file\n", b"Warning: at least one source file could not be "
    b"read\n", b"ERROR : object: Failed to copy: permission denied\n", b"unable to create lock\n",
    b"repository is already locked by PID 7\n", b"  some error happened\n", b"\n", b"\r\n",
    b"[0:01] 50.00%  1 / 2 snapshots\n", b"no errors were found\n", b'[{"keep":\n'])
GARBAGE_LINES = (st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"") + b"\n")
                 | st.text(max_size=80).map(lambda t: t.replace("\n", "").encode() + b"\n"))
ANY_LINE = json_line() | TEXT_LINES | GARBAGE_LINES


def _mangled(line: bytes, how: int, where: int) -> bytes:
    body = line.rstrip(b"\n")
    if not body:
        return line
    where %= len(body)
    if how == 0:  # truncated
        return body[:where] + b"\n"
    if how == 1:  # one bit flipped (never into a newline)
        flipped = body[where] ^ (1 << (where % 8))
        return body[:where] + bytes([flipped if flipped != 0x0A else 0x0B]) + body[where + 1:] \
            + b"\n"
    return body + body[where:] + b"\n"  # a tail repeated


# --------------------------------------------------------------------------- properties


@fuzz(300)
@given(cls=PARSER, stream=st.sampled_from(STREAMS), data=st.binary(max_size=3000),
       cuts_a=CUTS, cuts_b=CUTS)
def test_arbitrary_bytes_cut_anywhere(tmp: Path, cls: type[OutputParser], stream: str,
                                      data: bytes, cuts_a: list[int], cuts_b: list[int]) -> None:
    lines = [(stream, data + b"\n")] if data else []
    assert_split_invariant(cls, lines, cuts_a, cuts_b, tmp)


@fuzz(300)
@given(cls=PARSER, lines=st.lists(st.tuples(st.sampled_from(STREAMS), ANY_LINE), max_size=25),
       cuts_a=CUTS, cuts_b=CUTS)
def test_json_lines_of_any_shape(tmp: Path, cls: type[OutputParser], lines: list[Line],
                                 cuts_a: list[int], cuts_b: list[int]) -> None:
    assert_split_invariant(cls, lines, cuts_a, cuts_b, tmp)


@fuzz(200)
@given(data=st.data(), cuts_a=CUTS, cuts_b=CUTS)
def test_real_lines_mixed_with_garbage_truncated_and_flipped(
        real_output: dict[str, list[Line]], tmp: Path, data: st.DataObject, cuts_a: list[int],
        cuts_b: list[int]) -> None:
    real = [line for lines in real_output.values() for line in lines]
    picked = data.draw(st.lists(st.sampled_from(real), min_size=1, max_size=20))
    mangle = st.tuples(st.integers(0, 3), st.integers(0, 10_000))
    mixed: list[Line] = []
    for stream, line in picked:
        how, where = data.draw(mangle)
        mixed.append((stream, line if how == 3 else _mangled(line, how, where)))
        mixed += data.draw(st.lists(st.tuples(st.just(stream), ANY_LINE), max_size=2))
    for cls in PARSERS:
        assert_split_invariant(cls, mixed, cuts_a, cuts_b, tmp)


def _summary_stats(line: bytes) -> dict[str, Any]:
    doc = json.loads(line)
    stats = {k: doc[k] for k in BACKUP_STATS if k in doc}
    return stats


@fuzz(100)
@given(data=st.data(), cuts=CUTS)
def test_garbage_around_a_real_backup_does_not_change_its_stats(
        real_output: dict[str, list[Line]], tmp: Path, data: st.DataObject,
        cuts: list[int]) -> None:
    """Lines that carry no restic marker, between the real lines of a backup, change nothing: the
    stats are those of the real summary line (can fail: a parser that picks numbers from the
    wrong line, or loses the summary in a big block)."""
    version = data.draw(st.sampled_from(sorted(RESTIC_BINARIES)))
    lines = real_output[f"restic-{version}-backup"]
    summary = next(line for _, line in lines if b'"message_type":"summary"' in line)
    noise = GARBAGE_LINES | TEXT_LINES
    mixed: list[Line] = []
    for stream, line in lines:
        mixed += [(stream, n) for n in data.draw(st.lists(noise, max_size=3))
                  if b"message_type" not in n]
        mixed.append((stream, line))
    parser = assert_split_invariant(BackupOutput, mixed, cuts, [], tmp)
    assert parser.stats == _summary_stats(summary)
    assert int(parser.stats["snapshot_id"], 16) >= 0  # 0.14: the short id, 0.18: the full one


def test_real_output_is_understood(real_output: dict[str, list[Line]], tmp: Path) -> None:
    """The corpus the fuzzers mix is what the parsers are for: each tool's lines give stats."""
    for version in RESTIC_BINARIES:
        backup = BackupOutput()
        feed(backup, real_output[f"restic-{version}-backup"], [], tmp)
        assert backup.stats["files_new"] == 2 and backup.progress() is not None, version
        forget = ForgetOutput()
        feed(forget, real_output[f"restic-{version}-forget"], [], tmp)
        # two snapshots of different paths (data, and data/small.txt): two groups, each kept
        assert forget.stats == {"snapshots_kept": 2, "snapshots_removed": 0, "groups": 2}, version
        wrong = ResticOutput()
        feed(wrong, real_output[f"restic-{version}-wrong-password"], [], tmp)
        assert wrong.error and "wrong password" in wrong.error, version
    for version in RCLONE_BINARIES:
        sync = RcloneOutput()
        feed(sync, real_output[f"rclone-{version}-sync"], [], tmp)
        assert sync.stats["transferred_bytes"] == 2_000_006, (version, sync.stats)
        missing = RcloneOutput()
        feed(missing, real_output[f"rclone-{version}-missing"], [], tmp)
        assert missing.error and "directory not found" in missing.error, version


# --------------------------------------------------------------------------- found by fuzzing
# Minimal examples of what the properties above found; each names the product line at fault.


@pytest.mark.parametrize("cls", PARSERS, ids=lambda c: c.__name__)
def test_deeply_nested_json_line_is_no_crash(tmp: Path, cls: type[OutputParser]) -> None:
    """json.loads raises RecursionError (not ValueError) past ~1000 levels; `_loads`
    (runner/engine/jobs/output.py:34) catches only ValueError."""
    nested = b"[" * 5000 + b"]" * 5000
    lines = [("stdout", b'{"message_type":"summary","x":' + nested + b"}\n"),
             ("stderr", b'{"message_type":"error","error":' + nested + b"}\n"),
             ("stderr", b'{"level":"error","stats":' + nested + b"}\n"),
             ("stdout", b'{"restore_test":' + nested + b"}\n"), ("stdout", nested + b"\n")]
    assert_split_invariant(cls, lines, [], [7], tmp)


@pytest.mark.parametrize("groups", [b'[{"keep":1}]', b'[{"remove":true}]', b'[{"keep":2.5}]'])
def test_forget_groups_of_the_wrong_shape_are_no_crash(tmp: Path, groups: bytes) -> None:
    """`len(group.get("keep") or [])` (runner/engine/jobs/output.py:201) on a number."""
    assert_split_invariant(ForgetOutput, [("stdout", groups + b"\n")], [], [3], tmp)


@pytest.mark.parametrize("stats", [b'{"bytes":0,"totalBytes":"5"}', b'{"bytes":"1","totalBytes":2}',
                                   b'{"bytes":[1],"totalBytes":{"a":1}}'])
def test_rclone_progress_of_non_numbers_is_no_crash(tmp: Path, stats: bytes) -> None:
    """RcloneOutput.progress (runner/engine/jobs/output.py:236) divides whatever `bytes` and
    `totalBytes` hold; the engine calls it while the run goes on."""
    assert_split_invariant(RcloneOutput, [("stderr", b'{"stats":' + stats + b"}\n")], [], [5],
                           tmp)


def test_rclone_text_error_does_not_depend_on_block_boundaries(tmp: Path) -> None:
    """A text error line is kept when its block holds no JSON stats, and lost when it shares a
    block with one: RcloneOutput.line (runner/engine/jobs/output.py:218) never looks at text
    lines."""
    lines = [("stderr", b"ERROR : config: failed to load\n"),
             ("stderr", b'{"level":"info","stats":{"bytes":1}}\n')]
    one_block = assert_split_invariant(RcloneOutput, lines, [], [31], tmp)
    assert one_block.error == "ERROR : config: failed to load"


def test_restore_test_stats_do_not_depend_on_block_boundaries(tmp: Path) -> None:
    """A line whose `restore_test` key is not its first was read only when its block also held
    a `{"restore_test"` marker elsewhere: RestoreTestOutput.line (runner/engine/jobs/output.py)
    took any
    JSON line of a block with the marker in it (found by the mixed-garbage fuzzer, seed
    3911070944). The verdict line is read; the other never is, however the stream is cut."""
    verdict = b'{"restore_test": {"files": 2, "verified": true}}\n'
    lines = [("stdout", verdict), ("stdout", b'{"x": 1, "restore_test": {}}\n')]
    one_block = assert_split_invariant(RestoreTestOutput, lines, [], [len(verdict)], tmp)
    assert one_block.stats == {"files": 2, "verified": True}


@pytest.mark.parametrize(("cls", "line"), [
    (CheckOutput, b'{"message_type":"summary","num_errors":true}'),
    (BackupOutput, b'{"message_type":"summary","files_new":NaN,"data_added":Infinity}'),
    (RcloneOutput, b'{"stats":{"bytes":true,"errors":false}}'),
    (ResticOutput, b'{"message_type":"status","percent_done":NaN}'),
], ids=["check-bool", "backup-nan", "rclone-bool", "status-nan"])
def test_booleans_and_non_finite_numbers_are_not_numbers(tmp: Path, cls: type[OutputParser],
                                                         line: bytes) -> None:
    """`isinstance(x, int)` is true for booleans (runner/engine/jobs/output.py:174 `num_errors`, 224
    rclone stats), and json.loads accepts NaN and Infinity (output.py:40 `_numbers`): the record
    would then carry `true` or `NaN`, which is no number in the run record's schema, and no JSON
    at all."""
    assert_split_invariant(cls, [("stdout", line + b"\n"), ("stderr", line + b"\n")], [], [],
                           tmp)

