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


def protected_sources(config: Config, base: JobConfig) -> set[str]:
    """Where a restore would land on the sources, resolved (no symlink, no `//`): `/data`,
    BACKUP_ROOT_DIR and every backup job's paths on this repository."""
    paths = {CONVENTIONAL_SOURCE, os.environ.get("BACKUP_ROOT_DIR") or "/"}
    for job in config.jobs.values():
        if job.kind == "backup" and job.restic.repository == base.restic.repository:
            paths.update(job.paths)
    return {os.path.realpath(p) for p in paths}


def protection(target: str, sources: set[str]) -> str:
    """Why a resolved `target` is refused without --force: it is `/`, a source, or inside one
    (a source of `/` protects only `/` itself); empty when it is none of those."""
    if target == "/":
        return "it is /"
    for source in sorted(sources):
        if target == source:
            return f"it is the backup source {source}"
        if source != "/" and target.startswith(source + "/"):
            return f"it is inside the backup source {source}"
    return ""


def check_target(config: Config, base: JobConfig, request: RestoreRequest) -> Path:
    """The target, resolved (symlinks followed: what is checked is where restic writes) and
    made if missing, or RestoreRefused saying why not."""
    if not request.target:
        raise UserError("--target must not be empty")
    target = Path(os.path.realpath(request.target))
    why = protection(str(target), protected_sources(config, base))
    if why and not request.force:
        raise RestoreRefused(f"refusing to restore into {request.target}: {why} (pick another "
                             "--target, e.g. /restore, or pass --force)")
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


def check_snapshot(snapshot: str) -> str:
    """A snapshot id (or `latest`) as restic's positional argument: never one that restic would
    read as a flag."""
    if snapshot.startswith("-"):
        raise UserError(f"snapshot id {snapshot!r}: an id never starts with '-' (a snapshot id, "
                        "its short form, or latest)")
    return snapshot


def check_includes(includes: tuple[str, ...]) -> tuple[str, ...]:
    """--include paths as paths of the snapshot: `..` leaves it, so it is refused."""
    from runner.engine.jobs.restore import include_problem

    for include in includes:
        problem = include_problem(include)
        if problem:
            raise UserError(f"--include {include!r}: {problem}")
    return includes


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
    check_snapshot(request.snapshot)
    check_includes(request.include)
    target = check_target(config, base, request)
    snapshot = check_snapshot(resolve_snapshot(base, request))
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


CAP_CHOWN, CAP_FOWNER, CAP_FSETID = 0, 3, 4  # linux/capability.h


def _capabilities(which: str) -> int:
    """This process's capability set `which` (CapEff, CapAmb …) from /proc/self/status."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith(f"{which}:"):
            return int(line.split()[1], 16)
    return 0


def restic_capabilities() -> int:
    """The capabilities a restic started from here has: root's restic ours, another user's
    only the ambient ones."""
    return _capabilities("CapEff" if os.geteuid() == 0 else "CapAmb")


def ownership_warning() -> str:
    """The line said before a restore that will not give files back their owners, modes and
    times; empty when it will. restic lchowns each file (CAP_CHOWN), then sets its times and
    mode, which for a file it no longer owns takes CAP_FOWNER (and CAP_FSETID to keep a setgid
    bit); when not root it ignores every refusal and says nothing."""
    caps, uid = restic_capabilities(), os.geteuid()
    if not caps >> CAP_CHOWN & 1:
        return (f"warning: restoring as uid {uid} without CAP_CHOWN: restic cannot give "
                f"restored files their owners back, so every restored file will be owned by "
                f"uid {uid}; restore as root to keep owners (docs/cli.md, \"Ownership\")")
    if not caps >> CAP_FOWNER & 1:
        return (f"warning: restoring as uid {uid} with CAP_CHOWN but without CAP_FOWNER: "
                "restic gives restored files their owners back, then cannot set their modes "
                "and times (docs/cli.md, \"Ownership\")")
    if not caps >> CAP_FSETID & 1:
        return (f"warning: restoring as uid {uid} without CAP_FSETID: restored files lose "
                "their setgid bit where their group is not this user's (docs/cli.md, "
                "\"Ownership\")")
    return ""


def parse_owner(owner: str) -> tuple[int, int]:
    """`--owner UID:GID` in numbers, or UserError."""
    try:
        uid, gid = (int(part) for part in owner.split(":", 1))
    except ValueError:
        raise UserError(f"--owner {owner}: expected UID:GID in numbers") from None
    if uid < 0 or gid < 0:
        raise UserError(f"--owner {owner}: expected UID:GID in numbers")
    return uid, gid


def chown_refusal(uid: int, gid: int) -> str:
    """Why this process cannot give files owner `uid:gid` (empty when it can): that needs
    CAP_CHOWN, unless the owner is this user and one of its groups."""
    if _capabilities("CapEff") >> CAP_CHOWN & 1:
        return ""
    if uid == os.geteuid() and (gid == os.getegid() or gid in os.getgroups()):
        return ""
    return (f"--owner {uid}:{gid}: this process (uid {os.geteuid()}) cannot change files' "
            "owner: it has no CAP_CHOWN; run the restore as root (with CAP_CHOWN), or chown the "
            "restored files afterwards (docs/cli.md, \"Ownership\")")


def chown_tree(target: Path, owner: str) -> str | None:
    """`--owner UID:GID` after a restore; the problem, if any (the restore stands). Walks by
    descriptor (os.fwalk): a directory swapped for a symlink while it runs is not followed,
    and no symlink is."""
    uid, gid = parse_owner(owner)

    def stop(exc: OSError) -> None:
        raise exc

    try:
        top = True
        for _root, dirs, files, root_fd in os.fwalk(target, onerror=stop,
                                                    follow_symlinks=False):
            if top:
                os.chown(root_fd, uid, gid)
                top = False
            for name in dirs + files:
                os.chown(name, uid, gid, dir_fd=root_fd, follow_symlinks=False)
    except OSError as exc:
        return f"chown {owner} {target} failed ({exc.strerror}); the files were restored"
    if top:
        return f"chown {owner} {target} failed (not a directory); the files were restored"
    return None
