"""restic-backup-helper's helper commands (`status`, `doctor`, `cron-list`, `config-check`,
`forget-preview`, `unlock`, `init-repo`, `restore-test`, `restore`, `rotate_log`; `notify-test`
and `sources-report` have modules of their own), each with its flags, mapped onto
restic-runner's own commands and engine (docs/compat-commands.md). What runs against a
repository runs as a job through the engine where restic-runner has a kind for it; every line
printed is masked."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner import __version__
from runner.cli.adhoc import exit_code, one_off, repository_job, run_log, run_once, with_job
from runner.cli.output import echo
from runner.configuration.config import Config
from runner.configuration.environment import SOURCE as ENVIRONMENT_SOURCE
from runner.configuration.load import load_config
from runner.errors import UserError

EXIT_USAGE = 2
EXIT_BUSY = 75  # a restore found another restore running (as `run --fail-if-busy`)
CORE_KINDS = ("backup", "check", "forget", "prune", "replicate")
FAILED = ("failed", "timed_out", "cancelled", "interrupted")


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """A restic-backup-helper-style argument parser: `--help` exits 0, a bad argument 2."""
    return argparse.ArgumentParser(prog=f"/bin/{name}", description=description)


def glued(args: list[str], flags: tuple[str, ...]) -> list[str]:
    """`--policy --keep-last 3` as `--policy=--keep-last 3`: a value that starts with `-` (a
    quoted list of restic arguments) is still the value of the flag before it."""
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] in flags and i + 1 < len(args):
            out.append(f"{args[i]}={args[i + 1]}")
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out


def _env_tag() -> str:
    return os.environ.get("RESTIC_TAG", "")


# --- status / health-summary ---------------------------------------------------------------

def verdict(config: Config, report: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    """OK, WARN or FAIL as restic-backup-helper's status rules: FAIL when a scheduled core job's
    last run failed, or the backup job is disabled; WARN when one has not run yet."""
    findings: list[dict[str, str]] = []
    for job in report["jobs"]:
        if job["kind"] not in CORE_KINDS or not job["schedule"]:
            continue
        last = job["last"]
        if last is None:
            findings.append({"level": "WARN", "message": f"{job['job']}: no run yet"})
        elif last["status"] in FAILED:
            findings.append({"level": "FAIL", "message": f"{job['job']}: last run "
                             f"{last['status']} (exit {last['exit_code']})"})
    # a disabled backup job is a failure; another disabled job (environment mode makes every
    # job the helper ran by hand, e.g. forget without RESTIC_FORGET_ARGS) is only reported
    findings += [{"level": "FAIL" if name == "backup" else "INFO",
                  "message": f"{name}: disabled: {why}"}
                 for name, why in config.disabled.items()]
    levels = {f["level"] for f in findings} - {"INFO"}
    return ("FAIL" if "FAIL" in levels else "WARN" if levels else "OK"), findings


def status(config_file: str | None, args: list[str]) -> int:
    p = parser("status", "Health summary from local state: every job's last run and the "
                         "verdict (exit 1 on FAIL).")
    p.add_argument("--json", "-j", action="store_true")
    opts = p.parse_args(args)
    from runner.cli.views import status_report, status_table
    from runner.engine.recovery import open_history

    config = load_config(config_file)
    history = open_history(config.state_dir)
    try:
        report = status_report(config, history)
    finally:
        history.close()
    result, findings = verdict(config, report)
    code = 1 if result == "FAIL" else 0
    if opts.json:
        echo(json.dumps({**report, "verdict": result, "findings": findings,
                         "exit_code": code}, indent=2))
    else:
        echo(status_table(report))
        for finding in findings:
            echo(f"[{finding['level']}] {finding['message']}")
        echo(f"verdict: {result}")
    return code


# --- doctor, config-check, cron-list --------------------------------------------------------

def doctor(config_file: str | None, args: list[str]) -> int:
    p = parser("doctor", "Read-only diagnostics (restic-runner doctor); exit 1 on a failure.")
    p.add_argument("--json", "-j", action="store_true")
    opts = p.parse_args(args)
    from runner.cli.doctor import run_doctor

    report = run_doctor(config_file)
    if opts.json:
        echo(json.dumps(report, indent=2))
    else:
        for check in report["checks"]:
            echo(f"[{check['status'].upper():4}] {check['section']}: {check['message']}")
        echo(f"{report['failures']} failure(s), {report['warnings']} warning(s)")
    return 0 if report["ok"] else 1


def config_checks(config_file: str | None) -> list[dict[str, str]]:
    """{key, status, message} per finding: restic-backup-helper's checks (its keys), then
    each job, each disabled job, the configuration's warnings."""
    from runner.cli.peerchecks import config_file_checks, environment_checks

    try:
        config = load_config(config_file)
    except UserError as exc:
        peer = environment_checks(os.environ) if _environment_mode(config_file) else []
        return [*peer, {"key": "config", "status": "fail", "message": str(exc)}]
    if config.path.name == ENVIRONMENT_SOURCE:
        checks = environment_checks(os.environ)
    else:
        checks = config_file_checks(config, next(
            (j for j in config.jobs.values() if j.uses_restic), None))
    checks += [{"key": f"jobs.{name}", "status": "ok",
                "message": f"{name} ({job.kind})" + (f", schedule {job.schedule}"
                                                     if job.schedule else ", no schedule")}
               for name, job in config.jobs.items()]
    # as the helper's config-check: no backup is an error (said once: a failed check of the
    # helper's says why already), a helper job that cannot run a warning
    said = any(c["status"] == "fail" for c in checks)
    checks += [{"key": f"jobs.{name}", "status": "fail" if name == "backup" else "warn",
                "message": f"{name} disabled: {why}"} for name, why in config.disabled.items()
               if not (name == "backup" and said)]
    checks += [{"key": "config", "status": "warn", "message": w} for w in config.warnings
               if not any(why in w for why in config.disabled.values())]
    return checks


