"""`restic-runner compat NAME [ARGS…]`: restic-backup-helper's /bin commands with their meaning
(docs/compat-commands.md). The image installs one shim per name that calls this. The job workers
run the configured job as `restic-runner run` does; the helpers map onto our own commands
(runner/cli/compat_tools.py); what has no equivalent says so in one line and exits 2."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable

from runner.cli import compat_notify, compat_sources, compat_tools
from runner.cli.compat_tools import EXIT_USAGE, parser
from runner.cli.output import echo
from runner.configuration.load import load_config
from runner.errors import UserError

EXIT_NO_EQUIVALENT = 2

# restic-backup-helper's job workers: the job each runs (a job of that name, else the one job
# of that kind); bisync is its deprecated alias of replicate
WORKERS = {"backup": "backup", "check": "check", "forget": "forget", "prune": "prune",
           "replicate": "replicate", "bisync": "replicate"}

# what restic-runner does not do, and what to use instead (one line each)
NO_EQUIVALENT = {
    "mount-snapshot": "restic-runner mounts no snapshots: use `restic-runner restore --include "
                      "PATH --target DIR` to get files back, or `restic mount` yourself",
    "snapshot-export": "restic-runner exports no archives: use `restic-runner restore SNAPSHOT "
                       "--target DIR`, then archive DIR (tar czf)",
}

Handler = Callable[[str | None, list[str]], int]


class JobDisabled(UserError):
    """The job a worker command names cannot run here (exit 1)."""

    exit_code = 1


def worker_job(config_file: str | None, command: str) -> str:
    """The configured job a worker command runs; UserError (exit 1) when it cannot run."""
    config = load_config(config_file)
    name = WORKERS[command]
    if name in config.jobs:
        return name
    if name in config.disabled:
        raise JobDisabled(f"job {name} is disabled: {config.disabled[name]}")
    kind_jobs = [j.name for j in config.jobs.values() if j.kind == name]
    if len(kind_jobs) == 1:
        return kind_jobs[0]
    known = ", ".join(sorted(config.jobs)) or "none"
    if kind_jobs:
        raise UserError(f"{command}: more than one {name} job ({', '.join(kind_jobs)}): use "
                        "`restic-runner run JOB`")
    raise JobDisabled(f"{command}: no {name} job is configured (jobs: {known})")


def run_worker(command: str) -> Handler:
    def handler(config_file: str | None, args: list[str]) -> int:
        parser(command, f"Run the configured {WORKERS[command]} job now (as `restic-runner run`)"
               ": locked, recorded, masked, notified.").parse_args(args)
        job = worker_job(config_file, command)
        if command == "bisync":
            echo("bisync is restic-backup-helper's deprecated alias of replicate: running job "
                 f"{job}", err=True)
        from runner.cli.run import run_job

        run_job(job, config_file, as_json=False, fail_if_busy=False)  # exits
        return 1  # pragma: no cover
    return handler


def no_equivalent(command: str) -> Handler:
    def handler(config_file: str | None, args: list[str]) -> int:
        echo(f"{command}: no equivalent in restic-runner: {NO_EQUIVALENT[command]}", err=True)
        return EXIT_NO_EQUIVALENT
    return handler


def locked_run(config_file: str | None, args: list[str]) -> int:
    """`locked_run JOB LOCKFILE COMMAND [ARG…]`: COMMAND under `flock -n LOCKFILE`; when the
    lock is held, one "skipped" line and exit 0 (restic-backup-helper's cron wrapper)."""
    if len(args) < 3:
        echo("usage: locked_run <job-name> <lock-file> <command> [arg ...]", err=True)
        return EXIT_USAGE
    job, lock, command = args[0], args[1], args[2:]
    stamp = time.strftime("%Y-%m-%d %a %H:%M:%S")
    try:
        os.makedirs(os.path.dirname(lock) or ".", exist_ok=True)
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        echo(f"[{stamp}] {job} aborted: cannot open the lock {lock} ({exc.strerror})", err=True)
        return 1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        echo(f"[{stamp}] {job} skipped: previous run still active (lock {lock})")
        return 0
    os.set_inheritable(fd, True)  # held by COMMAND until it ends, as flock's FD 9
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        echo(f"[{stamp}] {job} aborted: cannot run {command[0]} ({exc.strerror})", err=True)
        return 127
    return 1  # pragma: no cover


COMMANDS: dict[str, Handler] = {
    **{name: run_worker(name) for name in WORKERS},
    **compat_tools.HANDLERS,
    "health-summary": compat_tools.HANDLERS["status"],  # the helper's alias of status
    "notify-test": compat_notify.notify_test,
    "sources-report": compat_sources.sources_report,
    "locked_run": locked_run,
    **{name: no_equivalent(name) for name in NO_EQUIVALENT},
}


def names() -> list[str]:
    return list(COMMANDS)


def run_compat(command: str, args: list[str], config_file: str | None) -> int:
    """Run one of restic-backup-helper's commands; its exit code."""
    name = os.path.basename(command)  # `/bin/backup` as the entrypoint passes it
    handler = COMMANDS.get(name)
    if handler is None:
        echo(f"restic-runner: error: {command} is not one of restic-backup-helper's commands "
             "(`restic-runner compat --list`)", err=True)
        return EXIT_USAGE
    return handler(config_file, args)
