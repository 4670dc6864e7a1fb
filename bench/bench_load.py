#!/usr/bin/env python3
"""Load on `restic-runner serve`, with real restic and real repositories:

1. burst: N (1,000) simultaneous trigger POSTs of one job, each on its own connection, released
   together. restic-runner must start exactly one run and answer no 5xx (the rest get 409).
   Baseline in the same run: Debian's `webhook` (adnanh/webhook) taking the same burst on a hook
   without rules. Reported: statuses, time to answer them all, p50/p99 per request.
2. twenty at once: 20 backup jobs on 20 repositories started together, restic `--verbose=2`
   (one JSON line per file). Meanwhile one client polls the API (GET /jobs and GET /runs/<id>)
   on a keep-alive connection; the same poll on the idle service is the baseline. Target: API
   p99 <= 100 ms while they run; no log line lost (every file's line in its run's log, once).
3. history: /runs with 100,000 runs in the history (inserted directly into history.db, cloned
   from a real run record), against the same queries with 100 runs. Target: p99 <= 20 ms.

    .venv/bin/python bench/bench_load.py [--json] [--check] [--keep] [--burst 1000]
                                         [--jobs 20] [--files 1000] [--history 100000]

Loopback only. Progress goes to stderr, the tables (or --json) to stdout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import (  # the shared bench helpers (bench/ is on sys.path)
    Processes,
    free_port,
    http_ok,
    pct,
    table,
    tcp_open,
    verdict,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
RUNNER = str(ROOT / ".venv" / "bin" / "restic-runner")
RESTIC = str(ROOT / ".tools" / "restic-0.18" / "restic")
WEBHOOK = "/usr/bin/webhook"
TOKEN = "rrt_bench-load-0123456789abcdefghijkl"
TARGET_BUSY_P99_MS = 100.0
TARGET_HISTORY_P99_MS = 20.0


def log(message: str) -> None:
    print(f"bench_load: {message}", file=sys.stderr, flush=True)


def ms(values: list[float]) -> dict[str, float]:
    values_ms = [v * 1000 for v in values]
    return {"n": len(values_ms), "p50_ms": pct(values_ms, 50), "p99_ms": pct(values_ms, 99),
            "max_ms": max(values_ms)}


# --- a restic-runner service -----------------------------------------------------------------

class Service:
    def __init__(self, procs: Processes, root: Path, jobs: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.port = root, free_port()
        token = root / "client.token"
        token.write_text(TOKEN + "\n")
        token.chmod(0o600)
        (root / "restic-runner.toml").write_text(f"""\
state_dir = "{root / 'state'}"
hostname = "bench"
[server]
bind = "127.0.0.1:{self.port}"
workers = 2
[restic]
binary = "{RESTIC}"
password_file = "{root.parent / 'password'}"
cache_dir = "{root / 'cache'}"
[[clients]]
name = "bench"
token_file = "{token}"
jobs = ["*"]
{jobs}""")
        self.log_path = root / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "RCLONE_"))}
        env["RESTIC_RUNNER_CONFIG"] = str(root / "restic-runner.toml")
        self.proc = procs.start([RUNNER, "serve"], log_path=self.log_path, env=env, cwd=root)
        wait_until(http_ok(self.port, "/healthz"), "restic-runner serve", self.proc,
                   self.log_path)

    def get(self, path: str, conn: http.client.HTTPConnection | None = None
            ) -> tuple[int, bytes]:
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
            response = c.getresponse()
            return response.status, response.read()
        finally:
            if conn is None:
                c.close()

    def post(self, path: str) -> tuple[int, dict[str, Any]]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request("POST", path, headers={"Authorization": f"Bearer {TOKEN}"})
            response = c.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            c.close()

    def wait_ended(self, run_ids: list[str], timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        pending = set(run_ids)
        while pending and time.monotonic() < deadline:
            pending = {r for r in pending if self.get(f"/runs/{r}/result")[0] != 200}
            time.sleep(0.5)
        if pending:
            raise SystemExit(f"{len(pending)} runs did not end within {timeout:.0f} s")


def new_repository(path: Path, password: Path) -> None:
    subprocess.run([RESTIC, "init", "-q", "-r", str(path), "--password-file", str(password)],
                   check=True, capture_output=True, env={"PATH": os.environ["PATH"],
                                                         "HOME": str(path.parent)})


# --- part 1: burst -------------------------------------------------------------------------

def burst(port: int, path: str, count: int, headers: dict[str, str]) -> dict[str, Any]:
    """`count` connections opened, then one POST each, released by a barrier together."""
    barrier = threading.Barrier(count + 1)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    lock = threading.Lock()

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        outcome = "connect-error"
        try:
            conn.connect()
            barrier.wait(120)
            started = time.perf_counter()
            conn.request("POST", path, body=b"", headers=headers)
            response = conn.getresponse()
            response.read()
            took = time.perf_counter() - started
            outcome = str(response.status)
            with lock:
                latencies.append(took)
        except OSError as exc:
            outcome = type(exc).__name__
        finally:
            conn.close()
            with lock:
                statuses[outcome] += 1

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait(120)
    released = time.perf_counter()
    for thread in threads:
        thread.join(300)
    return {"statuses": dict(statuses), "all_answered_s": time.perf_counter() - released,
            **ms(latencies)}


def part_burst(procs: Processes, tmp: Path, count: int) -> dict[str, Any]:
    data = tmp / "burst-data"
    data.mkdir()
    (data / "blob.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    repo = tmp / "burst-repo"
    new_repository(repo, tmp / "password")
    service = Service(procs, tmp / "burst", f"""