def _environment_mode(config_file: str | None) -> bool:
    """Whether the configuration comes from restic-backup-helper's variables (no file)."""
    from runner.configuration.environment import wants_environment
    from runner.configuration.load import find_config_file

    if not wants_environment(os.environ):
        return False
    try:
        find_config_file(config_file)
    except UserError:
        return True
    return False


def config_check(config_file: str | None, args: list[str]) -> int:
    p = parser("config-check", "Validate the configuration; exit 1 when a job cannot run.")
    p.add_argument("--json", "-j", action="store_true")
    opts = p.parse_args(args)
    checks = config_checks(config_file)
    errors = sum(c["status"] == "fail" for c in checks)
    warnings = sum(c["status"] == "warn" for c in checks)
    code = 1 if errors else 0
    if opts.json:
        now = time.time()
        echo(json.dumps({
            "schema": "restic-backup-helper.config-check/1", "command": "config-check",
            "release": f"restic-runner {__version__}", "hostname": os.uname().nodename,
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
            "generated_epoch": int(now), "warnings": warnings, "errors": errors,
            "exit_code": code, "checks": checks}, indent=2))
        return code
    echo("[config-check] Validating configuration...")
    for check in checks:
        if check["status"] != "ok":
            label = "ERROR" if check["status"] == "fail" else "WARN"
            echo(f"[config-check] {label}: {check['message']}", err=True)
    if not errors:
        echo("[config-check] OK.")
    return code


