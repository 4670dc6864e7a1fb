#!/usr/bin/env python3
"""How fast does a run's output path go: pipe -> redactor -> parser -> masked run log?

A verbose restic backup of a million files prints hundreds of MB of JSON lines; the runner must
not slow restic down (target >= 100 MB/s). The tool here is `cat` of a file of realistic
`restic backup --json -v` lines (verbose_status with a status line every 200), supervised exactly
as a run's tool is (`runner.engine.process.supervise` + `runner.engine.runlog.RunLog` + the backup
parser), with
10 secrets registered. Baseline in the same run: the same `cat` into a plain Python pipe reader
that only counts bytes.

    .venv/bin/python bench/bench_output_path.py [--mb 200] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.engine.jobs.output import BackupOutput
from runner.engine.process import supervise
from runner.engine.runlog import RunLog
from security.masking import REGISTRY

TARGET_MB_S = 100.0


def make_output(path: Path, megabytes: int) -> int:
    status = ('{"message_type":"status","percent_done":0.5,"total_files":1000000,'
              '"files_done":500000,"total_bytes":99999999,"bytes_done":4999999}\n')
    lines = []
    for i in range(4000):
        lines.append(
            '{"message_type":"verbose_status","action":"unchanged","item":"/data/projects/'
            f'client-{i % 97}/src/module_{i}/file_{i:07d}.py","duration":0.0001,'
            f'"data_size":{i * 37},"metadata_size":0,"total_files":0}}\n')
        if i % 200 == 0:
            lines.append(status)
    block = "".join(lines).encode()
    with open(path, "wb") as f:
        written = 0
        while written < megabytes * 1_000_000:
            f.write(block)
            written += len(block)
    return written


def bare(path: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    while proc.stdout.read1(65536):
        pass
    proc.wait()
    return time.perf_counter() - started


def runner(path: Path, log_path: Path) -> float:
    started = time.perf_counter()
    parser = BackupOutput()
    with RunLog(log_path) as log:
        pipes = log.pipes(parser)
        outcome = supervise(("cat", str(path)), {"PATH": os.environ["PATH"]},
                            lambda data, stream: pipes[stream].feed(data))
        for pipe in pipes.values():
            pipe.close()
    assert outcome.exit_code == 0
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for i in range(10):
        REGISTRY.register(f"secret-value-{i}-{os.urandom(6).hex()}")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "restic-verbose.jsonl"
        size = make_output(source, args.mb)
        times: dict[str, list[float]] = {"bare": [], "runner": []}
        for i in range(args.rounds):
            for name in (("bare", "runner") if i % 2 == 0 else ("runner", "bare")):
                log_path = Path(tmp) / f"run-{i}.log"
                times[name].append(bare(source) if name == "bare" else runner(source, log_path))
                log_path.unlink(missing_ok=True)
    result = {name: {"median_s": statistics.median(t), "mb_s": size / 1e6 / statistics.median(t)}
              for name, t in times.items()}
    result["bytes"] = size
    result["target_mb_s"] = TARGET_MB_S
    result["ratio"] = result["runner"]["median_s"] / result["bare"]["median_s"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"output path: {size / 1e6:.0f} MB of restic -v JSON lines, 10 secrets registered, "
              f"median of {args.rounds}")
        print(f"{'side':<28}{'median s':>10}{'MB/s':>10}")
        print(f"{'bare pipe read (baseline)':<28}{result['bare']['median_s']:>10.2f}"
              f"{result['bare']['mb_s']:>10.0f}")
        print(f"{'runner: redact+parse+log':<28}{result['runner']['median_s']:>10.2f}"
              f"{result['runner']['mb_s']:>10.0f}")
        ok = "ok" if result["runner"]["mb_s"] >= TARGET_MB_S else "MISSED"
        print(f"target >= {TARGET_MB_S:.0f} MB/s: {ok}; ratio runner/bare "
              f"{result['ratio']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