[jobs.nightly]
kind = "backup"
repository = "{repo}"
paths = ["{data}"]
args = ["--limit-upload=2048"]
""")
    log(f"part 1: {count} simultaneous triggers of one job (restic-runner)")
    ours = burst(service.port, "/trigger/nightly", count,
                 {"Authorization": f"Bearer {TOKEN}"})
    _, body = service.get("/runs?job=nightly")
    runs = json.loads(body)["runs"]
    ours["runs_started"] = len(runs)
    if runs:
        service.post(f"/runs/{runs[0]['run_id']}/cancel")
        service.wait_ended([runs[0]["run_id"]])
    procs.stop(service.proc)

    log(f"part 1: {count} simultaneous POSTs (Debian webhook, no rule)")
    hooks = tmp / "webhook-burst.json"
    hooks.write_text(json.dumps([{"id": "burst", "execute-command": "/bin/true"}]))
    port = free_port()
    proc = procs.start([WEBHOOK, "-hooks", str(hooks), "-port", str(port), "-ip", "127.0.0.1"],
                       log_path=tmp / "webhook.log", env={**os.environ, "GOMAXPROCS": "2"})
    wait_until(tcp_open(port), "webhook", proc, tmp / "webhook.log")
    theirs = burst(port, "/hooks/burst", count, {})
    procs.stop(proc)
    return {"count": count, "restic_runner": ours, "webhook": theirs}


# --- part 2: twenty jobs at once -------------------------------------------------------------

def poll(service: Service, paths: list[str], stop: threading.Event, minimum: int = 0
         ) -> list[float]:
    """Latencies of GETs over one keep-alive connection until `stop` (and at least `minimum`)."""
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    latencies: list[float] = []
    i = 0
    while not stop.is_set() or len(latencies) < minimum:
        started = time.perf_counter()
        status, _ = service.get(paths[i % len(paths)], conn)
        latencies.append(time.perf_counter() - started)
        if status >= 500:
            raise SystemExit(f"GET {paths[i % len(paths)]} answered {status}")
        i += 1
        time.sleep(0.02)
    conn.close()
    return latencies


def lost_lines(service: Service, run_id: str, data: Path, files: int) -> tuple[int, int]:
    """(lost, duplicated) per-file verbose lines in the run's log."""
    _, body = service.get(f"/runs/{run_id}/log")
    seen = Counter(json.loads(line)["item"] for line in body.decode().splitlines()
                   if line.startswith('{"message_type":"verbose_status"'))
    expected = {str(data / f"f{i:05d}.txt") for i in range(files)}
    return len(expected - seen.keys()), sum(1 for item in expected if seen[item] > 1)


