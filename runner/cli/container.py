"""The container image's entrypoint, after docker/entrypoint.sh has left root
(docs/deployment.md, "The entrypoint"). It reads its arguments as restic-backup-helper's image
did, so that image's compose files and manifests work with only `image:` changed:

- a peer command (`backup`, `/bin/doctor`, … `PEER_COMMANDS`) runs `restic-runner compat`;
- `restic-runner …`, or a word that is no program on PATH (`serve`, `schedule`, `run`…), is a
  restic-runner command and replaces this process, as before;
- any other program (`tail -fn0 /var/log/cron.log`, `sh`) gets the peer's start-up first: the
  repository probe (a failure other than "does not exist" exits 1), then the scheduler (or
  `serve` when an API is configured) in the background, then the program in the foreground.
  SIGTERM/SIGINT go to both; the scheduler stops its runs gracefully (restic gets SIGINT and
  removes its lock) and this process exits once it has.

`python -m runner.cli.container shims DIR…` writes the image's /bin/<name> shims.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.configuration.config import Config

# restic-backup-helper 2.14's /bin commands (interface B of issue 15; `restic-runner compat
# --list` prints the same names).
PEER_COMMANDS = (
    "backup", "check", "forget", "prune", "replicate", "bisync", "unlock", "status",
    "health-summary", "doctor", "cron-list", "notify-test", "config-check", "forget-preview",
    "restore-test", "init-repo", "restore", "rotate_log", "snapshot-export", "mount-snapshot",
    "sources-report", "locked_run",
)
PEER_PREFIXES = ("/bin/", "/usr/bin/", "/usr/local/bin/")
AS_SERVICE_USER = "/usr/local/lib/restic-runner/as-service-user"
# the foreground command gets the signal itself, the service SIGTERM (its graceful stop)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
PROBE_OK = ("ok", "initialised")
STARTED = "Container started."  # the start-up is done: the command runs


def say(line: str) -> None:
    """A start-up line, through the redactor like every line the CLI prints."""
    from runner.cli.output import echo

    echo(line)


def peer_command(word: str) -> str | None:
    """`backup`, `/bin/backup` → "backup"; None for anything else."""
    for prefix in ("", *PEER_PREFIXES):
        if word.startswith(prefix) and word.removeprefix(prefix) in PEER_COMMANDS:
            return word.removeprefix(prefix)
    return None


def is_runner_command(word: str) -> bool:
    """restic-runner itself, one of its options, or a word no program on PATH answers to."""
    if word == "restic-runner" or word.startswith("-"):
        return True
    return "/" not in word and shutil.which(word) is None


def main(argv: list[str]) -> int:
    if not argv:
        argv = ["serve"]
    if argv[0] == "shims":
        return write_shims([Path(d) for d in argv[1:]])
    name = peer_command(argv[0])
    if name:
        os.execvp("restic-runner", ["restic-runner", "compat", name, *argv[1:]])
    if is_runner_command(argv[0]):
        args = argv[1:] if argv[0] == "restic-runner" else argv
        if args and args[0] in ("serve", "schedule"):
            touch_cron_log(os.environ.get("RESTIC_RUNNER_COMPAT_LOG_DIR"))
        os.execvp("restic-runner", ["restic-runner", *args])
    return start_and_run(argv)


def touch_cron_log(directory: str | Path | None) -> None:
    """cron.log exists from the start, as the peer's entry.sh made it: `tail -f` follows it,
    its Kubernetes manifest's readiness probe is `test -f /var/log/cron.log`. Made the engine's
    careful way (never through a symlink, never waiting on a FIFO); a refusal is said."""
    from runner.engine.compatlogs import touch_cron_log as make_cron_log

    problem = make_cron_log(directory)
    if problem:
        say(f"warning: cron.log not created: {problem}")


# --- the peer's start-up, then its foreground command ----------------------------------------


def start_and_run(command: list[str]) -> int:
    from runner.configuration.load import load_config
    from runner.errors import UserError

    say(f"Starting restic-runner for '{os.environ.get('HOSTNAME', '')}' "
        f"(restic-backup-helper's start-up, then: {' '.join(command)})")
    try:
        config = load_config(None)
    except UserError as exc:
        say(f"restic-runner: {exc}")
        return 2
    for warning in config.warnings:
        say(f"warning: {warning}")
    if not probe_repositories(config):
        return 1
    touch_cron_log(config.compat_log_dir)
    if api_configured(config):
        service: list[str] | None = ["restic-runner", "serve"]
    elif any(job.schedule for job in config.jobs.values()):
        service = ["restic-runner", "schedule"]
    else:  # every *_CRON empty (or never firing): the peer's crond would run nothing either
        say("Nothing is scheduled: only the command runs (manual commands work)")
        service = None
    return supervise(service, command)


def probe_repositories(config: Config) -> bool:
    """The peer's `restic cat config` probe and init; False (exit 1) on any other failure."""
    import logging

    from runner.engine.repoinit import prepare_repositories

    logging.getLogger("restic_runner.repository").disabled = True  # its lines are printed below
    states = prepare_repositories(config)
    for state in states:
        mark = "ok" if state.status in PROBE_OK else "FAILED"
        say(f"Repository {state.repository} (jobs {', '.join(state.jobs)}): {state.status}: "
            f"{state.message} [{mark}]")
    failed = [s for s in states if s.status not in PROBE_OK]
    if failed:
        say("Repository probe failed: not starting (no `restic init` after a failure other than "
            "'does not exist'). Set RESTIC_CHECK_REPOSITORY_STATUS=OFF to skip the probe.")
    return not failed