def cron_list(config_file: str | None, args: list[str]) -> int:
    parser("cron-list", "Each job's schedule and next run, in $TZ.").parse_args(args)
    from runner.configuration.schedule import zone
    from runner.scheduling.scheduler import next_runs

    config = load_config(config_file)
    upcoming = next_runs(config)
    echo(f"TZ: {os.environ.get('TZ') or zone()}")
    rows = [("SCHEDULE", "JOB", "KIND", "NEXT RUN")]
    for name, job in config.jobs.items():
        rows.append((job.schedule or "-", name, job.kind,
                     upcoming[name].isoformat(timespec="seconds") if name in upcoming
                     else "manual only (restic-runner run " + name + ")"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for name, why in config.disabled.items():
        echo(f"# {name}: disabled: {why}")
    return 0


# --- forget-preview, unlock -----------------------------------------------------------------

def _policy(config: Config) -> list[str]:
    """The configured retention policy: the forget job's, else the backup job's forget_args."""
    for kind, attribute in (("forget", "args"), ("backup", "forget_args")):
        for job in config.jobs.values():
            if job.kind == kind and any(a.startswith("--keep-") for a in getattr(job, attribute)):
                return list(getattr(job, attribute))
    return []


def forget_preview(config_file: str | None, args: list[str]) -> int:
    p = parser("forget-preview", "restic forget --dry-run with the retention policy, scoped to "
                                 "this host and tag unless --repo-wide; run as job "
                                 "forget-preview.")
    p.add_argument("--repo-wide", action="store_true")
    p.add_argument("--host", default=None)
    p.add_argument("--tag", default=None)
    p.add_argument("--policy", default=None, help="retention args, one quoted argument")
    p.add_argument("--extra", default="", help="more restic forget args, one quoted argument")
    opts = p.parse_args(glued(args, ("--policy", "--extra")))
    config = load_config(config_file)
    base = repository_job(config)
    policy = opts.policy.split() if opts.policy is not None else _policy(config)
    if not policy:
        echo("restic-runner: error: no retention policy: pass --policy \"--keep-daily 7 ...\" "
             "or configure one (RESTIC_FORGET_ARGS)", err=True)
        return EXIT_USAGE
    scope: list[str] = []
    if not opts.repo_wide:
        host = config.hostname if opts.host is None else opts.host
        backup_tags = [t for j in config.jobs.values() if j.kind == "backup" for t in j.tags]
        tag = opts.tag if opts.tag is not None else (_env_tag() or ",".join(backup_tags[:1]))
        if not host or not tag:
            echo("restic-runner: error: empty host or tag filter: pass --host and --tag, or "
                 "--repo-wide for the whole repository", err=True)
            return EXIT_USAGE
        scope = [f"--host={host}", f"--tag={tag}"]
    job = one_off(config, base, "forget-preview", "forget", dry_run=True,
                  args=(*policy, *scope, *opts.extra.split()))
    record = run_once(with_job(config, job), job.name)
    echo(_forget_groups(config, record))
    return exit_code(record)


def _forget_groups(config: Config, record: dict[str, Any]) -> str:
    """What the preview would keep and remove, from the run's log (restic's JSON groups)."""
    stats = record.get("stats") or {}
    keys = ("snapshots_kept", "snapshots_removed")
    if any(k in stats for k in keys):
        return "would keep {} and remove {} snapshot(s)".format(
            stats.get("snapshots_kept", "?"), stats.get("snapshots_removed", "?"))
    if record["status"] == "succeeded":
        return "no snapshot matches the filters: nothing to keep or remove"
    return run_log(config, record).rstrip()


def unlock(config_file: str | None, args: list[str]) -> int:
    p = parser("unlock", "restic unlock as job unlock (stale locks only unless --remove-all); "
                         "--dry-run lists the locks and removes nothing.")
    p.add_argument("--remove-all", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    opts = p.parse_args(args)
    config = load_config(config_file)
    configured = config.jobs.get("unlock")
    base = configured if configured and configured.uses_restic else repository_job(config)
    if opts.dry_run:
        return _list_locks(base)
    job = one_off(config, base, "unlock", "unlock",
                  args=("--remove-all",) if opts.remove_all else ())
    return exit_code(run_once(with_job(config, job), job.name))


def _list_locks(base: Any) -> int:
    import subprocess

    from runner.engine.childenv import resolve_environment

    tool = resolve_environment(base)
    done = subprocess.run([base.restic.binary, "list", "locks", "--no-lock"], env=tool.env,
                          capture_output=True, text=True, check=False, timeout=300,
                          stdin=subprocess.DEVNULL)
    locks = [line for line in done.stdout.splitlines() if line.strip()]
    for line in locks:
        echo(line)
    if done.returncode != 0:
        echo(done.stderr.strip(), err=True)
        return done.returncode
    echo(f"{len(locks)} lock(s) in {tool.repository}; --dry-run: nothing removed")
    return 0


# --- init-repo ------------------------------------------------------------------------------

def init_repo(config_file: str | None, args: list[str]) -> int:
    p = parser("init-repo", "Probe the repository and create it with restic init when it does "
                            "not exist (exit 3 when it exists).")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--yes", "-y", action="store_true")
    p.add_argument("init_args", nargs="*", help="after --: passed to restic init")
    opts = p.parse_args(args)
    from runner.cli.peerdoc import on_off, peer_document, write_peer_document
    from runner.engine.childenv import resolve_environment

    started = time.time()
    config = load_config(config_file)
    base = repository_job(config)
    tool = resolve_environment(base)
    init_args = [*os.environ.get("RESTIC_INIT_ARGS", "").split(), *opts.init_args]
    state = {"existed": "unknown", "probe": -1, "confirmed": False}
    code = _init_repo(base, tool, init_args, opts, state)
    document = peer_document(config, "init-repo", code, started, {
        "repository": tool.repository or "", "dry_run": on_off(opts.dry_run),
        "assume_yes": on_off(opts.yes), "confirmed": on_off(state["confirmed"]),
        "repo_existed": state["existed"], "probe_exit_code": state["probe"],
        "init_args": " ".join(init_args)})
    for problem in write_peer_document(config, document):
        echo(f"warning: {problem}", err=True)
    return code


def _init_repo(base: Any, tool: Any, init_args: list[str], opts: argparse.Namespace,
               state: dict[str, Any]) -> int:
    """Probe, then `restic init` when the probe says there is no repository; the exit code.
    `state` gets what the helper recorded: existed, probe (exit code), confirmed."""
    import subprocess

    from runner.engine.binaries import probe_repository

    probe = probe_repository(base.restic.binary, tool.env)
    state["probe"] = -1 if probe.exit_code is None else probe.exit_code
    echo(f"repository {tool.repository}: restic cat config: {probe.status} "
         f"(exit {probe.exit_code}): {probe.message}")
    planned = shlex.join(["restic", "init", *init_args])
    if probe.status == "ok":
        state["existed"] = "true"
        echo("the repository exists: nothing to do")
        return 0 if opts.dry_run else 3
    if probe.status != "missing":
        echo(f"restic-runner: error: not initialising: the probe says {probe.status}", err=True)
        return EXIT_USAGE
    state["existed"] = "false"
    echo(f"planned: {planned}")
    if opts.dry_run:
        return 0
    if not opts.yes:
        if not sys.stdin.isatty():
            echo("restic-runner: error: no terminal to confirm on: pass --yes", err=True)
            return EXIT_USAGE
        if input("Type 'init' to create the repository: ").strip() != "init":
            echo("cancelled: nothing created")
            return 0
    state["confirmed"] = True
    done = subprocess.run([base.restic.binary, "init", *init_args], env=tool.env,
                          capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)
    for line in (done.stdout + done.stderr).splitlines():
        echo(line, err=done.returncode != 0)
    return 0 if done.returncode == 0 else 1


# --- restore-test ---------------------------------------------------------------------------

def _on(value: str | None) -> bool:
    return (value or "").strip().upper() == "ON"


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdecimal() else None


def _canary(text: str) -> tuple[str, str]:
    path, sep, digest = text.rpartition("=")
    if not sep or not path.startswith("/") or len(digest) != 64:
        raise ValueError(text)
    int(digest, 16)
    return path, digest.lower()


def _env_canaries(value: str) -> list[tuple[str, str]]:
    try:
        return [_canary(c) for c in value.split()]
    except ValueError:
        raise UserError("RESTORE_TEST_CANARY: expected /PATH=SHA256 entries (64 hex digits), "
                        "separated by spaces") from None


def _canary_file(path: str) -> list[tuple[str, str]]:
    """`sha256sum` lines: `<digest>  <path>`; blank lines and # comments skipped. A line that is
    not one is reported by its number only (the file may be anything: its text is not shown)."""
    try:
        lines = Path(path).read_bytes().decode().splitlines()
    except OSError as exc:
        raise UserError(f"--canary-file {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"--canary-file {path}: not UTF-8 text (sha256sum lines)") from None
    found = []
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            digest, _, name = line.strip().partition(" ")
            try:
                found.append(_canary(f"{name.strip().lstrip('*')}={digest}"))
            except ValueError:
                raise UserError(f"--canary-file {path}: line {number} is not a sha256sum line "
                                "(64 hex digits, then an absolute path)") from None
    return found


def restore_test(config_file: str | None, args: list[str]) -> int:
    p = parser("restore-test", "Restore a snapshot into a scratch directory and check it (file "
                               "count, SHA-256 canaries), as job restore-test.")
    env = os.environ.get
    p.add_argument("--id", default="latest")
    p.add_argument("--tag", default=None)
    p.add_argument("--host", default=None)
    p.add_argument("--path", action="append", default=env("RESTORE_TEST_PATH", "").split())
    p.add_argument("--target", default=env("RESTORE_TEST_TARGET") or None)
    p.add_argument("--keep", action="store_true", default=_on(env("RESTORE_TEST_KEEP")))
    p.add_argument("--force", action="store_true")
    p.add_argument("--canary", action="append", type=_canary,
                   default=_env_canaries(env("RESTORE_TEST_CANARY", "")))
    p.add_argument("--canary-file", default=env("RESTORE_TEST_CANARY_FILE") or None)
    p.add_argument("--min-files", type=int, default=_int_or_none(env("RESTORE_TEST_MIN_FILES")))
    p.add_argument("--verify", action="store_true", default=_on(env("RESTORE_TEST_VERIFY")))
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--yes", "-y", action="store_true")
    opts = p.parse_args(args)
    from runner.cli.restore import check_includes, check_snapshot

    check_snapshot(opts.id)
    check_includes(tuple(opts.path))
    config = load_config(config_file)
    configured = next((j for j in config.jobs.values() if j.kind == "restore-test"), None)
    base = configured or repository_job(config)
    canaries = dict(configured.canaries) if configured else {}
    canaries.update(opts.canary)
    if opts.canary_file:
        canaries.update(_canary_file(opts.canary_file))
    target = Path(os.path.realpath(opts.target)) if opts.target else (
        base.target_dir or config.state_dir / "restore-test" / "restore-test")
    if opts.dry_run:
        from runner.cli.restore import check_dry_run

        check_dry_run(base)
    elif opts.target and target.exists() and any(target.iterdir()):
        echo(f"restic-runner: error: --target {target} is not empty: restore-test clears its "
             "target before restoring, so it takes only an empty or new directory"
             + (" (--force cannot change that)" if opts.force else ""), err=True)
        return EXIT_USAGE
    filters: list[str] = []
    if opts.id == "latest":
        tag = opts.tag if opts.tag is not None else _env_tag()
        host = opts.host if opts.host is not None else config.hostname
        filters = [f"--tag={tag}"] * bool(tag) + [f"--host={host}"] * bool(host)
    min_files = opts.min_files if opts.min_files is not None else (
        configured.min_files if configured else 1)
    job = one_off(config, base, "restore-test", "restore-test", snapshot=opts.id,
                  include=tuple(opts.path) or (configured.include if configured else ()),
                  target_dir=target, keep=opts.keep or bool(configured and configured.keep),
                  min_files=min_files, canaries=canaries, dry_run=opts.dry_run,
                  args=(*(configured.args if configured else ()), *filters,
                        *["--verify"] * opts.verify))
    return exit_code(run_once(with_job(config, job), job.name))


# --- restore --------------------------------------------------------------------------------

def restore(config_file: str | None, args: list[str]) -> int:
    p = parser("restore", "Restore a snapshot (default: latest of this host and tag) into "
                          "--target (default /restore), as job restore; never interactive.")
    p.add_argument("--id", default="")
    p.add_argument("--tag", default=None)
    p.add_argument("--host", default=None)
    p.add_argument("--since", default="")
    p.add_argument("--target", default="/restore")
    p.add_argument("--include", action="append", default=[])
    p.add_argument("--exclude", action="append", default=[])
    p.add_argument("--owner", default="")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--verify", action="store_true")
    p.add_argument("--verbose", "-v", action="store_true", help="print the run's log after it")
    p.add_argument("--yes", "-y", action="store_true", help="accepted: nothing is asked")
    p.add_argument("--force", action="store_true")
    p.add_argument("--list", action="store_true")
    p.add_argument("--all", action="store_true")
    opts = p.parse_args(args)
    from runner.cli.restore import RestoreRequest

    config = load_config(config_file)
    request = RestoreRequest(
        snapshot=opts.id or "latest", target=opts.target, include=tuple(opts.include),
        exclude=tuple(opts.exclude), tag=_env_tag() if opts.tag is None else opts.tag,
        host=config.hostname if opts.host is None else opts.host, since=opts.since,
        dry_run=opts.dry_run, verify=opts.verify, force=opts.force)
    if opts.list:
        return list_snapshots(config, request, limit=None if opts.all else 20)
    return run_restore(config, request, owner=opts.owner, verbose=opts.verbose)


def list_snapshots(config: Config, request: Any, *, limit: int | None,
                   as_json: bool = False) -> int:
    from runner.cli.restore import matching_snapshots
    from runner.cli.snapshots import snapshots_table
    from runner.engine.childenv import resolve_environment

    base = repository_job(config, request.job)
    found = matching_snapshots(base, request)
    if as_json:
        echo(json.dumps(found, indent=2))
        return 0
    echo(f"snapshots in {resolve_environment(base).repository} (tag {request.tag or '*'}, "
         f"host {request.host or '*'}, newest first):")
    echo(snapshots_table(found[:limit]))
    if limit is not None and len(found) > limit:
        echo(f"({limit} of {len(found)} shown; --all shows every one)")
    return 0


def run_restore(config: Config, request: Any, *, owner: str = "", verbose: bool = False,
                as_json: bool = False) -> int:
    """The one-off `restore` job through the engine; `--owner` after a real success. An
    `--owner` this process cannot apply fails before anything is restored; one that fails
    after the restore fails the command (exit 1) though the files stay restored."""
    from runner.cli.restore import (
        chown_refusal,
        chown_tree,
        ownership_warning,
        parse_owner,
        restore_job,
    )

    refusal = chown_refusal(*parse_owner(owner)) if owner and not request.dry_run else ""
    if refusal:
        echo(f"restic-runner: error: {refusal}; nothing restored", err=True)
        return 1
    config, job = restore_job(config, request)
    warning = "" if request.dry_run else ownership_warning()
    if warning:
        echo(warning, err=True)
    echo(f"restoring {job.snapshot} into {job.target_dir}" + (" (dry run)" if request.dry_run
                                                               else ""), err=as_json)
    record = run_once(config, job.name, as_json=as_json)
    if verbose:
        echo(run_log(config, record).rstrip(), err=as_json)
    if record["status"] == "skipped":  # nothing was restored: not a success
        return EXIT_BUSY
    stats = record.get("stats") or {}
    if "files_restored" in stats:
        echo(f"restored {stats['files_restored']} files and directories, "
             f"{stats.get('bytes_restored', 0)} bytes, into {job.target_dir}", err=as_json)
    code = exit_code(record)
    if code == 0 and owner and not request.dry_run and record["status"] == "succeeded":
        problem = chown_tree(Path(str(job.target_dir)), owner)
        if problem:
            echo(f"restic-runner: error: --owner: {problem}", err=True)
            return 1
    return code


# --- rotate_log -----------------------------------------------------------------------------

def _positive(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    if not (value.isascii() and value.isdecimal() and int(value) > 0):
        raise UserError(f"{name} must be a positive integer (got {value!r})")
    return int(value)


def rotate_log(config_file: str | None, args: list[str]) -> int:
    """compat_log_dir's cron.log, archived as `cron_log_<time>.tar.gz` once it reaches
    CRON_LOG_MAX_SIZE bytes (1 MiB), the newest MAX_CRON_LOG_ARCHIVES (5) archives kept."""
    parser("rotate_log", "Archive and empty compat_log_dir's cron.log once it is "
                         "CRON_LOG_MAX_SIZE bytes.").parse_args(args)
    from runner.cli.compat_rotate import RotationRefused, rotate_cron_log

    max_size = _positive("CRON_LOG_MAX_SIZE", 1048576)
    keep = _positive("MAX_CRON_LOG_ARCHIVES", 5)
    directory = load_config(config_file).compat_log_dir
    if directory is None:
        echo("rotate_log: no cron.log to rotate: compat_log_dir is not set (service logs go to "
             "stdout; each run keeps its own log)", err=True)
        return EXIT_USAGE
    try:
        done = rotate_cron_log(directory, max_size, keep)
    except RotationRefused as exc:
        echo(f"rotate_log: {exc}", err=True)
        return 1
    echo(f"rotate_log: {done}")
    return 0


HANDLERS: dict[str, Callable[[str | None, list[str]], int]] = {
    "rotate_log": rotate_log,
    "status": status, "doctor": doctor, "config-check": config_check, "cron-list": cron_list,
    "forget-preview": forget_preview, "unlock": unlock,
    "init-repo": init_repo, "restore-test": restore_test, "restore": restore,
}