def part_concurrent(procs: Processes, tmp: Path, jobs: int, files: int) -> dict[str, Any]:
    log(f"part 2: preparing {jobs} repositories with {files} files each")
    template = tmp / "repo-template"
    new_repository(template, tmp / "password")
    blocks = []
    for n in range(jobs):
        data = tmp / f"data{n:02d}"
        data.mkdir()
        for i in range(files):
            (data / f"f{i:05d}.txt").write_text(f"job {n} file {i}\n" * 20)
        shutil.copytree(template, tmp / f"repo{n:02d}")
        blocks.append(f'[jobs.j{n:02d}]\nkind = "backup"\nrepository = "{tmp}/repo{n:02d}"\n'
                      f'paths = ["{data}"]\nargs = ["--verbose=2"]\n')
    service = Service(procs, tmp / "twenty", "\n".join(blocks))
    stop = threading.Event()
    stop.set()
    idle = poll(service, ["/jobs", "/runs?limit=20"], stop, minimum=200)

    log(f"part 2: {jobs} jobs at once, polling the API meanwhile")
    started = time.perf_counter()
    run_ids = []
    for n in range(jobs):
        status, doc = service.post(f"/trigger/j{n:02d}")
        if status != 202:
            raise SystemExit(f"trigger j{n:02d}: {status} {doc}")
        run_ids.append(doc["run_id"])
    stop.clear()
    busy: list[float] = []
    poller = threading.Thread(target=lambda: busy.extend(
        poll(service, ["/jobs", f"/runs/{run_ids[0]}", "/runs?limit=20"], stop)))
    poller.start()
    service.wait_ended(run_ids)
    stop.set()
    poller.join()
    wall = time.perf_counter() - started
    statuses: Counter[str] = Counter()
    lost = duplicated = 0
    for n, run_id in enumerate(run_ids):
        _, body = service.get(f"/runs/{run_id}/result")
        statuses[json.loads(body)["status"]] += 1
        one_lost, one_dup = lost_lines(service, run_id, tmp / f"data{n:02d}", files)
        lost, duplicated = lost + one_lost, duplicated + one_dup
    procs.stop(service.proc)
    return {"jobs": jobs, "files": files, "wall_s": wall, "statuses": dict(statuses),
            "log_lines_expected": jobs * files, "lost": lost, "duplicated": duplicated,
            "idle": ms(idle), "busy": ms(busy)}


# --- part 3: a long history ------------------------------------------------------------------

