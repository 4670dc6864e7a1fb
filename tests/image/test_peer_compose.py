"""restic-backup-helper 2.14.2's own compose services (read from ../shared/reference at test
time) run with this image under podman: their environment, command (`tail -fn0
/var/log/cron.log`), volumes, capabilities and user (none: root) as written, only the image
changed. The container starts, probes and initialises the repository, its compose healthcheck
(`restic cat config`, as root) passes, a backup runs (the peer's
`backup` shim, through `podman exec` as its docs/operations pages do), the snapshot is there,
/var/log/cron.log and /var/log/last-backup.json have the run, the files restic wrote belong to
the service user (not root), and `podman stop` ends it cleanly with no restic lock left.

Adapted, as a migrating user on this machine would (each container's `adapted` notes, printed):
- bind mounts (`/srv/…`, `./…`) and named volumes are temporary directories, root-owned like
  Docker's; `/:/host:ro` is not mounted; `/dev/fuse` is passed only when the host has it;
- `rclone:cloudremote:backups` (cloud-reference) reaches an rclone `alias` remote of a mounted
  directory the service user may write (as a bucket to its credentials), not a cloud;
  multi-job's `RESTIC_REPOSITORY` (its `.env`) is a local repository its three containers share;
- the password secret is a root-owned 0600 file mounted at /run/secrets/<name>, as compose
  mounts a file secret;
- multi-job's containers start one after the other, not at once: on an empty repository their
  three start-up probes would each run `restic init` at the same moment (in the peer's image
  too) and leave a damaged repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.support.compose import compose_file, load_services
from tests.support.podman import (
    IMAGE,
    SERVICE_UID,
    ULIMITS,
    HostRestic,
    exit_code,
    logs,
    podman,
    wait_for_log,
)

STARTED = "Container started."
PASSWORD = "compose-image-password"


@dataclass
class PeerContainer:
    """One compose service, ready for `podman run`."""

    file: str
    name: str
    command: tuple[str, ...]
    environment: dict[str, str]
    volumes: list[str]
    flags: list[str]
    restic: HostRestic
    tag: str
    healthcheck: str = ""  # its CMD-SHELL
    adapted: list[str] = field(default_factory=list)


def _raw_service(file: str, name: str) -> dict:
    document = yaml.safe_load(compose_file(file).read_text())
    spec = document["services"][name]
    if "<<" in spec:  # multi-job's `<<: *restic_base` (safe_load has merged it already)
        spec = {**spec.pop("<<"), **spec}
    return spec


def _volumes(volumes: tuple[str, ...], root: Path, adapted: list[str]) -> list[str]:
    """The service's volumes with their host side under `root`."""
    out = []
    for volume in volumes:
        source, target, *mode = volume.split(":")
        if source == "/":
            adapted.append(f"{volume}: not mounted")
            continue
        if source.startswith("/srv/") or source.startswith("./"):
            host = root / source.removeprefix("/srv/").removeprefix("./").replace("/", "-")
        elif source.startswith("/"):
            host = Path(source)  # /etc/localtime: the host's, as written
        else:
            host = root / "volumes" / source
            adapted.append(f"{volume}: named volume -> {host}")
        if source.endswith("msmtprc"):
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_text("defaults\nport 2525\ntls off\naccount default\nhost 127.0.0.1\n"
                            "from backup@example.invalid\n")
        elif not host.exists():
            host.mkdir(parents=True)
        out.append(":".join([str(host), target, *mode]))
    return out


def _secrets(names: tuple[str, ...], root: Path) -> list[str]:
    out = []
    for name in names:
        secret = root / "secrets" / name
        secret.parent.mkdir(exist_ok=True)
        secret.write_text(PASSWORD + "\n")
        secret.chmod(0o600)  # "chmod 600 on the host"; root-owned
        out.append(f"{secret}:/run/secrets/{name}:ro")
    return out


def _flags(spec: dict, hostname: str | None) -> list[str]:
    flags = [*ULIMITS]
    for cap in spec.get("cap_add") or ():
        flags += ["--cap-add", cap]
    for device in spec.get("devices") or ():
        if Path(device.split(":")[0]).exists():
            flags += ["--device", device]
    if hostname:
        flags += ["--hostname", hostname]
    return flags


