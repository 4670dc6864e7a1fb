#!/usr/bin/env python3
"""What restic-runner adds on top of restic, next to its peer: per-run overhead and start-up.

1. Run overhead: a ~6.7 MB / ~500-file source is backed up once, then N rounds (interleaved,
   the order rotating every round) of the same no-change backup, into the same repository, by
     (a) bare restic:  restic backup --json --tag=bench -- SRC                       (baseline)
     (b) restic-backup-helper 2.14.2, its own scripts run as its cron line runs them:
         bash ROOT/bin/locked_run backup ROOT/var/run/cron.lock ROOT/bin/backup
         (its app/ copied into the temporary directory, container paths rewritten to ROOT/...)
     (c) restic-runner run backup              environment mode: the helper's variables
     (d) restic-runner run bench --config CFG  config file: textfile metrics + a webhook to a
                                               receiver on 127.0.0.1 in this process
   Every timed run is checked (exit 0, a new snapshot, its textfile/webhook/last-run JSON).
   Reported: medians, the milliseconds each adds to bare restic, and runner added / peer added.
2. Start-up: `restic-runner --version`, median of 20 runs (target <= 150 ms), next to
   `python -c pass` and `python -I -S -c pass`, the interpreter's own floors.

Standard library only. Usage:
    .venv/bin/python bench/bench_overhead.py [--runs N] [--restic PATH] [--peer DIR] [--json]
See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER_DEFAULT = Path("/work/shared/reference/restic-backup-helper-2.14.2")
PEER_NAME = "restic-backup-helper 2.14.2"
AIM_ADDED_MS = 30.0  # what restic-runner may add to bare restic, at most (the aim)
STARTUP_OVER_FLOOR_MS = 10.0  # `--version` may take this much longer than `python -c pass`
STARTUP_RUNS = 20
JOB = "bench"
TAG = "bench"
SIDES = ("bare", "floor", "peer", "runner_env", "runner_config")
LABELS = {
    "bare": "bare restic backup",
    "floor": "python floor (tomllib, flock, subprocess)",
    "peer": f"{PEER_NAME} (locked_run backup)",
    "runner_env": "restic-runner run backup (environment)",
    "runner_config": f"restic-runner run {JOB} --config (+notify)",
}

# The helper's container directories that its scripts write to or read from; in the temporary
# copy each becomes <peer root>/<dir>. Its installed scripts (/bin/backup, /bin/lib.sh, …, taken
# from its Dockerfile's COPY lines) are rewritten the same way.
PEER_CONTAINER_DIRS = (
    "/var/log",
    "/var/run",
    "/var/spool",
    "/hooks",
    "/config",
    "/restore",
    "/fusemount",
)
# Absolute paths allowed to remain in the scripts the backup runs: /dev/null, and /mnt/restic,
# which lib.sh only compares RESTIC_REPOSITORY with (the image's default), never opens.
PEER_KEEP = frozenset({"/dev/null", "/mnt/restic"})
PEER_RUNS = ("locked_run", "backup", "lib.sh")  # what `locked_run backup` executes or sources
# What those scripts call on the backup path; and what they call only when a feature is on.
PEER_TOOLS = (
    "bash",
    "flock",
    "date",
    "mkdir",
    "dirname",
    "rm",
    "mv",
    "grep",
    "sed",
    "tail",
    "restic",
)
PEER_TOOLS_OPTIONAL = {
    "curl": "webhooks (WEBHOOK_URL)",
    "mail": "MAILX_RCPT notifications (mailx + msmtp in the image)",
    "timeout": "hook timeouts (HOOK_TIMEOUT > 0)",
    "awk": "RESTIC_REPOSITORY_FILE",
    "cp": "the error-log copy after a failed backup",
    "hostname": "when HOSTNAME is not set (bash sets it)",
}
# a textfile's gauge of the last run's success (both write restic_backup_last_success{…} 1)
SUCCESS = r"^restic_backup_last_success\{[^}]*\} 1(\.0)?$"
ABS_PATH = re.compile(r"(?<![\w.$}/\\-])/[A-Za-z_.][\w.-]*(?:/[\w.${}-]*)*")


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


def run_proc(
    argv: list[str],
    env: dict[str, str] | None,
    what: str,
    cwd: Path | None = None,
    log_file: Path | None = None,
) -> tuple[float, str]:
    """Run argv, fail loudly on a non-zero exit; return (wall seconds, stdout).

    With log_file, stdout and stderr are appended to it (as a cron line's `>> LOG 2>&1`),
    otherwise both are captured through pipes.
    """
    if log_file is not None:
        with open(log_file, "ab") as out:
            t0 = time.perf_counter()
            proc = subprocess.run(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            elapsed = time.perf_counter() - t0
        stdout = ""
        err = f"(output in {log_file})" if proc.returncode else ""
    else:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL)
        elapsed = time.perf_counter() - t0
        stdout = proc.stdout.decode(errors="replace")
        err = proc.stderr.decode(errors="replace").strip()[-2000:]
    if proc.returncode != 0:
        raise BenchError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{err}")
    return elapsed, stdout


def timed(argv: list[str], env: dict[str, str] | None, what: str) -> float:
    return run_proc(argv, env, what)[0]


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


def tail(path: Path, n: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"({path}: {exc})"
    return f"--- {path} (last {n} lines) ---\n" + "\n".join(lines[-n:])


# -- the peer: restic-backup-helper's own scripts, in a temporary copy --------------------------


def install_peer(peer_repo: Path, root: Path) -> dict:
    """Copy the helper's app/ under root and install it as its Dockerfile does, paths rewritten.

    root stands for the container's `/`: /bin/backup becomes root/bin/backup, /var/log/x
    root/var/log/x, /hooks/x root/hooks/x. The reference is only read.
    """
    app, dockerfile = peer_repo / "app", peer_repo / "Dockerfile"
    if not (app / "backup.sh").is_file() or not dockerfile.is_file():
        raise BenchError(f"{peer_repo}: not the helper's repository (no app/backup.sh, Dockerfile)")
    if re.search(r"[^\w./-]", str(root)):  # the scripts use `. /bin/lib.sh` unquoted
        raise BenchError(f"temporary directory {root} has characters the peer's scripts can't take")
    shutil.copytree(app, root / "app")  # verbatim copy; the reference's read-only modes dropped
    for p in [root / "app", *(root / "app").rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    installs = re.findall(r"^COPY /app/(\S+) (/\S+)\s*$", dockerfile.read_text(), re.M)
    if ("backup.sh", "/bin/backup") not in installs or ("lib.sh", "/bin/lib.sh") not in installs:
        raise BenchError(f"{dockerfile}: no COPY lines for /bin/backup and /bin/lib.sh")
    targets = sorted({dst for _, dst in installs} | set(PEER_CONTAINER_DIRS), key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.$}/\\-])(" + "|".join(map(re.escape, targets)) + r")(?![\w.-])")
    for name, dst in installs:
        text = (root / "app" / name).read_text()
        rewritten = pattern.sub(lambda m: str(root) + m.group(1), text)
        out = root / dst.lstrip("/")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(rewritten)
        out.chmod(0o644 if dst.endswith("lib.sh") else 0o755)  # the Dockerfile's chmod 755
    for d in PEER_CONTAINER_DIRS:
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    # nothing the backup runs may still point outside root
    leftovers = []
    for name in PEER_RUNS:
        for n, line in enumerate((root / "bin" / name).read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for p in ABS_PATH.findall(line):
                if not p.startswith(str(root)) and p not in PEER_KEEP:
                    leftovers.append(f"bin/{name}:{n}: {p}")
    if leftovers:
        raise BenchError("absolute paths left in the peer's copy:\n" + "\n".join(leftovers))
    return {
        "root": str(root),
        "installed": [dst for _, dst in installs],
        "rewritten": [*PEER_CONTAINER_DIRS, "/bin/*", "/entry.sh", "/install_rclone.sh"],
    }


def peer_tools(path: str) -> dict:
    found = {t: shutil.which(t, path=path) for t in (*PEER_TOOLS, *PEER_TOOLS_OPTIONAL)}
    missing = [t for t in PEER_TOOLS if not found[t]]
    if missing:
        raise BenchError(f"the peer's backup needs {', '.join(missing)}: not found on PATH={path}")
    return {
        "present": [t for t in found if found[t]],
        "missing_optional": {t: why for t, why in PEER_TOOLS_OPTIONAL.items() if not found[t]},
    }


# -- the webhook receiver -----------------------------------------------------------------------


class Receiver:
    """A tiny HTTP server on 127.0.0.1 that answers every POST with 204 and counts them."""

    def __init__(self) -> None:
        self.count = 0
        self.run_ids: set[str] = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    run_id = str(json.loads(body)["data"]["run_id"])
                except (ValueError, KeyError, TypeError):
                    run_id = ""
                with receiver.lock:
                    receiver.count += 1
                    receiver.run_ids.add(run_id)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the four sides and their checks ------------------------------------------------------------


@dataclass
class Side:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    verify: Callable[[str], None]
    log_file: Path | None = None
    times: list[float] = field(default_factory=list)

    def run(self, what: str) -> float:
        elapsed, stdout = run_proc(self.argv, self.env, what, self.cwd, self.log_file)
        try:
            self.verify(stdout)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BenchError(f"{what}: no proof of a backup: {exc!r}") from exc
        return elapsed


def fresh(seen: set[str], snapshot: str | None, what: str) -> None:
    if not snapshot:
        raise BenchError(f"{what}: no snapshot id")
    if snapshot in seen:
        raise BenchError(f"{what}: snapshot {snapshot} is not new (was the run skipped?)")
    seen.add(snapshot)


class Textfile:
    """Checks that a run rewrote its node-exporter textfile and that it says success."""

    def __init__(self, path: Path, success: str) -> None:
        self.path, self.success, self.mtime = path, success, 0

    def check(self, what: str) -> None:
        if not self.path.is_file():
            raise BenchError(f"{what}: no textfile {self.path}")
        mtime = self.path.stat().st_mtime_ns
        if mtime == self.mtime:
            raise BenchError(f"{what}: textfile {self.path} not rewritten")
        self.mtime = mtime
        text = self.path.read_text()
        if not re.search(self.success, text, re.M):
            raise BenchError(f"{what}: textfile {self.path} does not say success:\n{text[:2000]}")


def bare_verifier(seen: set[str]) -> Callable[[str], None]:
    def verify(stdout: str) -> None:
        summary = None
        for line in stdout.splitlines():
            if line.startswith("{") and '"summary"' in line:
                summary = json.loads(line)
        fresh(seen, (summary or {}).get("snapshot_id"), "bare restic")

    return verify


def peer_verifier(root: Path, textfile: Textfile, seen: set[str]) -> Callable[[str], None]:
    last = root / "var" / "log" / "last-backup.json"

    def verify(_: str) -> None:
        try:
            doc = json.loads(last.read_text())
            if doc.get("exit_code") != 0:
                raise BenchError(f"peer: {last} says exit_code {doc.get('exit_code')}")
            fresh(seen, doc.get("snapshot_id"), f"peer ({last})")
            textfile.check("peer")
        except (BenchError, OSError, ValueError) as exc:
            logs = root / "var" / "log"
            raise BenchError(
                f"{exc}\n{tail(logs / 'cron.log')}\n{tail(logs / 'backup-last.log')}"
            ) from exc

    return verify


def runner_verifier(
    state: Path, job: str, textfile: Textfile, seen: set[str], receiver: Receiver | None = None
) -> Callable[[str], None]:
    last = state / f"last-{job}.json"
    count = [receiver.count if receiver else 0]

    def verify(_: str) -> None:
        doc = json.loads(last.read_text())
        if doc.get("status") != "succeeded" or doc.get("exit_code") != 0:
            raise BenchError(
                f"restic-runner {job}: {last} says {doc.get('status')} "
                f"(exit {doc.get('exit_code')}): {doc.get('error')}\n"
                f"{doc.get('log_tail', '')[-2000:]}"
            )
        fresh(seen, (doc.get("stats") or {}).get("snapshot_id"), f"restic-runner {job} ({last})")
        textfile.check(f"restic-runner {job}")
        if receiver is not None:
            with receiver.lock:
                got, ours = receiver.count, doc.get("run_id") in receiver.run_ids
            if got <= count[0] or not ours:
                raise BenchError(
                    f"restic-runner {job}: no webhook of run {doc.get('run_id')} at "
                    "the receiver; the record's notifications: "
                    f"{json.dumps(doc.get('notifications'))}"
                )
            count[0] = got

    return verify


# The least any Python wrapper could do before and after restic: start the interpreter (the
# runner's, with its site), read the TOML config, take an flock, start restic with a minimal
# environment and wait for it. No record, no log, no masking, no metrics.
FLOOR = """\
import fcntl, os, subprocess, sys, tomllib
with open(sys.argv[1], "rb") as f:
    config = tomllib.load(f)
lock = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
restic = config["restic"]
env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"],
       "RESTIC_REPOSITORY": restic["repository"], "RESTIC_PASSWORD_FILE": restic["password_file"],
       "RESTIC_CACHE_DIR": restic["cache_dir"], "RESTIC_PROGRESS_FPS": "2"}