def fill_history(state: Path, template: dict[str, Any], count: int) -> None:
    """`count` runs, cloned from a real record: 10 jobs, a failure every 20th, one per 10 min."""
    db = sqlite3.connect(state / "history.db")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        record = dict(template)
        at = start + timedelta(minutes=10 * i)
        record.update(run_id=str(uuid.UUID(int=i + 1)), job=f"j{i % 10}",
                      status="failed" if i % 20 == 0 else "succeeded",
                      started_at=at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                      finished_at=(at + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        rows.append((record["run_id"], record["job"], record["status"], record["started_at"],
                     json.dumps(record)))
    with db:
        db.executemany("INSERT INTO runs (run_id, job, status, started_at, record) "
                       "VALUES (?, ?, ?, ?, ?)", rows)
    db.close()


HISTORY_QUERIES = {"/runs": "/runs", "/runs?job=j3": "/runs?job=j3",
                   "/runs?status=failed": "/runs?status=failed",
                   "/runs?status=interrupted (none)": "/runs?status=interrupted",
                   "/runs?limit=200": "/runs?limit=200",
                   "/runs?before=<middle>": "/runs?before=2025-06-01T00:00:00.000Z"}


def measure_queries(service: Service, rounds: int) -> dict[str, dict[str, float]]:
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    out = {}
    for name, path in HISTORY_QUERIES.items():
        for _ in range(10):  # warm-up
            service.get(path, conn)
        latencies = []
        for _ in range(rounds):
            started = time.perf_counter()
            status, _ = service.get(path, conn)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise SystemExit(f"GET {path}: {status}")
        out[name] = ms(latencies)
    conn.close()
    return out


def part_history(procs: Processes, tmp: Path, count: int, rounds: int = 300) -> dict[str, Any]:
    data = tmp / "history-data"
    data.mkdir()
    (data / "a.txt").write_text("a\n")
    repo = tmp / "history-repo"
    new_repository(repo, tmp / "password")
    job_blocks = "".join(f'[jobs.j{n}]\nkind = "backup"\nrepository = "{repo}"\n'
                         f'paths = ["{data}"]\n' for n in range(10))
    results = {}
    for size in (100, count):
        service = Service(procs, tmp / f"history-{size}", job_blocks)
        _, doc = service.post("/trigger/j0")  # one real run: the record to clone
        service.wait_ended([doc["run_id"]])
        _, body = service.get(f"/runs/{doc['run_id']}")
        log(f"part 3: {size:,} runs in the history")
        fill_history(service.root / "state", json.loads(body), size)
        results[size] = measure_queries(service, rounds)
        procs.stop(service.proc)
    return {"runs": count, "small": results[100], "large": results[count]}


# --- output ----------------------------------------------------------------------------------

def report(result: dict[str, Any]) -> str:
    b, c, h = result["burst"], result["concurrent"], result["history"]
    ours, theirs = b["restic_runner"], b["webhook"]
    fmt = "{:.1f}".format
    lines = [f"1. {b['count']:,} simultaneous triggers of one job",
             table(["server", "statuses", "runs started", "all answered", "p50 ms", "p99 ms"], [
                 ["restic-runner", " ".join(f"{k}:{v}" for k, v in ours["statuses"].items()),
                  str(ours["runs_started"]), f"{ours['all_answered_s']:.2f} s",
                  fmt(ours["p50_ms"]), fmt(ours["p99_ms"])],
                 ["Debian webhook (no rule, no auth)",
                  " ".join(f"{k}:{v}" for k, v in theirs["statuses"].items()), "-",
                  f"{theirs['all_answered_s']:.2f} s", fmt(theirs["p50_ms"]),
                  fmt(theirs["p99_ms"])]]),
             f"   p99 ratio restic-runner / webhook: {ours['p99_ms'] / theirs['p99_ms']:.2f}; "
             f"exactly one run, no 5xx: {verdict(result['checks']['burst'])}",
             "",
             f"2. {c['jobs']} backup jobs on {c['jobs']} repositories at once, --verbose=2, "
             f"{c['files']:,} files each ({c['wall_s']:.1f} s)",
             table(["API (GET /jobs, /runs/<id>, /runs)", "n", "p50 ms", "p99 ms", "max ms"], [
                 ["idle", str(c["idle"]["n"]), fmt(c["idle"]["p50_ms"]),
                  fmt(c["idle"]["p99_ms"]), fmt(c["idle"]["max_ms"])],
                 ["20 jobs running", str(c["busy"]["n"]), fmt(c["busy"]["p50_ms"]),
                  fmt(c["busy"]["p99_ms"]), fmt(c["busy"]["max_ms"])]]),
             f"   p99 busy / idle: {c['busy']['p99_ms'] / c['idle']['p99_ms']:.1f}x; "
             f"target p99 <= {TARGET_BUSY_P99_MS:.0f} ms: {verdict(result['checks']['busy'])}; "
             f"statuses {c['statuses']}; log lines {c['log_lines_expected']:,} expected, "
             f"{c['lost']} lost, {c['duplicated']} duplicated",
             "",
             f"3. /runs with {h['runs']:,} runs in the history (100 runs as the baseline)",
             table(["query", "p50 ms (100)", "p99 ms (100)", f"p50 ms ({h['runs']:,})",
                    f"p99 ms ({h['runs']:,})", "p99 ratio"],
                   [[q, fmt(h["small"][q]["p50_ms"]), fmt(h["small"][q]["p99_ms"]),
                     fmt(h["large"][q]["p50_ms"]), fmt(h["large"][q]["p99_ms"]),
                     f"{h['large'][q]['p99_ms'] / h['small'][q]['p99_ms']:.2f}"]
                    for q in HISTORY_QUERIES]),
             f"   target p99 <= {TARGET_HISTORY_P99_MS:.0f} ms: "
             f"{verdict(result['checks']['history'])}"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    (tmp / "password").write_text("bench-load-password\n")
    (tmp / "password").chmod(0o600)
    procs = Processes()
    try:
        result: dict[str, Any] = {
            "burst": part_burst(procs, tmp, args.burst),
            "concurrent": part_concurrent(procs, tmp, args.jobs, args.files),
            "history": part_history(procs, tmp, args.history),
        }
    finally:
        procs.stop_all()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    ours, c, h = result["burst"]["restic_runner"], result["concurrent"], result["history"]
    result["checks"] = {
        "burst": (ours["statuses"].get("202") == 1 and ours["runs_started"] == 1
                  and not any(k.startswith("5") or not k.isdigit() for k in ours["statuses"])),
        "busy": (c["busy"]["p99_ms"] <= TARGET_BUSY_P99_MS and c["lost"] == 0
                 and c["duplicated"] == 0 and set(c["statuses"]) == {"succeeded"}),
        "history": all(q["p99_ms"] <= TARGET_HISTORY_P99_MS for q in h["large"].values()),
    }
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 1 if args.check and not all(result["checks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