def _container(file: str, name: str, root: Path, environ: dict[str, str] | None = None,
               ) -> tuple[PeerContainer, dict[str, Path]]:
    service = load_services(file, environ)[name]
    spec = _raw_service(file, name)
    adapted: list[str] = []
    volumes = _volumes(service.volumes, root, adapted) + _secrets(service.secrets, root)
    hosts = {v.split(":")[1]: Path(v.split(":")[0]) for v in volumes}
    restic = HostRestic(Path("/"), PASSWORD, root / "host-cache")
    container = PeerContainer(
        file=file, name=f"peer-{name}-{os.getpid()}", command=service.command,
        environment=dict(service.environment), volumes=volumes,
        flags=_flags(spec, spec.get("hostname")),
        restic=restic, tag=service.environment.get("RESTIC_TAG", "automated"), adapted=adapted,
        healthcheck=" ".join((spec.get("healthcheck") or {}).get("test", [""])[1:]))
    return container, hosts


def smoke(root: Path) -> list[PeerContainer]:
    container, hosts = _container("ci/docker-compose.smoke.yml", "restic-smoke", root)
    data = hosts["/data"]
    (data / "backup_src").mkdir()
    (data / "backup_src" / "smoke.txt").write_text("smoke data\n")  # the smoke test's seed
    for sub in ("sync_a", "sync_b"):
        (data / sub).mkdir()
    # its volumes name ./smoke-replicate_jobs.txt and ./smoke-hooks beside the compose file
    container.volumes = [v.replace(str(root / "smoke-replicate_jobs.txt"),
                                   str(compose_file("ci/smoke-replicate_jobs.txt")))
                         for v in container.volumes]
    (root / "smoke-replicate_jobs.txt").rmdir()
    shutil.rmtree(root / "smoke-hooks")
    shutil.copytree(compose_file("ci/smoke-hooks"), root / "smoke-hooks")
    for hook in (root / "smoke-hooks").glob("*.sh"):
        hook.chmod(0o755)  # the smoke test's `chmod +x ./ci/smoke-hooks/*.sh`
    container.environment["RESTIC_PASSWORD"] = PASSWORD
    container.adapted.append("RESTIC_PASSWORD: the test's (the compose file's works too)")
    container.restic = HostRestic(data / "repo", PASSWORD, root / "host-cache")
    return [container]


def cloud(root: Path) -> list[PeerContainer]:
    container, hosts = _container("examples/compose/cloud-reference.yml", "restic-cloud", root)
    config, source = hosts["/config"], hosts["/data"]
    (config / "rclone.conf").write_text("[cloudremote]\ntype = alias\nremote = /cloud\n")
    container.volumes.append(f"{root / 'cloud'}:/cloud")
    (root / "cloud").mkdir()
    os.chown(root / "cloud", SERVICE_UID, SERVICE_UID)  # as a bucket is to its credentials
    container.adapted.append("rclone remote cloudremote: an alias of a mounted /cloud, "
                             "writable by the service user")
    (config / "include_files.txt").write_text("/data\n")
    shutil.copy(compose_file("config/exclude_files.txt"), config / "exclude_files.txt")
    (source / "documents").mkdir()
    (source / "documents" / "report.txt").write_text("cloud data\n")
    container.restic = HostRestic(root / "cloud" / "backups", PASSWORD, root / "host-cache")
    return [container]


def multi(root: Path) -> list[PeerContainer]:
    file = "examples/compose/multi-job.yml"
    repository = root / "repo"
    repository.mkdir()
    containers = []
    for name in ("restic-documents", "restic-media", "restic-vmstore"):
        container, hosts = _container(file, name, root / name,
                                      {"RESTIC_REPOSITORY": "/mnt/restic"})
        container.volumes.append(f"{repository}:/mnt/restic")
        container.adapted.append(f"RESTIC_REPOSITORY (its .env): /mnt/restic, {repository}")
        (hosts["/config"] / f"exclude_{container.tag}.txt").write_text("*.DS_Store\n")
        (hosts["/data"] / f"{container.tag}.txt").write_text(f"{container.tag} data\n")
        container.restic = HostRestic(repository, PASSWORD, root / "host-cache")
        containers.append(container)
    return containers


SERVICES = {"smoke": smoke, "cloud-reference": cloud, "multi-job": multi}


def read_file(name: str, path: str) -> str:
    return podman("exec", name, "cat", path).stdout


def start(container: PeerContainer) -> None:
    env = [f"--env={key}={value}" for key, value in container.environment.items()]
    volumes = [f"--volume={volume}" for volume in container.volumes]
    podman("run", "--detach", "--name", container.name, *container.flags, *env, *volumes,
           IMAGE, *container.command)


