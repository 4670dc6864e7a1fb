"""`restic-runner doctor`: read-only diagnostics. Nothing here writes to a repository."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.checks import FAIL, INFO, OK, WARN, Check
from runner.configuration.config import Config, JobConfig
from runner.configuration.load import load_config
from runner.engine.binaries import probe_repository, tool_info
from runner.errors import UserError
from security.masking import redact_text
from security.secretfiles import file_access, lenient_problem, world_readable_accepted

if TYPE_CHECKING:
    from notifiers.base import Target
    from notifiers.outbox import Outbox

SCHEMA = "restic-runner.doctor/1"


def config_secret_files(config: Config) -> dict[Path, str]:
    """Every secret file the config names, with the key that names it."""
    found: dict[Path, str] = {}
    for job in config.jobs.values():
        where = f"jobs.{job.name}"
        r, c = job.restic, job.rclone
        if job.uses_restic:
            for key, path in (("password_file", r.password_file),
                              ("repository_file", r.repository_file)):
                if path:
                    found.setdefault(path, f"{where}.{key}")
            for name, path in r.env_files.items():
                found.setdefault(path, f"{where}.env_files.{name}")
        else:
            if c.config:
                found.setdefault(c.config, f"{where}.config (rclone)")
            for name, path in c.env_files.items():
                found.setdefault(path, f"{where}.env_files.{name}")
    for index, client in enumerate(config.clients):
        for key, path in (("secret_file", client.secret_file), ("token_file", client.token_file)):
            if path:
                found.setdefault(path, f"clients[{index}].{key} ({client.name})")
    from runner.configuration.notify import secret_files as notify_secret_files

    for key, path in notify_secret_files(config.notify, config.signing):
        found.setdefault(path, key)
    return found


def _secret_file_checks(config: Config) -> list[Check]:
    checks = []
    for path, key in config_secret_files(config).items():
        access = file_access(path)
        if not access.exists or not access.readable:
            checks.append(Check("secrets", FAIL, f"{key}: {path} is missing or not readable"))
        elif access.world_readable and world_readable_accepted():
            problem = lenient_problem(access)
            checks.append(
                Check("secrets", FAIL, f"{key}: {access.describe()} {problem}; run and serve "
                                       "refuse it") if problem else
                Check("secrets", WARN, f"{key}: {access.describe()} is readable by every local "
                                       "user; accepted in environment mode (a Docker or "
                                       "Kubernetes secret mount), better mounted 0400 or 0440"))
        elif access.world_readable:
            checks.append(Check("secrets", FAIL, f"{key}: {access.describe()} is readable by "
                                f"every local user; run and serve refuse it (chmod o-rwx)"))
        elif access.group_readable:
            checks.append(Check("secrets", WARN, f"{key}: {access.describe()} is "
                                "group-readable (fine for Kubernetes fsGroup mounts)"))
        else:
            checks.append(Check("secrets", OK, f"{key}: {access.describe()}"))
    for job in config.jobs.values():
        if job.uses_restic and job.restic.password:
            checks.append(Check("secrets", WARN, f"jobs.{job.name}: password is inline in "
                                "the config; prefer password_file"))
    return checks


def _environment_mode_checks(config: Config) -> list[Check]:
    """The warnings; a job environment mode disabled, or a setting it could not apply, fails
    (a disabled job nobody asked for is only noted)."""
    from runner.configuration.environment import disabled_warning, problem_warning

    checks, told = [], set()
    for name, reason in config.disabled.items():
        requested = name not in config.unrequested
        checks.append(Check("config", FAIL if requested else INFO,
                            f"job {name} is disabled: {reason}"
                            + ("" if requested else " (not scheduled: nothing to run)")))
        told.add(disabled_warning(name, reason))
    for what, reason in config.problems.items():
        checks.append(Check("config", FAIL, problem_warning(what, reason)))
        told.add(problem_warning(what, reason))
    secrets_told = [w for w in config.warnings if "accepted in environment mode" in w]
    return [Check("config", WARN, warning) for warning in config.warnings
            if warning not in told and warning not in secrets_told] + checks


def _tool_checks(config: Config) -> list[Check]:
    """restic and rclone with their versions; missing is a failure only if a job needs it."""
    needed = {j.restic.binary if j.uses_restic else j.rclone.binary for j in config.jobs.values()}
    checks = []
    for binary in sorted(needed | {config.restic.binary, config.rclone.binary}):
        info = tool_info(binary)
        if info.error:
            checks.append(Check("binaries", FAIL if binary in needed else WARN, info.error))
        else:
            checks.append(Check("binaries", OK, f"{binary}: {info.banner} ({info.path})"))
    return checks


def _repository_checks(config: Config) -> list[Check]:
    from runner.engine.childenv import resolve_environment

    checks, seen = [], set()
    for job in config.jobs.values():
        if not job.uses_restic:
            continue
        try:
            tool = resolve_environment(job)
        except UserError as exc:
            checks.append(Check("repository", FAIL, redact_text(str(exc))))
            continue
        key = (job.restic.binary, tool.repository, tool.env.get("RESTIC_PASSWORD_FILE"))
        if key in seen:
            continue
        seen.add(key)
        probe = probe_repository(job.restic.binary, tool.env)
        status = OK if probe.status == "ok" else FAIL
        checks.append(Check("repository", status,
                            f"{tool.repository} (job {job.name}): {probe.message}"))
    return checks


def _state_dir_check(config: Config) -> Check:
    from runner.fsutil import private_dir

    state = config.state_dir
    try:
        if not state.exists():
            private_dir(state)  # made 0700; an existing one is only looked at
        with tempfile.NamedTemporaryFile(dir=state, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("state", FAIL, f"state_dir {state} is not writable: {exc.strerror}")
    return Check("state", OK, f"state_dir {state} is writable")


def _state_mode_checks(state: Path) -> list[Check]:
    """Who else may read or change the state directory and what restic-runner keeps in it."""
    import stat

    info = state.stat()
    mode, ours = stat.S_IMODE(info.st_mode), info.st_uid == os.geteuid()
    checks = []
    if mode & stat.S_IWOTH:
        action = "run and serve tighten it to 0700" if ours else "run and serve refuse it"
        checks.append(Check("state", FAIL, f"state_dir {state} (mode {mode:04o}) is writable "
                                             f"by every local user; {action}"))
    elif mode & 0o077:
        action = ("run and serve tighten it to 0700" if ours else "not ours to tighten (a "
                  "volume shared with a group?); the files in it are 0600 all the same")
        checks.append(Check("state", WARN, f"state_dir {state} (mode {mode:04o}) is open to "
                                             f"group or others; {action}"))
    else:
        checks.append(Check("state", OK, f"state_dir {state} (mode {mode:04o}) is private"))
    open_files, links = [], []
    for path in _state_entries(state):
        entry = path.lstat()
        if stat.S_ISLNK(entry.st_mode):
            links.append(path.relative_to(state))
        elif stat.S_IMODE(entry.st_mode) & 0o077 and not stat.S_ISSOCK(entry.st_mode):
            open_files.append(f"{path.relative_to(state)} ({stat.S_IMODE(entry.st_mode):04o})")
    if links:
        checks.append(Check("state", FAIL, f"symlinks in state_dir, refused by run and serve: "
                                             f"{', '.join(map(str, links[:10]))}"))
    if open_files:
        more = f" and {len(open_files) - 10} more" if len(open_files) > 10 else ""
        checks.append(Check("state", WARN, "open to group or others (tightened to 0600/0700 "
                                             f"when next opened): {', '.join(open_files[:10])}"
                                             f"{more}"))
    return checks


def _state_entries(state: Path) -> list[Path]:
    """What restic-runner keeps in `state_dir`: its files, and its directories with theirs (the
    run logs one level deeper), not the restic cache or a restore rehearsal's scratch tree."""
    found = []
    for path in state.iterdir():
        found.append(path)
        if path.name in ("locks", "leases", "env-secrets", "logs") and _real_dir(path):
            for sub in path.iterdir():
                found.append(sub)
                if path.name == "logs" and sub.is_dir() and not sub.is_symlink():
                    found.extend(sub.iterdir())
    return found


