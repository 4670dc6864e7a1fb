#!/usr/bin/env python3
"""How soon after a run ends does `restic-runner trigger --wait` return?

One real `restic-runner serve` (2 workers) and a real restic backup job on loopback. For each
round, a client starts the job and follows it to its end; the latency is the moment the client
has the final record (for the CLI: the moment its process has exited) minus the run's
`finished_at` in the history. Four clients, in the same run:

1. `restic-runner trigger URL JOB --wait 120` (a process, as cron runs it): long-polls
   `/runs/<id>/result?wait=`; target p90 <= 100 ms;
2. the same long-poll from this process: the service's part of (1), without the CLI's process;
3. the former client's way: poll `/runs/<id>/result` every 2 s (what `--wait` did before);
4. a floor for any HTTP client: poll `/result` every 5 ms from this process (no process start
   or exit, no long-poll).

    .venv/bin/python bench/bench_trigger_wait.py [--rounds 10] [--restic PATH] [--json] [--check]

Loopback only; everything in a temporary directory. Progress goes to stderr, the result to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / ".venv" / "bin" / "restic-runner"
TARGET_P90_MS = 100.0


def log(message: str) -> None:
    print(f"bench_trigger_wait: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def finished_at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Service:
    """A temporary directory with a restic repository, a config, a token, and `serve`."""

    def __init__(self, restic: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bench-trigger-wait-"))
        self.token = "rrt_" + secrets.token_urlsafe(24)
        token_file = self.root / "client.token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        self.token_file = token_file
        password = self.root / "password"
        password.write_text("bench\n")
        password.chmod(0o600)
        data = self.root / "data"
        data.mkdir()
        for i in range(50):
            (data / f"f{i}").write_bytes(os.urandom(2048))
        env = {"PATH": os.environ["PATH"], "HOME": str(self.root),
               "RESTIC_PASSWORD_FILE": str(password), "RESTIC_CACHE_DIR": str(self.root / "c")}
        subprocess.run([restic, "init", "--repo", str(self.root / "repo")], env=env,
                       check=True, capture_output=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = self.root / "restic-runner.toml"
        config.write_text(
            f'state_dir = "{self.root / "state"}"\nhostname = "bench"\n'
            f'[server]\nbind = "127.0.0.1:{self.port}"\nworkers = 2\n'
            f'[restic]\nbinary = "{restic}"\nrepository = "{self.root / "repo"}"\n'
            f'password_file = "{password}"\ncache_dir = "{self.root / "c"}"\n'
            f'[jobs.nightly]\nkind = "backup"\npaths = ["{data}"]\n'
            f'[[clients]]\nname = "bench"\ntoken_file = "{token_file}"\njobs = ["nightly"]\n')
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")},
                    "RESTIC_RUNNER_CONFIG": str(config)}
        self.proc = subprocess.Popen([str(RUNNER), "serve"], env=self.env, cwd=self.root,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline, answer = time.monotonic() + 30, "no answer"
        while time.monotonic() < deadline:
            try:
                ready = requests.get(self.url + "/readyz", timeout=1)
                if ready.status_code == 200:
                    return
                answer = ready.text
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"serve did not become ready: {answer}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def record(self, run_id: str) -> dict[str, Any]:
        return requests.get(f"{self.url}/runs/{run_id}", headers=self.headers, timeout=10).json()

    def start(self) -> str:
        answer = requests.post(f"{self.url}/trigger/nightly", data=b"{}",
                               headers=self.headers, timeout=10)
        answer.raise_for_status()
        return str(answer.json()["run_id"])

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def cli_wait(service: Service) -> float:
    done = subprocess.run([str(RUNNER), "trigger", service.url, "nightly", "--token-file",
                           str(service.token_file), "--wait", "120"], capture_output=True,
                          text=True, env=service.env, timeout=180)
    returned = time.time()
    if done.returncode != 0:
        raise RuntimeError(f"trigger --wait exited {done.returncode}: {done.stderr}")
    run_id = done.stdout.strip().rsplit("run ", 1)[-1] or done.stderr.strip().rsplit("run ", 1)[-1]
    return returned - finished_at(service.record(run_id)["finished_at"])


def polling(every: float, query: str = "") -> Callable[[Service], float]:
    """A client that asks `/result{query}` until the run has ended, `every` seconds apart."""
    def follow(service: Service) -> float:
        run_id = service.start()
        while True:
            answer = requests.get(f"{service.url}/runs/{run_id}/result{query}",
                                  headers=service.headers, timeout=30)
            if answer.status_code == 200:
                return time.time() - finished_at(answer.json()["finished_at"])
            time.sleep(every)
    return follow


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 \
        else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--restic", default=shutil.which("restic") or "restic")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "runner"),
                    str(ROOT / "notifiers"), str(ROOT / "security")], check=True)
    clients: dict[str, Callable[[Service], float]] = {
        "restic-runner trigger --wait (long-poll)": cli_wait,
        "long-poll /result?wait=, in-process (no CLI)": polling(0.0, "?wait=20"),
        "poll /result every 2 s (the former client)": polling(2.0),
        "poll /result every 5 ms (floor, in-process)": polling(0.005),
    }
    service = Service(str(Path(shutil.which(args.restic) or args.restic).resolve()))
    results: dict[str, list[float]] = {name: [] for name in clients}
    try:
        service.start()  # the first backup reads everything; the measured ones are alike
        time.sleep(3)
        for round_no in range(args.rounds):
            for name, follow in clients.items():
                results[name].append(follow(service) * 1000)
            log(f"round {round_no + 1}/{args.rounds}")
    finally:
        service.stop()
    rows = {name: {"p50_ms": statistics.median(v), "p90_ms": p90(v), "max_ms": max(v)}
            for name, v in results.items()}
    ours = rows["restic-runner trigger --wait (long-poll)"]
    ok = ours["p90_ms"] <= TARGET_P90_MS
    if args.json:
        print(json.dumps({"rounds": args.rounds, "clients": rows, "target_p90_ms": TARGET_P90_MS,
                          "ok": ok}, indent=2))
    else:
        print(f"run end -> client has the final record, {args.rounds} rounds (ms)")
        print(f"{'client':46} {'p50':>8} {'p90':>8} {'max':>8}")
        for name, row in rows.items():
            print(f"{name:46} {row['p50_ms']:8.1f} {row['p90_ms']:8.1f} {row['max_ms']:8.1f}")
        print(f"target: trigger --wait p90 <= {TARGET_P90_MS:.0f} ms: "
              f"{'met' if ok else 'MISSED'}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