@pytest.fixture(params=sorted(SERVICES))
def peer_containers(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PeerContainer]]:
    root = tmp_path_factory.mktemp(request.param)
    root.chmod(0o755)
    containers = SERVICES[request.param](root)
    try:
        for container in containers:  # one after the other: see the docstring
            start(container)
            wait_for_log(container.name, STARTED)
        yield containers
    finally:
        for container in containers:
            podman("rm", "--force", "--time", "5", container.name, check=False)


def test_a_peer_compose_service_runs_with_only_the_image_changed(
        peer_containers: list[PeerContainer]) -> None:
    for container in peer_containers:
        out = logs(container.name)
        assert "tail: " not in out, out
        scheduled = "Nothing is scheduled" not in out  # the smoke test's BACKUP_CRON never fires
        assert scheduled == ("Started: restic-runner schedule" in out), out
        assert podman("healthcheck", "run", container.name, check=False).returncode == 0  # ours
    for container in peer_containers:
        if container.healthcheck:  # as root, as docker runs it: restic itself, not the shim
            health = podman("exec", container.name, "sh", "-c", container.healthcheck,
                            check=False, timeout=60)
            assert health.returncode == 0, health.stdout + health.stderr
        backup = podman("exec", container.name, "backup", check=False, timeout=180)
        assert backup.returncode == 0, backup.stdout + backup.stderr

    repository = peer_containers[0].restic
    snapshots = json.loads(repository("snapshots", "--json"))
    assert {tag for s in snapshots for tag in s.get("tags") or ()} >= {
        c.tag for c in peer_containers}, snapshots
    owners = {p.stat().st_uid for p in repository.repository.rglob("*")}
    assert owners == {SERVICE_UID}, f"restic wrote as {owners}, not as the service user"

    for container in peer_containers:  # /var/log: a volume (cloud, multi-job) or not (smoke)
        last = json.loads(read_file(container.name, "/var/log/last-backup.json"))
        assert last["exit_code"] == 0 and last.get("snapshot_id"), last
        cron_log = read_file(container.name, "/var/log/cron.log")
        assert "backup" in cron_log and last["snapshot_id"][:8] in cron_log, cron_log
        assert read_file(container.name, "/var/log/backup-last.log").strip()

    for container in peer_containers:
        stopped = time.monotonic()
        podman("stop", "--time", "30", container.name, timeout=60)
        took = time.monotonic() - stopped
        assert exit_code(container.name) == 0, logs(container.name)
        assert took < 20, f"{container.name} took {took:.1f} s to stop"
    assert repository("list", "locks").strip() == ""
    notes = [f"{c.file} {c.name}: {'; '.join(c.adapted) or 'paths only'}" for c in peer_containers]
    print("\n".join(notes))


@pytest.fixture
def smoke_with_bulk(tmp_path: Path) -> Iterator[PeerContainer]:
    tmp_path.chmod(0o755)
    (container,) = smoke(tmp_path)
    bulk = tmp_path / "volumes" / "restic-smoke-data" / "backup_src" / "bulk"
    bulk.mkdir()
    for i in range(4):  # incompressible: ~20 s at the throttled upload below
        (bulk / f"blob{i}.bin").write_bytes(os.urandom(20 * 1024 * 1024))
    try:
        start(container)
        wait_for_log(container.name, STARTED)
        yield container
    finally:
        podman("rm", "--force", "--time", "5", container.name, check=False)


def test_stop_ends_a_manual_backup_gracefully_under_tail(smoke_with_bulk: PeerContainer) -> None:
    """`docker stop` while `docker exec c backup` runs and `tail` is the foreground: the
    entrypoint passes the stop on, restic gets SIGINT and removes its lock, the container exits
    0 well within the grace period (the peer's tail, PID 1, ignores SIGTERM: 10 s, then SIGKILL,
    restic's lock left behind)."""
    container = smoke_with_bulk
    podman("exec", "--detach", "--env", "RESTIC_JOB_ARGS=--limit-upload=4096", container.name,
           "backup")
    locks = container.restic.repository / "locks"
    deadline = time.monotonic() + 60
    while not (locks.is_dir() and any(locks.iterdir())):
        assert time.monotonic() < deadline, logs(container.name)
        time.sleep(0.2)
    time.sleep(1)  # restic is uploading, its lock in the repository

    stopped = time.monotonic()
    podman("stop", "--time", "60", container.name, timeout=90)
    took = time.monotonic() - stopped
    assert exit_code(container.name) == 0, logs(container.name)
    assert took < 30, f"took {took:.1f} s to stop"
    assert container.restic("list", "locks").strip() == ""
    print(f"stopped a manual backup mid-run in {took:.1f} s")