def _real_dir(path: Path) -> bool:
    """A directory itself, not a link to one (nor a file planted under a directory's name)."""
    return path.is_dir() and not path.is_symlink()


def _store_size_check(state: Path) -> Check:
    """The history's size on disk: the database with its write-ahead log, and the run logs."""
    database = sum(p.stat().st_size for p in (state / "history.db", state / "history.db-wal")
                   if p.is_file())
    logs = 0
    if (state / "logs").is_dir():
        logs = sum(p.stat().st_size for p in (state / "logs").rglob("*.log") if p.is_file())
    return Check("state", INFO, f"history: database {_mib(database)}, run logs {_mib(logs)} "
                                  "(kept as [history] and keep_logs say)")


def _mib(size: int) -> str:
    return f"{size / 1048576:.1f} MiB"


def _job_summary(job: JobConfig) -> dict[str, Any]:
    from runner.engine.jobs import plan

    return {"kind": job.kind, "steps": [" ".join(s.argv) for s in plan(job)],
            "timeout_seconds": job.timeout}


def run_doctor(config_file: str | None, *, send_test: bool = False) -> dict[str, Any]:
    """Every check; `send_test` also sends one test event to every target (`notify-test`)."""
    try:
        config = load_config(config_file)
    except UserError as exc:
        checks = [Check("config", FAIL, str(exc))]
        return _report(checks, None)
    checks = [Check("config", OK, f"{config.path}: {len(config.jobs)} job(s)")]
    checks += _environment_mode_checks(config)
    checks += _tool_checks(config)
    checks += _secret_file_checks(config)
    checks += _repository_checks(config)
    state = _state_dir_check(config)
    checks.append(state)
    if state.status == OK:
        checks += _state_mode_checks(config.state_dir)
        checks.append(_store_size_check(config.state_dir))
    checks += _notify_checks(config, state.status == OK, send_test)
    return _report(checks, config)


