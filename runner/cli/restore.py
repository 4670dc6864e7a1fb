"""`restic-runner restore` (and restic-backup-helper's `/bin/restore`): restore one snapshot into
a target directory as a run of the one-off job `restore`, locked, recorded, masked and notified
like any job (docs/cli.md). The target is checked first, as restic-backup-helper checks it: a
target that cannot be written is refused, and so are a non-empty target, `/`, `/data` and the
backup sources, unless `--force`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from runner.cli.adhoc import one_off, repository_job, with_job
from runner.configuration.config import Config, JobConfig
from runner.errors import UserError

RESTORE_JOB = "restore"
CONVENTIONAL_SOURCE = "/data"  # restic-backup-helper's conventional backup source


class RestoreRefused(UserError):
    """The target is not one we restore into (exit 1, as restic-backup-helper's refusals)."""

    exit_code = 1


class RestoreRequest(NamedTuple):
    snapshot: str = "latest"
    target: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    tag: str = ""  # snapshot filters (for `latest` and --since)
    host: str = ""
    since: str = ""
    dry_run: bool = False
    verify: bool = False
    force: bool = False
    job: str | None = None  # whose repository (default: the first restic job's)


def protected_targets(config: Config, base: JobConfig) -> set[str]:
    """Where a restore would land on the sources: `/`, `/data`, BACKUP_ROOT_DIR and every
    backup job's paths."""
    paths = {"/", CONVENTIONAL_SOURCE, os.environ.get("BACKUP_ROOT_DIR") or "/"}
    for job in config.jobs.values():
        if job.kind == "backup" and job.restic.repository == base.restic.repository:
            paths.update(job.paths)
    return {os.path.normpath(p) for p in paths}


def check_target(config: Config, base: JobConfig, request: RestoreRequest) -> Path:
    """The target, made if missing, or RestoreRefused saying why not."""
    if not request.target:
        raise UserError("--target must not be empty")
    target = Path(os.path.abspath(request.target))
    if str(target) in protected_targets(config, base) and not request.force:
        raise RestoreRefused(f"refusing to restore into {target}: it is / or a backup source "
                             "(pick another --target, e.g. /restore, or pass --force)")
    if not target.is_dir():
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RestoreRefused(f"restore target {target} does not exist and could not be "
                                 f"created ({exc.strerror})") from None
    if not os.access(target, os.W_OK | os.X_OK):
        raise RestoreRefused(f"restore target {target} is not writable (mounted read-only? "
                             "pick another --target)")
    if not (request.force or request.dry_run) and any(target.iterdir()):
        raise RestoreRefused(f"restore target {target} is not empty: pass --force to restore "
                             "over it, --dry-run to preview, or pick another --target")
    return target


def snapshot_matches(snapshot: dict[str, Any], request: RestoreRequest) -> bool:
    if request.tag and request.tag not in (snapshot.get("tags") or []):
        return False
    if request.host and snapshot.get("hostname") != request.host:
        return False
    return not request.since or str(snapshot.get("time", ""))[:19] >= request.since


def matching_snapshots(base: JobConfig, request: RestoreRequest) -> list[dict[str, Any]]:
    """The snapshots the filters select, newest first, masked."""
    from runner.cli.snapshots import list_snapshots

    return [s for s in list_snapshots(base) if snapshot_matches(s, request)]


def resolve_snapshot(base: JobConfig, request: RestoreRequest) -> str:
    """`--since`: the oldest matching snapshot newer than the date; else the id (or `latest`)."""
    if not request.since:
        return request.snapshot or "latest"
    found = matching_snapshots(base, request)
    if not found:
        raise UserError(f"no snapshot matches (tag {request.tag or '*'}, host "
                        f"{request.host or '*'}, since {request.since})")
    return str(found[-1]["id"])


DRY_RUN_SINCE = (0, 17, 0)  # restic restore --dry-run


def check_dry_run(base: JobConfig) -> None:
    """A dry run needs restic 0.17: an older one is told before anything runs."""
    from runner.engine.binaries import tool_info

    version = tool_info(base.restic.binary).version
    if version and tuple(int(x) for x in version.split(".")) < DRY_RUN_SINCE:
        raise UserError(f"--dry-run: restic {version} has no `restore --dry-run` (restic 0.17 "
                        "and later)")


def restore_job(config: Config, request: RestoreRequest) -> tuple[Config, JobConfig]:
    """The config with the one-off `restore` job this request runs."""
    base = repository_job(config, request.job)
    if request.dry_run:
        check_dry_run(base)
    target = check_target(config, base, request)
    snapshot = resolve_snapshot(base, request)
    args: list[str] = []
    if snapshot == "latest":  # restic applies the filters to `latest`
        args += [f"--tag={request.tag}"] if request.tag else []
        args += [f"--host={request.host}"] if request.host else []
    args += [f"--exclude={path}" for path in request.exclude]
    args += ["--verify"] if request.verify else []
    job = one_off(config, base, RESTORE_JOB, "restore", snapshot=snapshot,
                  target_dir=target, include=request.include, args=tuple(args),
                  dry_run=request.dry_run, description=f"restore {snapshot} into {target}")
    return with_job(config, job), job


def chown_tree(target: Path, owner: str) -> str | None:
    """`--owner UID:GID` after a restore; the problem, if any (the restore stands)."""
    try:
        uid, gid = (int(part) for part in owner.split(":", 1))
    except ValueError:
        return f"--owner {owner}: expected UID:GID in numbers"
    try:
        os.chown(target, uid, gid)
        for root, dirs, files in os.walk(target):
            for name in dirs + files:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
    except OSError as exc:
        return f"chown {owner} {target} failed ({exc.strerror}); the restore itself succeeded"
    return None