def test_stop_ends_a_scheduled_backup_gracefully_under_tail(tmp_path: Path) -> None:
    """The same for a run the scheduler started (the entrypoint's background `schedule`):
    adapted, the backup's schedule fires 5 s after the start and its upload is throttled."""
    tmp_path.chmod(0o755)
    (container,) = smoke(tmp_path)
    bulk = tmp_path / "volumes" / "restic-smoke-data" / "backup_src" / "bulk"
    bulk.mkdir()
    for i in range(4):
        (bulk / f"blob{i}.bin").write_bytes(os.urandom(20 * 1024 * 1024))
    container.environment.update({"BACKUP_CRON": "every 5s",
                                  "RESTIC_JOB_ARGS": "--limit-upload=4096"})
    try:
        start(container)
        out = wait_for_log(container.name, STARTED)
        assert "Started: restic-runner schedule" in out, out
        locks = container.restic.repository / "locks"
        deadline = time.monotonic() + 60
        while not (locks.is_dir() and any(locks.iterdir())):
            assert time.monotonic() < deadline, logs(container.name)
            time.sleep(0.2)
        time.sleep(1)

        stopped = time.monotonic()
        podman("stop", "--time", "60", container.name, timeout=90)
        took = time.monotonic() - stopped
        assert exit_code(container.name) == 0, logs(container.name)
        assert took < 30, f"took {took:.1f} s to stop"
        assert container.restic("list", "locks").strip() == ""
        print(f"stopped a scheduled backup mid-run in {took:.1f} s")
    finally:
        podman("rm", "--force", "--time", "5", container.name, check=False)


@pytest.fixture
def smoke_service(tmp_path: Path) -> Iterator[PeerContainer]:
    tmp_path.chmod(0o755)
    (container,) = smoke(tmp_path)
    try:
        start(container)
        wait_for_log(container.name, STARTED)
        yield container
    finally:
        podman("rm", "--force", "--time", "5", container.name, check=False)


def exec_(c: PeerContainer, *command: str, env: dict[str, str] | None = None,
          ) -> subprocess.CompletedProcess[str]:
    """`docker compose exec -T <service> …`, as root like compose."""
    flags = [f"--env={key}={value}" for key, value in (env or {}).items()]
    return podman("exec", *flags, c.name, *command, check=False, timeout=300)


