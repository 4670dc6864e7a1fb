"""Environment mode: the jobs restic-backup-helper can run, from its variables
(docs/migration.md). Every job its /bin commands run by hand exists whether or not its `*_CRON`
is set: `backup`, `check`, `forget`, `prune`, `unlock` and `replicate` (every line of the job
file in one job). A value that makes a job impossible disables that job alone, with the reason
(`Builder.disable`); the others run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from runner.configuration.replicatelines import parse_lines
from runner.configuration.schedule import never_fires, parse_schedule

HOOKS_DIR = "/hooks"
UNBOUNDED_HOOK = "24h"  # what HOOK_TIMEOUT=0 ("no limit" in restic-backup-helper) becomes
# job -> (its cron variable, its arguments variable)
MAINTENANCE = {"check": ("CHECK_CRON", "RESTIC_CHECK_ARGS"),
               "forget": ("FORGET_CRON", "RESTIC_FORGET_ARGS"),
               "prune": ("PRUNE_CRON", "RESTIC_PRUNE_ARGS")}


class Builder(Protocol):
    env: dict[str, str]
    given: frozenset[str]  # the variables the user set (before the defaults)
    warnings: list[str]
    problems: dict[str, str]

    def get(self, name: str) -> str | None: ...
    def note(self, key: str, variable: str) -> None: ...
    def disable(self, job: str, reason: str, *, requested: bool = True) -> None: ...


def split_args(value: str | None) -> list[str]:
    """`*_ARGS` are split on whitespace, without quoting (as restic-backup-helper does)."""
    return (value or "").split()


def has_policy(args: list[str]) -> bool:
    return any(a.startswith("--keep-") for a in args)


def read_jobs(b: Builder) -> dict[str, Any]:
    jobs: dict[str, Any] = {}
    backup = _backup(b)
    if backup:
        jobs["backup"] = backup
    for name, (cron_var, args_var) in MAINTENANCE.items():
        job: dict[str, Any] = {"kind": name, "args": split_args(b.get(args_var))}
        b.note(f"jobs.{name}.args", args_var)
        _schedule(b, job, name, cron_var)
        if name == "forget" and not has_policy(job["args"]):
            what = "is empty" if not job["args"] else "has no --keep-* option"
            b.disable(name, f"RESTIC_FORGET_ARGS {what}: no retention policy",
                      requested=bool(b.get(cron_var) or b.get(args_var)))
            continue
        jobs[name] = job
    jobs["unlock"] = {"kind": "unlock"}
    replicate = _replicate(b)
    if replicate:
        jobs["replicate"] = replicate
    _hooks(b, jobs)
    return jobs


def _backup(b: Builder) -> dict[str, Any] | None:
    backup: dict[str, Any] = {"kind": "backup", "args": split_args(b.get("RESTIC_JOB_ARGS"))}
    b.note("jobs.backup.args", "RESTIC_JOB_ARGS")
    b.note("jobs.backup.paths", "BACKUP_ROOT_DIR")
    b.note("jobs.backup.tags", "RESTIC_TAG")
    b.note("jobs.backup.forget_args", "RESTIC_FORGET_ARGS")
    _schedule(b, backup, "backup", "BACKUP_CRON")
    tags = [t.strip() for t in (b.env.get("RESTIC_TAG") or "").split(",") if t.strip()]
    if not tags:
        b.disable("backup", "RESTIC_TAG is empty: every backup needs a tag (set a non-empty "
                            "RESTIC_TAG or unset it for the default, automated)")
        return None
    backup["tags"] = tags
    root = b.get("BACKUP_ROOT_DIR")
    if root:
        backup["paths"] = [root]  # one path, spaces and all, as the helper quotes it
    elif not backup["args"]:
        b.disable("backup", "BACKUP_ROOT_DIR and RESTIC_JOB_ARGS are both empty (no backup "
                            "paths)")
        return None
    forget_args = split_args(b.get("RESTIC_FORGET_ARGS"))
    if forget_args and not b.get("FORGET_CRON"):  # forget after a successful backup
        if has_policy(forget_args):
            backup["forget_args"] = forget_args
        else:
            b.warnings.append("RESTIC_FORGET_ARGS has no --keep-* option: no forget after the "
                              "backup (restic would remove nothing)")
    return backup


def _schedule(b: Builder, job: dict[str, Any], name: str, variable: str) -> None:
    """The job's schedule from its cron variable: none when empty; none (by hand only) for the
    never-firing idiom `0 0 31 2 *`; none, and a problem, for an expression cron would refuse."""
    cron = (b.get(variable) or "").strip()
    if not cron:
        return
    b.note(f"jobs.{name}.schedule", variable)
    if never_fires(cron):
        b.warnings.append(f"{variable}={cron!r} never fires: {name} runs only by hand")
        return
    try:
        parse_schedule(cron)
    except ValueError as exc:
        b.problems[variable] = f"{exc}; {name} is not scheduled (it still runs by hand)"
        return
    job["schedule"] = cron


def _replicate(b: Builder) -> dict[str, Any] | None:
    """One job for every line of REPLICATE_JOB_FILE, as one /bin/replicate run processes them."""
    requested = bool(b.get("REPLICATE_CRON"))
    path = Path(b.get("REPLICATE_JOB_FILE") or "/config/replicate_jobs.txt")
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        b.disable("replicate", f"REPLICATE_JOB_FILE {path} cannot be read ({exc.strerror})",
                  requested=requested)
        return None
    if not text:
        b.disable("replicate", f"REPLICATE_JOB_FILE {path} is empty", requested=requested)
        return None
    if ";" not in text:
        b.disable("replicate", f"REPLICATE_JOB_FILE {path} does not contain semicolons for "
                               "separation", requested=requested)
        return None
    lines = text.splitlines()
    if not parse_lines(lines, ()):
        b.disable("replicate", f"REPLICATE_JOB_FILE {path} has no job lines",
                  requested=requested)
        return None
    job: dict[str, Any] = {"kind": "replicate", "lines": lines,
                           "args": split_args(b.get("REPLICATE_JOB_ARGS"))}
    b.note("jobs.replicate.lines", "REPLICATE_JOB_FILE")
    b.note("jobs.replicate.args", "REPLICATE_JOB_ARGS")
    _schedule(b, job, "replicate", "REPLICATE_CRON")
    if on(b.get("REPLICATE_BISYNC_CHECK_ACCESS")):  # the engine gives it to bisync calls only
        job["args"].append("--check-access")
        b.note("jobs.replicate.args", "REPLICATE_BISYNC_CHECK_ACCESS")
    return job


def on(value: str | None) -> bool:
    return (value or "").upper() == "ON"


def _is_executable(path: Path) -> bool:
    return _is_file(path) and os.access(path, os.X_OK)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a directory name too long, or with a NUL in it
        return False


def _hooks(b: Builder, jobs: dict[str, Any]) -> None:
    """`/hooks/pre-<job>.sh` and `/hooks/post-<job>.sh` when present; a failing (or not
    executable) pre hook does not stop the job (restic-backup-helper ignores it); the hooks
    get the whole environment (`hook_env = ["*"]`), as the helper's hooks did."""
    directory = Path(b.get("RESTIC_RUNNER_HOOKS_DIR") or HOOKS_DIR)
    timeout = _hook_timeout(b)
    for name, job in jobs.items():
        b.note(f"jobs.{name}.hook_timeout", "HOOK_TIMEOUT")
        job["hook_env"] = ["*"]
        job["pre_hook_on_error"] = "continue"
        job["hook_timeout"] = timeout
        for phase in ("pre", "post"):
            hook = directory / f"{phase}-{name}.sh"
            if not _is_file(hook):
                continue
            # one that is not executable stays configured: each run reports it (exit 126) and
            # goes on, as the helper's runs did; start-up names it with the helper's message
            job[f"{phase}_hook"] = [str(hook)]
            if not _is_executable(hook):
                b.warnings.append(f"Hook {phase}-{name} is not executable ({hook}); skipping.")


def _hook_timeout(b: Builder) -> str:
    """HOOK_TIMEOUT seconds; 0 (the default) means no limit in restic-backup-helper, which
    restic-runner bounds at a day."""
    value = b.env.get("HOOK_TIMEOUT", "0")
    if value.isascii() and value.isdecimal() and int(value) > 0:
        return f"{int(value)}s"
    if value and not (value.isascii() and value.isdecimal()):
        b.warnings.append(f"HOOK_TIMEOUT={value!r} is not a non-negative integer; hooks run "
                          f"without a timeout (bounded at {UNBOUNDED_HOOK})")
    elif value and "HOOK_TIMEOUT" in b.given:
        b.warnings.append(f"HOOK_TIMEOUT=0 (no limit) becomes {UNBOUNDED_HOOK}: restic-runner "
                          "bounds every hook")
    return UNBOUNDED_HOOK