done = subprocess.run(sys.argv[3:], env=env)
os._exit(done.returncode)
"""


def python_of(runner: str) -> str:
    """The interpreter of a console script (its shebang)."""
    with open(runner, "rb") as f:
        first = f.readline().decode().strip()
    return first[2:].split()[0] if first.startswith("#!") else sys.executable


def compile_bytecode(python: str, log) -> None:
    """Byte-compile the runner's packages once: with PYTHONDONTWRITEBYTECODE set (as on this
    machine), an editable install would otherwise recompile its modules on every run."""
    subprocess.run([python, "-m", "compileall", "-q", *(str(ROOT / p) for p in
                                                        ("runner", "notifiers", "security"))],
                   check=True, stdout=subprocess.DEVNULL)
    log("byte-compiled runner/, notifiers/, security/")


def bench_overhead(args: argparse.Namespace, restic: str, runner: str | None, log) -> dict:
    work = Path(tempfile.mkdtemp(prefix="restic-runner-bench-"))
    result: dict = {"workdir": str(work)}
    receiver = None
    try:
        src, repo, cache, home, cwd = (work / n for n in ("source", "repo", "cache", "home", "cwd"))
        secrets = work / "secrets"
        home.mkdir()
        cwd.mkdir()  # every side runs here: empty, so environment mode finds no config file
        secrets.mkdir(mode=0o700)
        pw = secrets / "restic-password"
        fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(24).hex() + "\n")

        t0 = time.perf_counter()
        n, size = make_source(src, args.files, args.mb)
        log(f"source: {n} files, {size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s")
        result["source"] = {"files": n, "bytes": size}

        path = os.pathsep.join([str(Path(restic).parent), os.environ.get("PATH", "/usr/bin:/bin")])
        env = {
            "RESTIC_REPOSITORY": str(repo),
            "RESTIC_PASSWORD_FILE": str(pw),
            "RESTIC_CACHE_DIR": str(cache),
            "HOME": str(home),
            "PATH": path,
            # what restic-runner sets by default ([restic] progress_fps), so every side runs
            # restic with the same settings and the differences are the wrappers' cost alone
            "RESTIC_PROGRESS_FPS": "2",
        }
        # the argv runner/jobs builds for a backup job, less --host (restic's default host is
        # the same machine name): restic backup --json --tag=T -- PATHS
        bare = [restic, "backup", "--json", f"--tag={TAG}", "--", str(src)]
        result["argv"] = {"bare": bare}
        log(f"init: {timed([restic, 'init'], env, 'restic init'):.2f} s")
        log(f"first backup: {timed(bare, env, 'first backup'):.2f} s")

        sides: dict[str, Side] = {
            "bare": Side("bare", bare, env, cwd, bare_verifier(set())),
        }

        # restic-backup-helper's variables, as its container gets them
        helper_env = {
            **env,
            "BACKUP_ROOT_DIR": str(src),
            "RESTIC_TAG": TAG,
        }
        if not args.no_peer:
            root = work / "peer"
            result["peer_install"] = install_peer(Path(args.peer), root)
            result["peer_install"]["tools"] = peer_tools(path)
            lock = root / "var" / "run" / "cron.lock"
            argv = [
                "bash",
                str(root / "bin" / "locked_run"),
                "backup",
                str(lock),
                str(root / "bin" / "backup"),
            ]
            peer_env = {**helper_env, "METRICS_DIR": str(work / "metrics-peer")}
            textfile = Textfile(work / "metrics-peer" / "restic_backup.prom", SUCCESS)
            sides["peer"] = Side(
                "peer",
                argv,
                peer_env,
                cwd,
                peer_verifier(root, textfile, set()),
                log_file=root / "var" / "log" / "cron.log",
            )
            result["argv"]["peer"] = argv
            result["env"] = {"peer": sorted(peer_env)}

        if runner:
            state_env, state_cfg = work / "state-env", work / "state-config"
            hooks = work / "hooks-runner"  # empty, like the peer's ROOT/hooks
            hooks.mkdir()
            runner_env = {
                **helper_env,
                "METRICS_DIR": str(work / "metrics-env"),
                "RESTIC_RUNNER_STATE_DIR": str(state_env),
                "RESTIC_RUNNER_HOOKS_DIR": str(hooks),
            }
            sides["runner_env"] = Side(
                "runner_env",
                [runner, "run", "backup"],
                runner_env,
                cwd,
                runner_verifier(
                    state_env,
                    "backup",
                    Textfile(work / "metrics-env" / "restic_backup.prom", SUCCESS),
                    set(),
                ),
            )

            receiver = Receiver()
            cfg = work / "config" / "restic-runner.toml"
            cfg.parent.mkdir()
            cfg.write_text(
                "# written by bench/bench_overhead.py\n"
                f"state_dir = {toml_str(str(state_cfg))}\n"
                f"hostname = {toml_str(socket.gethostname())}\n"
                "\n[restic]\n"
                f"binary = {toml_str(restic)}\n"
                f"repository = {toml_str(str(repo))}\n"
                f"password_file = {toml_str(str(pw))}\n"
                f"cache_dir = {toml_str(str(cache))}\n"
                f"\n[jobs.{JOB}]\n"
                'kind = "backup"\n'
                f"paths = [{toml_str(str(src))}]\n"
                f'tags = ["{TAG}"]\n'
                'timeout = "10m"\n'
                "\n[notify]\n"
                f"metrics_dir = {toml_str(str(work / 'metrics-config'))}\n"
                f"\n[notify.webhooks.{JOB}]\n"
                f'url = "http://127.0.0.1:{receiver.port}/hook"\n'
            )
            floor_script = work / "floor.py"
            floor_script.write_text(FLOOR)
            floor = [python_of(runner), str(floor_script), str(cfg), str(work / "floor.lock"),
                     *bare]
            sides["floor"] = Side("floor", floor, env, cwd, bare_verifier(set()))
            result["argv"]["floor"] = floor
            argv = [runner, "run", JOB, "--config", str(cfg)]
            sides["runner_config"] = Side(
                "runner_config",
                argv,
                env,
                cwd,
                runner_verifier(
                    state_cfg,
                    JOB,
                    Textfile(work / "metrics-config" / f"restic_{JOB}.prom", SUCCESS),
                    set(),
                    receiver,
                ),
            )
            result["argv"]["runner_env"] = sides["runner_env"].argv
            result["argv"]["runner_config"] = argv
            result.setdefault("env", {})["runner_env"] = sorted(runner_env)
            result["config"] = cfg.read_text()

        for side in sides.values():  # warm-up, not measured (checked like every run)
            side.run(f"warm-up {side.name}")
        names = list(sides)
        for i in range(args.runs):
            k = i % len(names)
            order = names[k:] + names[:k]  # rotate who goes first ...
            if (i // len(names)) % 2:
                order.reverse()  # ... and every other cycle who follows whom
            for name in order:
                sides[name].times.append(sides[name].run(f"{name} round {i + 1}"))
            log(
                f"round {i + 1}/{args.runs} ({' '.join(order)}): "
                + ", ".join(f"{s.name} {s.times[-1] * 1000:.0f}" for s in sides.values())
                + " ms"
            )
        result["order"] = "rotating (and reversed every other cycle of rounds)"
        for name, side in sides.items():
            result[name] = stats_ms(side.times)
        base, base_times = result["bare"]["median_ms"], sides["bare"].times
        result["added_ms"], result["paired_added_ms"], result["ratio_to_bare"] = {}, {}, {}
        for name in names[1:]:
            result["added_ms"][name] = round(result[name]["median_ms"] - base, 1)
            diffs = [(a - b) * 1000 for a, b in zip(sides[name].times, base_times, strict=True)]
            result["paired_added_ms"][name] = round(statistics.median(diffs), 1)
            result["ratio_to_bare"][name] = round(result[name]["median_ms"] / base, 4)
        if "peer" in sides and runner:
            peer_added = result["added_ms"]["peer"]
            peer_paired = result["paired_added_ms"]["peer"]
            result["runner_added_over_peer_added"] = {
                name: round(result["added_ms"][name] / peer_added, 2) if peer_added > 0 else None
                for name in ("runner_env", "runner_config")
            }
            result["paired_runner_added_over_peer_added"] = {
                name: round(result["paired_added_ms"][name] / peer_paired, 2)
                if peer_paired > 0
                else None
                for name in ("runner_env", "runner_config")
            }
        if runner:
            # required: less than the peer adds (paired: the per-round differences);
            # aimed at: at most AIM_ADDED_MS
            peer = result["paired_added_ms"].get("peer")
            result["aim_added_ms"] = AIM_ADDED_MS
            result["below_peer"] = {
                name: peer is not None and result["paired_added_ms"][name] < peer
                for name in ("runner_env", "runner_config")
            }
            result["within_aim"] = {
                name: result["paired_added_ms"][name] <= AIM_ADDED_MS
                for name in ("runner_env", "runner_config")
            }
            result["over_floor_ms"] = {
                name: round(result["paired_added_ms"][name] - result["paired_added_ms"]["floor"],
                            1)
                for name in ("runner_env", "runner_config")
            }
    finally:
        if receiver is not None:
            receiver.close()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            result["workdir"] = None
    return result


def bench_startup(runner: str | None, runs: int) -> dict:
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -I -S -c pass": [sys.executable, "-I", "-S", "-c", "pass"],
    }
    if runner:
        cases["restic-runner --version"] = [runner, "--version"]
    result = {}
    for name, argv in cases.items():
        timed(argv, None, name)  # warm the page cache
        result[name] = stats_ms([timed(argv, None, name) for _ in range(runs)])
    if runner:
        rr = result["restic-runner --version"]
        rr["target_ms"] = round(result["python -c pass"]["median_ms"] + STARTUP_OVER_FLOOR_MS, 1)
        rr["ok"] = rr["median_ms"] <= rr["target_ms"]
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


def times_x(value: float | None) -> str:
    return "n/a (peer added <= 0)" if value is None else f"{value:.2f} x"


def render(doc: dict) -> str:
    o = doc["overhead"]
    src = o["source"]
    out = [
        f"restic:        {doc['restic_version']} ({doc['restic']})",
        f"restic-runner: {doc['runner_version']}",
        f"peer:          {doc['peer_version']}",
        f"bash:          {doc['bash_version']}",
    ]
    if "peer_install" in o:
        tools = o["peer_install"]["tools"]
        missing = tools["missing_optional"]
        out.append(
            f"peer tools:    present: {', '.join(PEER_TOOLS)}; "
            + (
                "not on this machine: "
                + "; ".join(f"{t} (only for {w})" for t, w in missing.items())
                if missing
                else "all present"
            )
        )
    out += [
        "",
        f"1. Run overhead: no-change backup of {src['files']} files / {src['bytes'] / 1e6:.1f} MB, "
        f"same repository, {o['bare']['runs']} interleaved rounds, order rotating (wall time)",
        "",
    ]
    rows = [["", "median", "min", "max", "added", "paired", "ratio", "< peer", "<= +30 ms"]]
    for key in SIDES:
        if key not in o:
            continue
        s = o[key]
        cells = [f"{s[k]:.0f} ms" for k in ("median_ms", "min_ms", "max_ms")]
        if key == "bare":
            extra = ["baseline", "", "1.000", "", ""]
        else:
            extra = [
                f"{o['added_ms'][key]:+.0f} ms",
                f"{o['paired_added_ms'][key]:+.0f} ms",
                f"{o['ratio_to_bare'][key]:.3f}",
            ]
            if key in o.get("below_peer", {}):
                extra += [verdict(o["below_peer"][key]), verdict(o["within_aim"][key])]
            else:
                extra += ["", ""]
        rows.append([LABELS[key], *cells, *extra])
    out.append(table(rows))
    out += [
        "",
        "added = median - median of bare; paired = median of the per-round differences;",
        "ratio = median / median of bare. restic-runner must add less than the peer (paired),",
        f"and aims at <= +{AIM_ADDED_MS:.0f} ms. The floor is the least a Python wrapper can add.",
    ]
    if "over_floor_ms" in o:
        f = o["over_floor_ms"]
        out.append(f"restic-runner over the floor (paired): environment {f['runner_env']:+.0f} "
                   f"ms, config file + notify {f['runner_config']:+.0f} ms")
    if "runner_added_over_peer_added" in o:
        r, p = o["runner_added_over_peer_added"], o["paired_runner_added_over_peer_added"]
        out += [
            "",
            table(
                [
                    ["restic-runner added / peer added", "medians", "paired"],
                    ["environment mode", times_x(r["runner_env"]), times_x(p["runner_env"])],
                    [
                        "config file + notify",
                        times_x(r["runner_config"]),
                        times_x(p["runner_config"]),
                    ],
                ]
            ),
        ]
    skipped = [k for k in SIDES if k not in o]
    if skipped:
        out += ["", f"(skipped: {', '.join(skipped)})"]
    st = doc["startup"]
    rows = [["", "median", "min", "max", "target", ""]]
    for name, s in st.items():
        target = f"<= {s['target_ms']:.0f} ms" if "target_ms" in s else "floor"  # floor + 10
        rows.append(
            [name]
            + [f"{s[k]:.0f} ms" for k in ("median_ms", "min_ms", "max_ms")]
            + [target, verdict(s["ok"]) if "ok" in s else ""]
        )
    out += ["", f"2. Start-up: median of {STARTUP_RUNS} runs", "", table(rows)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=15, help="measured rounds (default 15, minimum 5)")
    p.add_argument("--restic", default=shutil.which("restic"), help="restic binary (default: PATH)")
    p.add_argument(
        "--runner",
        default=str(ROOT / ".venv" / "bin" / "restic-runner"),
        help="restic-runner executable (default: .venv/bin/restic-runner)",
    )
    p.add_argument(
        "--peer",
        default=str(PEER_DEFAULT),
        help=f"restic-backup-helper's repository: app/, Dockerfile (default: {PEER_DEFAULT})",
    )
    p.add_argument("--no-peer", action="store_true", help="leave restic-backup-helper out")
    p.add_argument("--no-runner", action="store_true", help="leave restic-runner out")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--bare-only",
        action="store_true",
        help="measure bare restic only (to test the harness without restic-runner and the peer)",
    )
    p.add_argument("--files", type=int, default=500, help="files in the source (default 500)")
    p.add_argument("--mb", type=float, default=6.7, help="source size in MB (default 6.7)")
    args = p.parse_args(argv)
    if args.runs < 5:
        p.error("--runs must be at least 5")
    if not args.restic or not shutil.which(args.restic):
        p.error(f"restic not found: {args.restic!r} (use --restic PATH)")
    restic = str(Path(shutil.which(args.restic)).resolve())
    runner = None
    if args.bare_only:
        args.no_peer = args.no_runner = True
    if not args.no_runner:
        runner = args.runner if os.sep in args.runner else shutil.which(args.runner)
        if not runner or not os.access(runner, os.X_OK):
            p.error(f"restic-runner not found: {args.runner!r} (make bootstrap, or --bare-only)")
        runner = str(Path(runner).absolute())
    if not args.no_peer and not (Path(args.peer) / "app" / "backup.sh").is_file():
        p.error(f"restic-backup-helper not found: {args.peer!r} (--peer DIR, or --no-peer)")

    def log(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    doc = {
        "restic": restic,
        "restic_version": version_of([restic, "version"]),
        "runner_version": version_of([runner, "--version"]) if runner else "skipped",
        "peer_version": "skipped" if args.no_peer else f"{PEER_NAME} ({args.peer})",
        "bash_version": version_of(["bash", "--version"]),
    }
    try:
        if runner:
            compile_bytecode(python_of(runner), log)
        doc["overhead"] = bench_overhead(args, restic, runner, log)
        doc["startup"] = bench_startup(runner, STARTUP_RUNS)
    except BenchError as exc:
        log(str(exc))
        return 1
    print(json.dumps(doc, indent=2) if args.json else render(doc))
    missed = not all(doc["overhead"].get("below_peer", {}).values()) or not all(
        s.get("ok", True) for s in doc["startup"].values()
    )
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