def run_rm(c: PeerContainer, *command: str, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    """`docker compose run --rm --no-deps <service> …`: a one-off container, same settings."""
    environment = {**c.environment, **(env or {})}
    flags = [f"--env={key}={value}" for key, value in environment.items()]
    volumes = [f"--volume={volume}" for volume in c.volumes]
    return podman("run", "--rm", *c.flags, *flags, *volumes, IMAGE, *command, check=False,
                  timeout=300)


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def last(c: PeerContainer, name: str) -> dict:
    return json.loads(ok(exec_(c, "cat", f"/var/log/last-{name}.json")).stdout)


def test_the_peer_smoke_test_passes_step_by_step_in_the_image(
        smoke_service: PeerContainer) -> None:
    """restic-backup-helper's own CI smoke test (`scripts/ci-smoke-test.sh`), step by step, in
    its smoke service: each step's command as the script gives it (`exec` into the running
    container, or `run --rm` of a one-off one) with the script's own checks of exit codes and
    of the `/var/log/last-*.json` documents (tests/compat/test_ci_smoke_steps.py runs the same
    steps against the CLI and the peer's scripts). Deliberate differences (docs/migration.md),
    asserted in their documented form: no baked `RESTIC_BACKUP_HELPER_RELEASE`;
    `health-summary` and `doctor` print restic-runner's documents with the same facts; a run
    record keeps `dry_run` a boolean; `snapshot-export` says to use `restic-runner restore`,
    exit 2."""
    c = smoke_service
    ok(exec_(c, "sh", "-c", "mkdir -p /data/backup_src /data/sync_a /data/sync_b && printf "
             "'%s\\n' smoke-ci > /data/backup_src/smoke.txt && printf '%s\\n' bisync-a "
             "> /data/sync_a/a.txt"))
    # the one step a migrating user adds (docs/migration.md): the helper replicated as root;
    # local replicate directories must be the service user's
    ok(exec_(c, "chown", "-R", f"{SERVICE_UID}:{SERVICE_UID}", "/data/sync_a", "/data/sync_b"))
    assert ok(exec_(c, "restic", "version")).stdout.startswith("restic 0.18")

    ok(run_rm(c, "config-check"))
    checked = json.loads(ok(run_rm(c, "config-check", "--json")).stdout)
    assert checked["schema"] == "restic-backup-helper.config-check/1", checked
    assert checked["exit_code"] == 0 and checked["errors"] == 0, checked
    assert {"RESTIC_REPOSITORY", "RESTIC_PASSWORD", "RESTIC_TAG", "BACKUP_PATHS"} <= {
        check["key"] for check in checked["checks"]}
    ok(run_rm(c, "cron-list"))

    ok(exec_(c, "/bin/backup"))
    ok(exec_(c, "sh", "-c", "restic snapshots >/dev/null"))
    ok(exec_(c, "/bin/check"))
    ok(exec_(c, "/bin/cron-list"))
    ok(exec_(c, "/bin/status"))
    status = json.loads(ok(exec_(c, "/bin/health-summary", "--json")).stdout)
    assert status["verdict"] in ("OK", "WARN"), status  # restic-runner's document, same facts
    ok(exec_(c, "/bin/doctor", "--json"))

    ok(exec_(c, "/bin/replicate"))
    ok(exec_(c, "test", "-f", "/data/sync_b/a.txt"))

    ok(exec_(c, "/bin/sources-report"))
    report = last(c, "sources-report")
    assert report["job"] == "sources-report" and report["exit_code"] == 0, report
    assert int(report["sources_count"]) >= 1 and int(report["total_files"]) >= 1, report

    ok(exec_(c, "/bin/forget-preview"))
    preview = last(c, "forget-preview")
    assert preview["job"] == "forget-preview" and preview["exit_code"] == 0, preview

    ok(exec_(c, "/bin/init-repo", "--dry-run", "--yes"))
    init = last(c, "init-repo")
    assert init["exit_code"] == 0 and init["dry_run"] == "ON", init
    assert init["repo_existed"] == "true", init

    ok(exec_(c, "/bin/notify-test", "--all", "--dry-run", env={
        "MAILX_RCPT": "ops@smoke.invalid", "WEBHOOK_URL": "https://webhook.smoke.invalid/test"}))
    notified = last(c, "notify-test")
    assert notified["exit_code"] == 0 and notified["dry_run"] == "ON", notified
    assert notified["mail_result"] == notified["webhook_result"] == "dry-run", notified

    ok(exec_(c, "sh", "-c", "mkdir -p /tmp/restore-smoke && /bin/restore --dry-run --yes "
             "--target /tmp/restore-smoke"))
    restored = last(c, "restore")
    assert restored["job"] == "restore" and restored["exit_code"] == 0, restored
    assert restored["dry_run"] in ("ON", True), restored

    export = exec_(c, "/bin/snapshot-export", "--dry-run")  # no equivalent: said in one line
    assert export.returncode == 2, export
    assert "restic-runner restore" in export.stdout + export.stderr

    canary = hashlib.sha256(b"smoke-ci\n").hexdigest()
    ok(exec_(c, "/bin/restore-test", "--min-files", "1", "--canary",
             f"/data/backup_src/smoke.txt={canary}"))
    rehearsal = last(c, "restore-test")
    assert rehearsal["exit_code"] == 0 and rehearsal["verification"] == "passed", rehearsal
    assert int(rehearsal["files_restored"]) >= 1 and int(rehearsal["bytes_restored"]) > 0
    assert rehearsal["min_files_met"] in ("true", True), rehearsal
    assert (rehearsal["canary_total"], rehearsal["canary_passed"],
            rehearsal["canary_failed"]) == ("1", "1", "0"), rehearsal
    assert rehearsal["target_autotmp"] == "ON" and rehearsal["cleanup_status"] == "cleaned"
    assert [r["status"] for r in rehearsal["canary_results"]] == ["passed"], rehearsal

    ok(exec_(c, "/bin/restore-test", "--dry-run"))
    dry = last(c, "restore-test")
    assert dry["exit_code"] == 0 and dry["dry_run"] in ("ON", True), dry
    assert dry["verification"] == "skipped", dry

    ok(exec_(c, "sh", "-c", "printf '%s\\n%s\\n' '# Repo URL for smoke "
             "RESTIC_REPOSITORY_FILE test' /data/repo > /data/repo.url"))
    precedence = json.loads(ok(run_rm(c, "config-check", "--json", env={
        "RESTIC_REPOSITORY": "", "RESTIC_REPOSITORY_FILE": "/data/repo.url"})).stdout)
    assert precedence["exit_code"] == 0 and precedence["errors"] == 0, precedence
    repository = [check for check in precedence["checks"] if check["key"] == "RESTIC_REPOSITORY"]
    assert repository and repository[0]["status"] == "ok", repository
    assert "/data/repo" in repository[0]["message"], repository
    assert "Traceback" not in logs(c.name)
