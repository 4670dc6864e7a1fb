#!/usr/bin/env python3
"""What restic-runner adds on top of restic: per-run overhead and CLI start-up.

1. Run overhead: a ~200 MB / ~2,000-file source is backed up once, then N rounds
   (interleaved, alternating which goes first) of
     (a) bare restic with the argv restic-runner uses: restic backup --json --tag=bench -- SRC
     (b) restic-runner run bench --config CFG
   with the same environment. Reported: medians, ratio runner/bare (target <= 1.05,
   aim 1.02) and the added milliseconds.
2. Start-up: `restic-runner --version`, median of 20 runs (target <= 150 ms), next to
   `python -c pass` as the interpreter's own floor.

Standard library only. Usage:
    .venv/bin/python bench/bench_overhead.py [--runs N] [--restic PATH] [--keep] [--json]
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RATIO_TARGET = 1.05
RATIO_AIM = 1.02
STARTUP_TARGET_MS = 150.0
STARTUP_RUNS = 20
JOB = "bench"


class BenchError(Exception):
    pass


def toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string of a path is a valid TOML basic string


def make_source(src: Path, n_files: int, total_mb: float, seed: int = 2026) -> tuple[int, int]:
    """Half random .bin, half compressible .txt, spread over 40 directories."""
    rng = random.Random(seed)
    dirs = [src / f"dir{d:02d}" / f"sub{s}" for d in range(20) for s in range(2)]
    for d in dirs:
        d.mkdir(parents=True)
    words = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(400)
    ]
    text_pool = " ".join(rng.choices(words, k=400_000)).encode()  # ~2 MB of compressible text
    avg = total_mb * 1_000_000 / max(n_files, 1)
    total = 0
    for i in range(n_files):
        size = max(1, int(avg * rng.uniform(0.5, 1.5)))
        path = dirs[i % len(dirs)] / f"f{i:04d}.{'bin' if i % 2 == 0 else 'txt'}"
        if i % 2 == 0:
            data = os.urandom(size)
        else:
            header = f"file {i}\n".encode()
            start = rng.randrange(0, max(1, len(text_pool) - size))
            data = (header + text_pool[start : start + size])[:size]
        path.write_bytes(data)
        total += len(data)
    return n_files, total


def timed(argv: list[str], env: dict[str, str] | None, what: str) -> float:
    """Run argv, fail loudly on a non-zero exit, return wall seconds."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-2000:]
        raise BenchError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{err}")
    return elapsed


def stats_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "median_ms": round(statistics.median(ms), 1),
        "min_ms": round(min(ms), 1),
        "max_ms": round(max(ms), 1),
        "runs": len(ms),
    }


def version_of(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except OSError as exc:
        return f"unavailable ({exc})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"


def bench_overhead(args: argparse.Namespace, restic: str, runner: str | None, log) -> dict:
    work = Path(tempfile.mkdtemp(prefix="restic-runner-bench-"))
    result: dict = {"workdir": str(work)}
    try:
        src, repo, cache, home = (work / n for n in ("source", "repo", "cache", "home"))
        secrets = work / "secrets"
        home.mkdir()
        secrets.mkdir(mode=0o700)
        pw = secrets / "restic-password"
        fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(24).hex() + "\n")

        t0 = time.perf_counter()
        n, size = make_source(src, args.files, args.mb)
        log(f"source: {n} files, {size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s")
        result["source"] = {"files": n, "bytes": size}

        path = os.pathsep.join([str(Path(restic).parent), os.environ.get("PATH", "/usr/bin:/bin")])
        env = {
            "RESTIC_REPOSITORY": str(repo),
            "RESTIC_PASSWORD_FILE": str(pw),
            "RESTIC_CACHE_DIR": str(cache),
            "HOME": str(home),
            "PATH": path,
            # what restic-runner sets by default ([restic] progress_fps), so both sides run
            # the very same restic invocation and the ratio is the runner's cost alone
            "RESTIC_PROGRESS_FPS": "2",
        }
        # the argv runner/jobs builds for a backup job: restic backup --json --tag=T -- PATHS
        bare = [restic, "backup", "--json", f"--tag={JOB}", "--", str(src)]
        result["bare_argv"] = bare
        log(f"init: {timed([restic, 'init'], env, 'restic init'):.2f} s")
        log(f"first backup: {timed(bare, env, 'first backup'):.2f} s")

        candidates = {"bare": bare}
        if runner:
            cfg = work / "restic-runner.toml"
            cfg.write_text(
                "# written by bench/bench_overhead.py\n"
                'state_dir = "state"\n'
                f"hostname = {toml_str(socket.gethostname())}\n"
                "\n[restic]\n"
                f"binary = {toml_str(restic)}\n"
                f"repository = {toml_str(str(repo))}\n"
                f"password_file = {toml_str(str(pw))}\n"
                f"cache_dir = {toml_str(str(cache))}\n"
                f"\n[jobs.{JOB}]\n"
                'kind = "backup"\n'
                f"paths = [{toml_str(str(src))}]\n"
                f'tags = ["{JOB}"]\n'
                'timeout = "10m"\n'
            )
            candidates["runner"] = [runner, "run", JOB, "--config", str(cfg)]
            result["runner_argv"] = candidates["runner"]

        for name, argv in candidates.items():  # warm-up, not measured
            timed(argv, env, f"warm-up {name}")
        times: dict[str, list[float]] = {name: [] for name in candidates}
        order = list(candidates)
        for i in range(args.runs):
            for name in order if i % 2 == 0 else order[::-1]:
                times[name].append(timed(candidates[name], env, name))
            log(
                f"round {i + 1}/{args.runs}: "
                + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in times.items())
            )
        for name, ts in times.items():
            result[name] = stats_ms(ts)
        if runner:
            b, r = result["bare"]["median_ms"], result["runner"]["median_ms"]
            result["ratio"] = round(r / b, 4)
            result["added_ms"] = round(r - b, 1)
            result["ratio_target"] = RATIO_TARGET
            result["ratio_aim"] = RATIO_AIM
            result["ratio_ok"] = result["ratio"] <= RATIO_TARGET
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            result["workdir"] = None
    return result


