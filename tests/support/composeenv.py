"""The peer's three compose environments made runnable here for restic-runner in environment
mode (tests/compat/): each service's variables as written, its container paths moved under a
temporary directory (tests.support.compose's `adapt_paths`), its mounted files (secrets, job
files, include/exclude lists, hooks) written there, its cloud backend replaced by a local one.
tests/compat/test_compose_environments.py's docstring lists what is adapted."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.compose import (
    COMPOSE_FILES,
    Service,
    adapt_paths,
    adapt_text,
    compose_file,
    host_path,
    load_services,
)
from tests.support.envmode import EnvRunner
from tests.support.paths import ONE_RESTIC
from tests.support.peer import ENTRY_COMMANDS, PeerInstall, install_peer
from tests.support.workspace import restic_binary


@dataclass
class Environment:
    """One compose service made runnable here: by restic-runner (`runner`), or, when `peer` is
    given, by the peer's own scripts installed there (its manual commands only: no cron)."""

    service: Service
    runner: EnvRunner
    ready: Path  # the repository's `config` file once initialised
    notes: list[str]
    peer: PeerInstall | None = None

    @property
    def variables(self) -> dict[str, str]:
        return self.runner.variables

    @property
    def root(self) -> Path:
        return self.runner.root

    @property
    def log(self) -> Path:
        """The container's /var/log: the compat log directory, or the peer's."""
        return self.peer.log if self.peer else self.runner.log

    def command(self, name: str, *args: str,
                **changes: str) -> subprocess.CompletedProcess[str]:
        """The container's manual command `name` (`docker exec <c> /bin/<name>`, or
        `docker compose run <service> <name>`): `restic-runner compat`, or the peer's."""
        if self.peer is None:
            return self.runner.cli("compat", name, *args, **changes)
        env = self.peer.env(self.runner.restic, {**self.variables, **changes})
        if name in ENTRY_COMMANDS:
            return self.peer.run_entry(name, *args, env=env)
        return self.peer.run(name, *args, env=env)

    def backup(self, **changes: str) -> subprocess.CompletedProcess[str]:
        """A backup by the side's own means (`restic-runner run backup`, the peer's /bin/backup)."""
        if self.peer is None:
            return self.runner.cli("run", "backup", **changes)
        return self.command("backup", **changes)

    def restic(self, *args: str) -> subprocess.CompletedProcess[str]:
        """restic itself on the service's repository (its variables, as its healthcheck does)."""
        return subprocess.run([str(self.runner.restic), *args], env=self.runner.env(),
                              capture_output=True, text=True, timeout=120, cwd=self.runner.root)


def _secret(root: Path) -> None:
    secret = host_path(root, "/run/secrets/restic_password")
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("compose-environment-password\n")
    secret.chmod(0o600)  # "chmod 600 on the host", as the compose files say


def _data(directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.txt").write_text(f"{name} data\n")
    (directory / "skip.DS_Store").write_text("excluded\n")


def smoke_environment(root: Path, restic: Path) -> Environment:
    service = load_services("ci/docker-compose.smoke.yml")["restic-smoke"]
    variables, notes = adapt_paths(service.environment, root)
    # the smoke test's seeding step (scripts/ci-smoke-test.sh)
    _data(host_path(root, "/data/backup_src"), "smoke")
    host_path(root, "/data/sync_a").mkdir(parents=True)
    (host_path(root, "/data/sync_a") / "a.txt").write_text("bisync-a\n")
    host_path(root, "/data/sync_b").mkdir(parents=True)
    # volumes: ./smoke-replicate_jobs.txt:/config/replicate_jobs.txt, ./smoke-hooks:/hooks
    jobs_file = host_path(root, "/config/replicate_jobs.txt")
    jobs_file.parent.mkdir(parents=True)
    jobs_file.write_text(adapt_text(compose_file("ci/smoke-replicate_jobs.txt").read_text(), root))
    hooks = host_path(root, "/hooks")
    shutil.copytree(compose_file("ci/smoke-hooks"), hooks)
    for hook in hooks.glob("*.sh"):
        hook.chmod(0o755)  # the smoke test's `chmod +x ./ci/smoke-hooks/*.sh`
    variables["HOSTNAME"] = service.hostname
    runner = EnvRunner(root, restic, variables)
    return Environment(service, runner, Path(variables["RESTIC_REPOSITORY"]) / "config", notes)


def peer_smoke_environment(root: Path, restic: Path) -> Environment:
    """The smoke environment run by the peer's own scripts: its /hooks are the smoke hooks,
    its repository initialised by `restic init` (what its entry.sh does at container start)."""
    env = smoke_environment(root, restic)
    peer = install_peer(root / "peer")
    shutil.rmtree(peer.hooks)
    shutil.copytree(host_path(root, "/hooks"), peer.hooks)
    done = env.restic("init")
    assert done.returncode == 0, done.stderr
    return dataclasses.replace(env, peer=peer)


def _cloud(root: Path, restic: Path) -> Environment:
    service = load_services("examples/compose/cloud-reference.yml")["restic-cloud"]
    variables, notes = adapt_paths(service.environment, root)
    config = host_path(root, "/config")
    config.mkdir(parents=True)
    cloud = root / "cloud"
    cloud.mkdir()
    (config / "rclone.conf").write_text(f"[cloudremote]\ntype = alias\nremote = {cloud}\n")
    notes.append(f"rclone remote cloudremote: an alias of {cloud} (was a cloud backend)")
    data = host_path(root, "/data")
    _data(data / "documents", "cloud")
    (config / "include_files.txt").write_text(f"{data}\n")
    shutil.copy(compose_file("config/exclude_files.txt"), config / "exclude_files.txt")
    (data / "inbox").mkdir()
    (data / "inbox" / "in.txt").write_text("inbox\n")
    (config / "replicate_jobs.txt").write_text(f"{data}/inbox;{root / 'replica'};copy\n")
    host_path(root, "/tmp/restic").mkdir(parents=True)
    host_path(root, "/hooks").mkdir(parents=True)
    _secret(root)
    variables["HOSTNAME"] = service.hostname
    runner = EnvRunner(root, restic, variables)
    return Environment(service, runner, cloud / "backups" / "config", notes)


def _multi(base: Path, restic: Path) -> list[Environment]:
    repository = base / "shared-repo"
    services = load_services("examples/compose/multi-job.yml",
                             {"RESTIC_REPOSITORY": str(repository)})
    environments = []
    for name in COMPOSE_FILES["examples/compose/multi-job.yml"]:
        service, root = services[name], base / name
        variables, notes = adapt_paths(service.environment, root)
        notes.append(f"RESTIC_REPOSITORY (from .env): {repository}")
        config = host_path(root, "/config")
        config.mkdir(parents=True)
        tag = service.environment["RESTIC_TAG"]
        (config / f"exclude_{tag}.txt").write_text("*.DS_Store\n")
        _data(host_path(root, "/data"), tag)
        host_path(root, "/hooks").mkdir(parents=True)
        _secret(root)
        variables["HOSTNAME"] = service.hostname
        environments.append(Environment(service, EnvRunner(root, restic, variables),
                                        repository / "config", notes))
    return environments


def environments(file: str, base: Path) -> list[Environment]:
    restic = restic_binary(ONE_RESTIC)  # the peer's images ship restic 0.18
    if file == "ci/docker-compose.smoke.yml":
        return [smoke_environment(base, restic)]
    if file == "examples/compose/cloud-reference.yml":
        return [_cloud(base, restic)]
    return _multi(base, restic)