def api_configured(config: Config) -> bool:
    """RESTIC_RUNNER_BIND, or a configuration file with a [server] table."""
    if os.environ.get("RESTIC_RUNNER_BIND"):
        return True
    try:
        return "server" in tomllib.loads(config.path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def supervise(service_args: list[str] | None, command: list[str]) -> int:
    """Run the service (scheduler or API, if any) and the foreground command; when either ends,
    or a stop signal comes, stop the other and wait for the service (it ends its runs
    gracefully) and for the runs `docker exec` started."""
    children: list[subprocess.Popen[bytes]] = []
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:  # the service's graceful stop is SIGTERM
                child.send_signal(signal.SIGTERM if child is service else signum)
        for pid in exec_sessions():  # e.g. `docker exec c backup`: its restic gets SIGINT too
            _kill(pid, signal.SIGTERM)

    service = subprocess.Popen(service_args) if service_args else None
    if service is not None:
        children.append(service)
        say(f"Started: {' '.join(service_args or ())} (pid {service.pid})")
    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    try:
        foreground = subprocess.Popen(command)
    except OSError as exc:
        say(f"cannot run {command[0]}: {exc.strerror}")
        stop_and_wait(service)
        return 127
    children.append(foreground)
    say(STARTED)
    while foreground.poll() is None and (service is None or service.poll() is None):
        try:  # until either has ended; WNOWAIT leaves the reaping (and exit code) to Popen
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            break
    if service is not None and foreground.poll() is None:
        # the service ended on its own: nothing runs the schedule
        say(f"{' '.join(service_args or ())} exited {service.returncode}: stopping {command[0]}")
        foreground.terminate()
        foreground.wait()
        return service.returncode or 1
    service_code = stop_and_wait(service)
    if stopping:  # asked to stop: a clean service stop is a clean exit
        wait_for_exec_sessions()
        return service_code
    return foreground.returncode


def stop_and_wait(service: subprocess.Popen[bytes] | None) -> int:
    """SIGTERM (the service's graceful stop) unless it has ended; its exit code."""
    if service is None:
        return 0
    if service.poll() is None:
        service.send_signal(signal.SIGTERM)
    return service.wait()


def exec_sessions() -> list[int]:
    """Processes `docker exec` / `kubectl exec` started: their parent is outside the container's
    PID namespace (ppid 0). When PID 1 exits they are killed outright; a stop signal first lets
    a manual run end as a stopped scheduled run does."""
    found: list[int] = []
    if os.getppid() != 1:  # not the child of the container's init (tini): not in a container
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == "1":
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == "0":  # state, ppid, …
            found.append(int(entry.name))
    return found


def wait_for_exec_sessions(poll: float = 0.2) -> None:
    """Until the signalled exec sessions have ended (the runtime's stop timeout bounds it)."""
    import time

    pending = set(exec_sessions())
    while pending:
        time.sleep(poll)
        pending &= set(exec_sessions())


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(OSError):  # already gone, or not ours
        os.kill(pid, signum)


# --- shims ----------------------------------------------------------------------------------


SHIM = """#!/bin/sh
# restic-backup-helper's /bin/{name}: `restic-runner compat {name}` as the service user.
exec {as_user} restic-runner compat {name} "$@"
"""


def write_shims(directories: list[Path]) -> int:
    """One shim per peer command in each directory; refuses to replace an existing file."""
    for directory in directories:
        for name in PEER_COMMANDS:
            path = directory / name
            if path.exists() or path.is_symlink():
                say(f"{path} exists: a peer command name collides with a file of the image")
                return 1
            path.write_text(SHIM.format(name=name, as_user=AS_SERVICE_USER))
            path.chmod(0o755)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
