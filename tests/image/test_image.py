"""The built image, run as examples/compose deploys it: read-only root filesystem, /tmp a
tmpfs, non-root, all capabilities dropped, config and secrets mounted read-only, the repository
and the state on volumes. A signed trigger backs up; SIGTERM mid-backup leaves no repository lock.

The tests share one container and run in file order (the last one stops it)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from runner.cli.client import ApiClient
from runner.cli.container import PEER_COMMANDS
from tests.support.paths import ROOT, RUNNER
from tests.support.podman import HOST_RESTIC, IMAGE, SERVICE_UID, ULIMITS, podman
from tests.support.processes import free_port, wait_until

UID = SERVICE_UID
ENTRYPOINT = ["/usr/bin/tini", "--", "/usr/local/lib/restic-runner/entrypoint"]
AS_SERVICE_USER = "/usr/local/lib/restic-runner/as-service-user"


@dataclass
class Deployment:
    root: Path
    name: str
    url: str
    client: ApiClient

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    def restic(self, *args: str) -> str:
        """restic (on the host) on the repository the container wrote."""
        env = {"PATH": os.environ["PATH"], "HOME": str(self.root),
               "RESTIC_REPOSITORY": str(self.repo),
               "RESTIC_PASSWORD_FILE": str(self.root / "secrets" / "restic-password"),
               "RESTIC_CACHE_DIR": str(self.root / "host-cache")}
        done = subprocess.run([HOST_RESTIC, *args], env=env, capture_output=True, text=True,
                              check=True)
        return done.stdout

    def result(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.client.request("GET", f"/runs/{run_id}/result")
            if response.status_code == 200:
                return response.json()
            assert response.status_code == 404, response.text
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not end in {timeout}s")

    def wait_ready(self, timeout: float = 90) -> requests.Response:
        def ready() -> requests.Response | None:
            try:
                response = requests.get(self.url + "/readyz", timeout=5)
            except requests.ConnectionError:
                return None
            return response if response.status_code == 200 else None

        try:
            return wait_until(ready, timeout=timeout, interval=0.3)
        except AssertionError:
            logs = podman("logs", self.name, check=False)
            raise AssertionError(f"not ready:\n{logs.stdout}\n{logs.stderr}") from None


COMPOSE_DIR = ROOT / "examples" / "compose"
# examples/compose, run with podman: its config (plus a slow job to stop mid-run), its
# hardening, its mounts. Only the host side of the mounts differs.
SERVICE = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())["services"]["restic-runner"]
SLOW_JOB = """
[jobs.bulk]
kind = "backup"
paths = ["/data/bulk"]
args = ["--limit-upload=8192"]  # KiB/s: ~10 s for 80 MB, so it can be stopped mid-run
"""


def compose_hardening(service: dict[str, Any]) -> list[str]:
    """podman flags for the compose service's security settings (the ones the example uses)."""
    flags = ["--user", service["user"]]
    flags += ["--read-only", "--read-only-tmpfs=false"] if service["read_only"] else []
    for mount in service["tmpfs"]:
        flags += ["--tmpfs", mount]
    for cap in service["cap_drop"]:
        flags += ["--cap-drop", cap]
    for option in service["security_opt"]:
        flags += ["--security-opt", option.removesuffix(":true")]
    return flags


def _write_layout(root: Path) -> list[str]:
    """Host side of the example's mounts (owned by the image's user where it writes or reads
    secrets); returns the podman --volume flags."""
    (root / "restic-runner.toml").write_text(
        (COMPOSE_DIR / "restic-runner.toml").read_text() + SLOW_JOB)
    secrets = root / "secrets"
    secrets.mkdir()
    (secrets / "restic-password").write_text("correct horse battery staple\n")
    subprocess.run([RUNNER, "keys", "generate", "whsec",
                    "--out", str(secrets / "cron.whsec")], check=True, capture_output=True)
    for path in secrets.iterdir():
        os.chown(path, UID, UID)
        path.chmod(0o400)

    documents = root / "data" / "documents"
    for i in range(30):
        (documents / f"dir{i % 3}").mkdir(parents=True, exist_ok=True)
        (documents / f"dir{i % 3}" / f"note{i}.txt").write_text(f"note {i}\n" * 200)
    bulk = root / "data" / "bulk"
    bulk.mkdir()
    for i in range(4):  # incompressible
        with open(bulk / f"blob{i}.bin", "wb") as f:
            f.write(os.urandom(20 * 1024 * 1024))
    for sub in ("repo", "state"):
        (root / sub).mkdir(mode=0o700)
        os.chown(root / sub, UID, UID)
    root.chmod(0o755)

    host_side = {"state": root / "state", "./restic-runner.toml": root / "restic-runner.toml",
                 "/srv/documents": documents, "/srv/backup-repo": root / "repo"}
    flags = []
    for volume in SERVICE["volumes"]:
        source, target, *mode = volume.split(":")
        flags += ["--volume", ":".join([str(host_side[source]), target, *mode])]
    flags += ["--volume", f"{bulk}:/data/bulk:ro"]
    for name in SERVICE["secrets"]:  # compose mounts file secrets at /run/secrets/<name>
        flags += ["--volume", f"{secrets / name}:/run/secrets/{name}:ro"]
    for key, value in SERVICE["environment"].items():
        flags += ["--env", f"{key}={value}"]
    return flags


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("image")
    mounts = _write_layout(root)
    port = free_port()
    name = f"restic-runner-test-{os.getpid()}"
    podman("run", "--detach", "--name", name, *ULIMITS, *compose_hardening(SERVICE),
           "--publish", f"127.0.0.1:{port}:8080", *mounts, IMAGE)
    client = ApiClient.from_files(f"http://127.0.0.1:{port}",
                                  secret_file=str(root / "secrets" / "cron.whsec"),
                                  token_file=None)
    deployment = Deployment(root=root, name=name, url=f"http://127.0.0.1:{port}", client=client)
    try:
        deployment.wait_ready()
        yield deployment
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)


