#!/usr/bin/env python3
"""What notifications cost: delivery latency, and the wall time they add to `restic-runner run`.

A trivial job (a backup of 20 small files) is run N times (default 100) with all four
notifiers configured, against real receivers on loopback: Debian's prometheus-pushgateway, an
HTTP webhook receiver and a healthchecks stand-in (in this process), and aiosmtpd. Reported:

1. Latency from the run's end (`finished_at` in its record) to
   - its metrics being visible in the Pushgateway (its `/api/v1/metrics`, polled every 2 ms),
   - the webhook being received;
   p50 / p99 / max over N runs; target p99 <= 100 ms.
2. Extra wall time: N more runs with all four notifiers, interleaved with N runs of the same job
   without any notifier (and without the 2 ms poller of part 1, which loads the machine); ratio
   of medians notify/plain, target <= 1.05.

Usage: .venv/bin/python bench/bench_notify.py [--runs N] [--restic PATH] [--json] [--check]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
LATENCY_TARGET_MS = 100.0
RATIO_TARGET = 1.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("a receiver did not come up")


class Receiver:
    """Webhooks and healthchecks pings: arrival time per run id."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: dict[str, float] = {}
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.time()
                if self.path.startswith("/hook"):
                    doc = json.loads(body)
                    if doc["type"] != "run.started":
                        receiver.arrivals[doc["data"]["run_id"]] = now
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class GatewayWatcher:
    """Polls the Pushgateway; notes when each `last_finished_timestamp` value first shows."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[float, float] = {}
        self.stop = False
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        while not self.stop:
            try:
                with urllib.request.urlopen(self.url + "/api/v1/metrics", timeout=2) as r:
                    data = json.loads(r.read())
                now = time.time()
                for group in data["data"]:
                    family = group.get("restic_backup_last_finished_timestamp")
                    if family:
                        value = round(float(family["metrics"][0]["value"]), 3)
                        self.seen.setdefault(value, now)
            except OSError:
                pass
            time.sleep(0.002)


def start_smtp(port: int):
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope) -> str:
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": statistics.median(ordered), "p99": p99, "max": ordered[-1],
            "n": len(ordered)}


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--restic", default=str(ROOT / ".tools" / "restic-0.18" / "restic"))
    p.add_argument("--json", action="store_true")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--keep", action="store_true", help="keep the work directory (printed)")
    args = p.parse_args(argv)
    runner = str(VENV_BIN / "restic-runner")
    work = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    gateway = None
    controller = None
    try:
        env = {"PATH": os.environ["PATH"], "HOME": str(work)}
        password = work / "password"
        password.write_text("bench-password\n")
        password.chmod(0o600)
        subprocess.run([args.restic, "init", "--repo", str(work / "repo"), "--password-file",
                        str(password)], env=env, check=True, capture_output=True)
        data = work / "data"
        data.mkdir()
        for i in range(20):
            (data / f"f{i}.txt").write_bytes(os.urandom(512))
        pg_port, smtp_port = free_port(), free_port()
        gateway = subprocess.Popen(
            ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{pg_port}",
             f"--persistence.file={work / 'pg.db'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pg_url = f"http://127.0.0.1:{pg_port}"
        wait_until(lambda: urllib.request.urlopen(pg_url + "/-/ready", timeout=1))
        controller = start_smtp(smtp_port)
        receiver = Receiver()
        base = f"""state_dir = "{work / 'state-{name}'}"
hostname = "bench"
[restic]
binary = "{args.restic}"
repository = "{work / 'repo'}"
password_file = "{password}"
cache_dir = "{work / 'cache'}"
[jobs.bench]
kind = "backup"
paths = ["{data}"]
"""
        notify = f"""
[notify.pushgateway]
url = "{pg_url}"
[notify.webhooks.bench]
url = "http://127.0.0.1:{receiver.port}/hook"
on = ["start", "success", "warning", "failure"]
[notify.healthchecks.bench]
url = "http://127.0.0.1:{receiver.port}/hc/uuid"
[notify.mail]
host = "127.0.0.1"
port = {smtp_port}
from = "bench@example.org"
to = ["ops@example.org"]
"""
        plain_cfg, notify_cfg = work / "plain.toml", work / "notify.toml"
        plain_cfg.write_text(base.replace("{name}", "plain"))
        notify_cfg.write_text(base.replace("{name}", "notify") + notify)
        for cfg in (plain_cfg, notify_cfg):  # warm-up: caches, first snapshot
            subprocess.run([runner, "run", "bench", "--config", str(cfg)], env=env,
                           capture_output=True, check=True)

        def run(cfg: Path) -> tuple[float, dict]:
            started = time.perf_counter()
            done = subprocess.run([runner, "run", "bench", "--json", "--config", str(cfg)],
                                  env=env, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(done.stderr)
            return wall, json.loads(done.stdout)

        # 1. latency, with a watcher polling the Pushgateway every 2 ms
        watcher = GatewayWatcher(pg_url)
        to_gateway, to_webhook = [], []
        for _ in range(args.runs):
            _, record = run(notify_cfg)
            end = epoch(record["finished_at"])
            key = round(end, 3)
            deadline = time.time() + 5
            while key not in watcher.seen and time.time() < deadline:
                time.sleep(0.005)
            to_gateway.append((watcher.seen[key] - end) * 1000)
            to_webhook.append((receiver.arrivals[record["run_id"]] - end) * 1000)
        watcher.stop = True
        time.sleep(0.1)
        # 2. wall time, without the watcher (its polling would load the machine), interleaved
        walls: dict[str, list[float]] = {"plain": [], "notify": []}
        for i in range(args.runs):
            order = ("plain", "notify") if i % 2 == 0 else ("notify", "plain")
            for name in order:
                walls[name].append(run(plain_cfg if name == "plain" else notify_cfg)[0])
        plain, noisy = statistics.median(walls["plain"]), statistics.median(walls["notify"])
        doc = {
            "runs": args.runs,
            "latency_ms": {"pushgateway": stats(to_gateway), "webhook": stats(to_webhook)},
            "wall_ms": {"plain": plain * 1000, "notify": noisy * 1000,
                        "added": (noisy - plain) * 1000},
            "ratio": noisy / plain,
        }
    finally:
        if gateway:
            gateway.terminate()
            gateway.wait(10)
        if controller:
            controller.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    ok = (doc["latency_ms"]["pushgateway"]["p99"] <= LATENCY_TARGET_MS
          and doc["latency_ms"]["webhook"]["p99"] <= LATENCY_TARGET_MS
          and doc["ratio"] <= RATIO_TARGET)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"notifications over {args.runs} runs of a trivial backup (restic {args.restic})")
        print()
        print("| run end -> ... | p50 ms | p99 ms | max ms | target p99 |")
        print("|---|---|---|---|---|")
        for name, label in (("pushgateway", "metrics visible in the Pushgateway"),
                            ("webhook", "webhook received")):
            s = doc["latency_ms"][name]
            print(f"| {label} | {s['p50']:.1f} | {s['p99']:.1f} | {s['max']:.1f} | "
                  f"<= {LATENCY_TARGET_MS:.0f} |")
        print()
        print("| `restic-runner run` | median ms |")
        print("|---|---|")
        print(f"| no notifier | {doc['wall_ms']['plain']:.1f} |")
        print(f"| pushgateway + webhook + healthchecks + mail | {doc['wall_ms']['notify']:.1f} |")
        print(f"| added | {doc['wall_ms']['added']:+.1f} ({(doc['ratio'] - 1) * 100:+.1f} %, "
              f"target <= +{(RATIO_TARGET - 1) * 100:.0f} %) |")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