def bench_startup(runner: str | None, runs: int) -> dict:
    cases = {"python -c pass": [sys.executable, "-c", "pass"]}
    if runner:
        cases["restic-runner --version"] = [runner, "--version"]
    result = {}
    for name, argv in cases.items():
        timed(argv, None, name)  # warm the page cache
        result[name] = stats_ms([timed(argv, None, name) for _ in range(runs)])
    if runner:
        rr = result["restic-runner --version"]
        rr["target_ms"] = STARTUP_TARGET_MS
        rr["ok"] = rr["median_ms"] <= STARTUP_TARGET_MS
    return result


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths if w).rstrip())
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def render(doc: dict) -> str:
    o = doc["overhead"]
    src = o["source"]
    out = [
        f"restic:        {doc['restic_version']} ({doc['restic']})",
        f"restic-runner: {doc['runner_version']}",
        "",
        f"1. Run overhead: backup with no changes of {src['files']} files / "
        f"{src['bytes'] / 1e6:.0f} MB, {o['bare']['runs']} interleaved rounds (wall time)",
        "",
    ]
    rows = [["", "median", "min", "max"]]
    labels = {"bare": "bare restic backup", "runner": f"restic-runner run {JOB}"}
    for key in ("bare", "runner"):
        if key in o:
            s = o[key]
            cells = [f"{s[k]:.0f} ms" for k in ("median_ms", "min_ms", "max_ms")]
            rows.append([labels[key], *cells])
    out.append(table(rows))
    if "ratio" in o:
        out += [
            "",
            table(
                [
                    ["", "value", "target", ""],
                    [
                        "ratio runner/bare",
                        f"{o['ratio']:.3f}",
                        f"<= {RATIO_TARGET:.2f} (aim {RATIO_AIM:.2f})",
                        verdict(o["ratio_ok"]),
                    ],
                    ["added per run", f"{o['added_ms']:+.0f} ms", "", ""],
                ]
            ),
        ]
    else:
        out += ["", "(runner half skipped: --bare-only)"]
    st = doc["startup"]
    rows = [["", "median", "min", "max", "target", ""]]
    for name, s in st.items():
        target = f"<= {s['target_ms']:.0f} ms" if "target_ms" in s else "baseline"
        rows.append(
            [name]
            + [f"{s[k]:.0f} ms" for k in ("median_ms", "min_ms", "max_ms")]
            + [target, verdict(s["ok"]) if "ok" in s else ""]
        )
    out += ["", f"2. Start-up: median of {STARTUP_RUNS} runs", "", table(rows)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7, help="measured rounds (default 7, minimum 5)")
    p.add_argument("--restic", default=shutil.which("restic"), help="restic binary (default: PATH)")
    p.add_argument(
        "--runner",
        default=str(ROOT / ".venv" / "bin" / "restic-runner"),
        help="restic-runner executable (default: .venv/bin/restic-runner)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--bare-only",
        action="store_true",
        help="measure bare restic only (to test the harness without restic-runner)",
    )
    p.add_argument("--files", type=int, default=2000, help="files in the source (default 2000)")
    p.add_argument("--mb", type=float, default=200, help="source size in MB (default 200)")
    args = p.parse_args(argv)
    if args.runs < 5:
        p.error("--runs must be at least 5")
    if not args.restic or not shutil.which(args.restic):
        p.error(f"restic not found: {args.restic!r} (use --restic PATH)")
    restic = str(Path(shutil.which(args.restic)).resolve())
    runner = None
    if not args.bare_only:
        runner = args.runner if os.sep in args.runner else shutil.which(args.runner)
        if not runner or not os.access(runner, os.X_OK):
            p.error(f"restic-runner not found: {args.runner!r} (make bootstrap, or --bare-only)")
        runner = str(Path(runner).absolute())

    def log(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    doc = {
        "restic": restic,
        "restic_version": version_of([restic, "version"]),
        "runner_version": version_of([runner, "--version"]) if runner else "skipped (--bare-only)",
    }
    try:
        doc["overhead"] = bench_overhead(args, restic, runner, log)
        doc["startup"] = bench_startup(runner, STARTUP_RUNS)
    except BenchError as exc:
        log(str(exc))
        return 1
    print(json.dumps(doc, indent=2) if args.json else render(doc))
    missed = not doc["overhead"].get("ratio_ok", True) or not all(
        s.get("ok", True) for s in doc["startup"].values()
    )
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