def _notify_checks(config: Config, state_ok: bool, send_test: bool) -> list[Check]:
    """Each target reachable and (where that can be seen without sending) its credentials
    accepted; no event is sent unless `send_test`."""
    if not config.notify.any_target:
        return [Check("notify", INFO, "no notification targets configured")]
    if not state_ok:
        return [Check("notify", WARN, "targets not checked: the state directory is unusable")]
    from notifiers.probe import check_targets
    from runner.engine.history import History

    history = History(config.state_dir)
    checks = [Check("notify", c.status, f"{c.name}: {c.message}")
              for c in check_targets(config, history)]
    if send_test:
        from notifiers.probe import notify_test

        for r in notify_test(config, history, dry_run=False):
            detail = r.get("error") or r.get("response") or ""
            checks.append(Check("notify", OK if r["result"] == "delivered" else FAIL,
                                f"{r['target']}: test event {r['result']} ({detail})"))
    checks += _inline_url_warnings(config)
    from notifiers.outbox import Outbox
    from notifiers.registry import build_targets

    outbox = Outbox(history.db)
    checks += [Check("notify", FAIL, f"{name}: stopped, nothing is sent to it: {reason}")
               for name, reason in outbox.stopped_targets(build_targets(config)).items()]
    checks += _last_refusals(outbox, build_targets(config))
    pending = outbox.pending_retries()
    if pending:
        checks.append(Check("notify", WARN, f"{pending} deliveries pending a retry "
                                              "(see `restic-runner status`)"))
    return checks


def _last_refusals(outbox: Outbox, targets: list[Target]) -> list[Check]:
    """What each target last said when it refused a delivery (kept for the operator only, never
    in a delivery's error: docs/notifications.md), while that target is still failing: a
    delivery to it delivered since clears it."""
    checks = []
    for target in targets:
        refusal = outbox.memory(target.name).get("last_refusal")
        if isinstance(refusal, dict) and refusal.get("said"):
            checks.append(Check("notify", INFO, f"{target.name}: last refused at "
                                f"{refusal.get('at')} (HTTP {refusal.get('status')}); it "
                                f"said: {refusal['said']}"))
    return checks


def _inline_url_warnings(config: Config) -> list[Check]:
    """URLs that are credentials, written into the config instead of a file."""
    from security.masking import url_password

    n = config.notify
    urls = [(f"{w.key}.url", w.url) for w in n.webhooks]
    if n.pushgateway:
        urls.append((f"{n.pushgateway.key}.url", n.pushgateway.url))
    checks = [Check("notify", WARN, f"{key}: the URL carries a password inline; prefer "
                                      "url_file (or password_file)")
              for key, url in urls if url and url_password(url)]
    checks += [Check("notify", WARN, f"{hc.key}: the ping URL is inline "
                                       "in the config (it is the check's credential); prefer "
                                       "url_file") for hc in n.healthchecks if hc.url]
    return checks


def _report(checks: list[Check], config: Config | None) -> dict[str, Any]:
    failures = sum(c.status == FAIL for c in checks)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "ok": failures == 0,
        "failures": failures,
        "warnings": sum(c.status == WARN for c in checks),
        "checks": [{"section": c.name, "status": c.status, "message": c.message}
                   for c in checks],
        "uid": os.getuid(),
    }
    if config is not None:
        report["jobs"] = {name: _job_summary(job) for name, job in config.jobs.items()}
    return report