def test_image_metadata() -> None:
    (info,) = json.loads(podman("image", "inspect", IMAGE).stdout)
    config = info["Config"]
    assert config.get("User", "") == ""  # root only until the entrypoint leaves it
    assert config["Entrypoint"] == ENTRYPOINT
    assert config["Cmd"] == ["serve", "--bind", "0.0.0.0:8080"]
    assert "healthcheck" in " ".join(info["Healthcheck"]["Test"])  # podman: beside Config
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["RESTIC_REPOSITORY"] == "/mnt/restic"  # the peer's default: environment mode
    assert env["RESTIC_RUNNER_COMPAT_LOG_DIR"] == "/var/log"
    assert "RESTIC_RUNNER_CONFIG" not in env  # a config file is found, not imposed
    assert len(info["RootFS"]["Layers"]) == 1
    assert info["Size"] < 240e6, f"{info['Size'] / 1e6:.0f} MB"
    assert "8080/tcp" in config["ExposedPorts"]
    labels = config["Labels"]
    for key in ("title", "version", "revision", "created", "source", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.version"] == "0.1.0"


def test_binaries_are_the_pinned_versions() -> None:
    done = podman("run", "--rm", *ULIMITS, "--read-only", "--entrypoint", "sh", IMAGE, "-c",
                  "restic version; rclone version; restic-runner --version")
    assert "restic 0.18.0 " in done.stdout
    assert "rclone v1.75.2" in done.stdout
    assert "restic-runner 0.1.0" in done.stdout


def _identity(*flags: str) -> dict[str, str]:
    """uid and capability sets of a command run through as-service-user, started as root."""
    done = podman("run", "--rm", *ULIMITS, *flags, "--entrypoint", AS_SERVICE_USER, IMAGE,
                  "sh", "-c", "id -u; grep ^Cap /proc/self/status")
    lines = done.stdout.split("\n")
    found = dict(line.split(":\t") for line in lines[1:] if line)
    return {"uid": lines[0], **found}


def test_root_leaves_root_keeping_only_dac_read_search(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root-only\n")
    secret.chmod(0o600)  # root-owned, as a compose file secret
    mount = ["--volume", f"{secret}:/run/secrets/pw:ro"]
    kept = _identity("--cap-add", "DAC_READ_SEARCH")  # as the peer's compose files add it
    assert kept["uid"] == str(UID)
    assert kept["CapEff"] == kept["CapPrm"] == kept["CapBnd"] == "0000000000000004", kept
    read = podman("run", "--rm", *ULIMITS, "--cap-add", "DAC_READ_SEARCH", *mount,
                  "--entrypoint", AS_SERVICE_USER, IMAGE, "python3", "-c",
                  "import os; print(os.access('/run/secrets/pw', os.R_OK)); "
                  "print(open('/run/secrets/pw').read())")
    assert read.stdout.split() == ["True", "root-only"]  # access(2) agrees with open(2)
    hardened = _identity("--cap-add", "DAC_READ_SEARCH", "--security-opt", "no-new-privileges")
    assert hardened == kept  # no_new_privs does not stop keeping a capability one has
    plain = _identity()  # Docker's default capabilities: none is kept
    assert plain["uid"] == str(UID) and plain["CapEff"] == "0000000000000000", plain
    as_root = _identity("--env", "RESTIC_RUNNER_RUN_AS_ROOT=ON")
    assert as_root["uid"] == "0"
    no_setuid = _identity("--cap-drop", "ALL", "--cap-add", "DAC_READ_SEARCH")
    assert no_setuid["uid"] == "0"  # cannot change user: stays as it is


def test_a_shim_per_peer_command() -> None:
    listed = podman("run", "--rm", *ULIMITS, "--entrypoint", "restic-runner", IMAGE,
                    "compat", "--list").stdout.split()
    assert sorted(listed) == sorted(PEER_COMMANDS)
    script = ("for n in " + " ".join(PEER_COMMANDS) + "; do "
              "for d in /bin /usr/local/bin; do "
              "[ -x $d/$n ] && grep -q \"compat $n\" $d/$n || echo missing $d/$n; done; done; "
              "readlink -f /bin")
    done = podman("run", "--rm", *ULIMITS, "--entrypoint", "sh", IMAGE, "-c", script)
    assert done.stdout.split() == ["/usr/bin"], done.stdout


def test_the_entrypoint_runs_a_peer_command_given_as_the_command() -> None:
    for word in ("cron-list", "/bin/cron-list"):
        done = podman("run", "--rm", *ULIMITS, "--env", "RESTIC_PASSWORD=x",
                      "--env", "BACKUP_ROOT_DIR=/data", IMAGE, word, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 */6 * * *" in done.stdout  # the peer's default BACKUP_CRON


def test_runs_as_non_root_on_a_read_only_root(deployment: Deployment) -> None:
    ids = podman("exec", deployment.name, "id", "-u").stdout.strip()
    assert ids == str(UID)
    denied = podman("exec", deployment.name, "touch", "/opt/restic-runner/x", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    pid1 = podman("exec", deployment.name, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert pid1[0] == "/usr/bin/tini"
    caps = podman("exec", deployment.name, "grep", "CapEff", "/proc/self/status").stdout
    assert caps.split()[1] == "0000000000000000"


def test_readyz_and_healthcheck(deployment: Deployment) -> None:
    checks = {c["name"]: c for c in deployment.wait_ready().json()["checks"]}
    assert checks["binary:restic"]["ok"] and "0.18.0" in checks["binary:restic"]["detail"]
    assert podman("healthcheck", "run", deployment.name).returncode == 0


def test_signed_trigger_backs_up_into_the_mounted_repository(deployment: Deployment) -> None:
    unsigned = requests.post(deployment.url + "/trigger/documents", timeout=10)
    assert unsigned.status_code == 401
    assert unsigned.headers["Content-Type"] == "application/problem+json"

    outcome = deployment.client.trigger("documents", {}, idempotency_key=None, wait=None)
    assert outcome.exit_code == 0 and outcome.run_id, outcome.message
    record = deployment.result(outcome.run_id)
    assert record["status"] == "succeeded" and record["exit_code"] == 0, record
    assert record["trigger"]["source"] == "api"
    assert record["stats"]["files_new"] == 30

    (snapshot,) = json.loads(deployment.restic("snapshots", "--json"))
    assert snapshot["paths"] == ["/data/documents"]
    assert snapshot["hostname"] == "fileserver"  # the config's, not the container's
    last = json.loads((deployment.root / "state" / "last-documents.json").read_text())
    assert last["run_id"] == outcome.run_id


def test_sigterm_mid_backup_leaves_no_repository_lock(deployment: Deployment) -> None:
    outcome = deployment.client.trigger("bulk", {}, idempotency_key=None, wait=None)
    assert outcome.run_id, outcome.message
    wait_until(lambda: list((deployment.repo / "locks").iterdir()), timeout=60)
    time.sleep(0.5)  # restic is uploading, its lock in the repository
    status = deployment.client.request("GET", f"/runs/{outcome.run_id}").json()["status"]
    assert status == "running"

    stopped = time.monotonic()
    podman("stop", "--time", "60", deployment.name, timeout=90)  # SIGTERM, as docker stop
    took = time.monotonic() - stopped
    state = json.loads(podman("inspect", deployment.name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, state  # tini passes on the server's clean exit
    assert took < 45, f"took {took:.1f} s to stop"
    assert deployment.restic("list", "locks").strip() == ""  # no lock left

    podman("start", deployment.name)  # the state volume keeps the history across restarts
    deployment.wait_ready()
    record = deployment.result(outcome.run_id, timeout=10)
    assert record["status"] == "cancelled" and record["exit_code"] == 130, record
    assert "SIGTERM" in record["error"]
    print(f"stopped mid-backup in {took:.1f} s; run {outcome.run_id} recorded cancelled")


def test_a_failed_repository_probe_stops_the_start_up(tmp_path: Path) -> None:
    """As restic-backup-helper's entry.sh: a probe failure other than "does not exist" (here a
    wrong password) exits 1 and never runs `restic init`."""
    tmp_path.chmod(0o755)
    repo = tmp_path / "repo"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RESTIC_REPOSITORY": str(repo),
           "RESTIC_PASSWORD": "the right one", "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([HOST_RESTIC, "init"], env=env, check=True, capture_output=True)
    before = sorted(p.name for p in (repo / "keys").iterdir())
    done = podman("run", "--rm", *ULIMITS, "--volume", f"{repo}:/mnt/restic",
                  "--env", "RESTIC_PASSWORD=a wrong one", "--env", "BACKUP_ROOT_DIR=/data",
                  IMAGE, "tail", "-fn0", "/var/log/cron.log", check=False, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "wrong-password" in done.stdout and "probe failed" in done.stdout, done.stdout
    assert sorted(p.name for p in (repo / "keys").iterdir()) == before  # no init
