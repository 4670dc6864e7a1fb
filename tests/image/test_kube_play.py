"""Kubernetes manifests run for real with `podman kube play` (Debian 12's podman 4.3.1): the
peer's examples/kubernetes/restic-backup-helper.yaml with the image swapped, and the Helm
chart's rendered Deployment. Each pod starts under its securityContext, its probes pass, a
backup runs and its snapshot is in the repository.

What podman 4.3.1 needs, and what differs from a cluster (docs/deployment.md, "Kubernetes
manifests under podman"): a containers.conf with default ulimits (CONTAINERS_CONF), catatonit
for the pause image; podman runs no probes itself (no systemd here), so the test runs each
probe's command; a `secret:` volume comes from a podman secret holding the Secret document,
whose `data:` values 4.3.1 takes verbatim (not base64) and writes 0644 root-owned, ignoring
`defaultMode` and `subPath`. Adapted for that:
- the peer's manifest: its Secret's stringData as `data:`; its two `subPath` mounts of the
  secret become one mount of the whole secret at /run/secrets (the password keeps its path;
  /etc/msmtprc is not mounted, mail is sent only on failure); `defaultMode: 0o400` (YAML 1.2
  octal) is written as 256; the S3 repository is a local one on a hostPath volume, and the
  hostPath source a temporary directory;
- the chart: its secret volume is a hostPath directory holding the Secret's files with the
  chart's paths and mode (0400, owned by uid 10001), since restic-runner refuses the 0644 files
  4.3.1 would write; what to back up and the repository come in through the chart's
  extraVolumes/extraVolumeMounts.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.helm import render
from tests.support.paths import RUNNER
from tests.support.peer import PEER_ROOT
from tests.support.podman import (
    IMAGE,
    PODMAN,
    SERVICE_UID,
    HostRestic,
    logs,
    podman,
    wait_for_log,
)

PEER_MANIFEST = PEER_ROOT / "examples" / "kubernetes" / "restic-backup-helper.yaml"
PASSWORD = "kube-play-password"


class KubePlay:
    """`podman kube play` of a list of documents, with 4.3.1's containers.conf, and its teardown."""

    def __init__(self, root: Path, docs: list[dict[str, Any]]) -> None:
        self.root = root
        self.file = root / "play.yaml"
        self.file.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        conf = root / "containers.conf"
        conf.write_text('[containers]\ndefault_ulimits = ["nofile=20000:20000", '
                        '"nproc=4096:4096"]\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.secrets: list[str] = []
        self.volumes = [d["metadata"]["name"] for d in docs
                        if d["kind"] == "PersistentVolumeClaim"]

    def secret(self, name: str, document: dict[str, Any]) -> None:
        path = self.root / f"secret-{name}.yaml"
        path.write_text(yaml.safe_dump(document))
        podman("secret", "rm", name, check=False)
        podman("secret", "create", name, str(path))
        self.secrets.append(name)

    def play(self) -> None:
        podman("kube", "play", str(self.file), env=self.env, timeout=180)

    def down(self) -> None:
        podman("kube", "down", str(self.file), env=self.env, check=False, timeout=120)
        for name in self.secrets:
            podman("secret", "rm", name, check=False)
        for name in self.volumes:
            podman("volume", "rm", "--force", name, check=False)


def container_of(deployment: dict[str, Any]) -> str:
    """podman 4.3.1's name for the Deployment's (first) container: <name>-pod-0-<container>."""
    spec = deployment["spec"]["template"]["spec"]
    return f"{deployment['metadata']['name']}-pod-0-{spec['containers'][0]['name']}"


def run_probe(name: str, container: dict[str, Any], probe_name: str) -> None:
    """The probe's command (exec) or request (httpGet) inside the container: it must pass."""
    probe = container[probe_name]
    if "exec" in probe:
        command = probe["exec"]["command"]
    else:
        port = probe["httpGet"]["port"]
        if isinstance(port, str):  # a named container port
            port = next(p["containerPort"] for p in container["ports"] if p.get("name") == port)
        url = f"http://127.0.0.1:{port}{probe['httpGet']['path']}"
        command = ["python3", "-c", f"import urllib.request; urllib.request.urlopen({url!r})"]
    deadline = time.monotonic() + 60
    while True:
        done = podman("exec", name, *command, check=False)
        if done.returncode == 0:
            return
        assert time.monotonic() < deadline, f"probe {command}: {done.stderr}\n{logs(name)}"
        time.sleep(1)


# --- restic-backup-helper's manifest --------------------------------------------------------


def peer_documents(root: Path) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    docs = list(yaml.safe_load_all(PEER_MANIFEST.read_text()))
    secret = next(d for d in docs if d["kind"] == "Secret")
    secret["stringData"]["restic-password"] = PASSWORD
    secret_doc = {**{k: v for k, v in secret.items() if k != "stringData"},
                  "data": secret["stringData"]}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    container["image"] = IMAGE
    for variable in container["env"]:
        if variable["name"] == "RESTIC_REPOSITORY":
            variable["value"] = "/mnt/restic"
    container["volumeMounts"] = [m for m in container["volumeMounts"]
                                 if m["name"] != "restic-secret"]
    container["volumeMounts"] += [
        {"name": "restic-secret", "mountPath": "/run/secrets", "readOnly": True},
        {"name": "repository", "mountPath": "/mnt/restic"}]
    (root / "source").mkdir()
    (root / "source" / "documents.txt").write_text("kubernetes data\n")
    (root / "repo").mkdir()
    for volume in pod["volumes"]:
        if "secret" in volume:
            volume["secret"]["defaultMode"] = 0o400
            volume["secret"]["optional"] = False
        if volume["name"] == "source":
            volume["hostPath"]["path"] = str(root / "source")
    pod["volumes"].append({"name": "repository",
                           "hostPath": {"path": str(root / "repo"), "type": "Directory"}})
    adapted = ["Secret stringData -> data (4.3.1 reads data verbatim)",
               "secret subPath mounts -> the whole secret at /run/secrets; no /etc/msmtprc",
               "RESTIC_REPOSITORY s3:https://… -> /mnt/restic (hostPath)",
               "hostPath /srv/documents -> a temporary directory"]
    return [d for d in docs if d["kind"] != "Secret"], secret_doc, adapted


@pytest.fixture
def peer_pod(tmp_path: Path) -> Iterator[tuple[KubePlay, dict[str, Any]]]:
    tmp_path.chmod(0o755)
    docs, secret, _ = peer_documents(tmp_path)
    play = KubePlay(tmp_path, docs)
    try:
        play.secret(secret["metadata"]["name"], secret)
        play.play()
        yield play, next(d for d in docs if d["kind"] == "Deployment")
    finally:
        play.down()


def test_the_peer_manifest_runs_with_only_the_image_changed(
        peer_pod: tuple[KubePlay, dict[str, Any]]) -> None:
    play, deployment = peer_pod
    name = container_of(deployment)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        run_probe(name, container, probe)
    # no command in the manifest: the image's own (serve: the scheduler and the API)
    out = wait_for_log(name, "serving on")
    # drop: [ALL] leaves no CAP_SETUID: the container stays root, as the manifest asks, and says so
    assert "cannot change user" in out, out

    backup = podman("exec", name, "backup", check=False, timeout=180)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    restic = HostRestic(play.root / "repo", PASSWORD, play.root / "host-cache")
    (snapshot,) = json.loads(restic("snapshots", "--json"))
    assert snapshot["hostname"] == "backup-node" and "daily" in snapshot["tags"], snapshot
    last = json.loads(podman("exec", name, "cat", "/var/log/last-backup.json").stdout)
    assert last["exit_code"] == 0, last


# --- the Helm chart -------------------------------------------------------------------------


def chart_documents(root: Path) -> tuple[list[dict[str, Any]], Path]:
    """The chart's ConfigMap, PVC and Deployment for podman: a local repository, /data, and the
    Secret's files on a hostPath volume (owned by the service user, 0400)."""
    whsec = root / "trigger.whsec"
    subprocess.run([RUNNER, "keys", "generate", "whsec", "--out", str(whsec)], check=True,
                   capture_output=True)
    for sub in ("data", "repo", "secrets", "tmp"):
        (root / sub).mkdir()
    (root / "data" / "chart.txt").write_text("chart data\n")
    repository, tag = IMAGE.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "secrets": {"repository": "/repo", "restic-password": PASSWORD,
                    "trigger.whsec": whsec.read_text().strip()},
        "extraVolumes": [{"name": "data", "hostPath": {"path": str(root / "data")}},
                         {"name": "repo", "hostPath": {"path": str(root / "repo")}}],
        "extraVolumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True},
                              {"name": "repo", "mountPath": "/repo"}],
    }
    docs = [d for path, text in render(values).items() if path.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d]
    secret = next(d for d in docs if d["kind"] == "Secret")
    for key, value in (secret.get("stringData") or {}).items():
        path = root / "secrets" / key
        path.write_text(value if value.endswith("\n") else value + "\n")
        os.chown(path, SERVICE_UID, SERVICE_UID)
        path.chmod(0o400)
    # the chart's config does not init_if_missing: the repository exists, the pod's user owns it
    HostRestic(root / "repo", PASSWORD, root / "host-cache")("init")
    for path in [root / "repo", *(root / "repo").rglob("*")]:
        os.chown(path, SERVICE_UID, SERVICE_UID)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        if "secret" in volume:
            volume.pop("secret")
            volume["hostPath"] = {"path": str(root / "secrets"), "type": "Directory"}
    keep = ("ConfigMap", "PersistentVolumeClaim", "Deployment")
    return [d for d in docs if d["kind"] in keep], root / "repo"


@pytest.fixture
def chart_pod(tmp_path: Path) -> Iterator[tuple[KubePlay, dict[str, Any], Path]]:
    tmp_path.chmod(0o755)
    docs, repo = chart_documents(tmp_path)
    play = KubePlay(tmp_path, docs)
    try:
        play.play()
        yield play, next(d for d in docs if d["kind"] == "Deployment"), repo
    finally:
        play.down()


def test_the_chart_runs_under_its_security_context(
        chart_pod: tuple[KubePlay, dict[str, Any], Path]) -> None:
    play, deployment, repo = chart_pod
    name = container_of(deployment)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        run_probe(name, container, probe)
    assert podman("exec", name, "id", "-u").stdout.strip() == str(SERVICE_UID)
    caps = podman("exec", name, "grep", "CapEff", "/proc/self/status").stdout
    assert caps.split()[1] == "0000000000000000"
    denied = podman("exec", name, "touch", "/opt/x", check=False)
    assert "Read-only file system" in denied.stderr

    run = podman("exec", name, "restic-runner", "run", "backup", check=False, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr + logs(name)
    restic = HostRestic(repo, PASSWORD, play.root / "host-cache")
    (snapshot,) = json.loads(restic("snapshots", "--json"))
    assert snapshot["paths"] == ["/data"] and "kubernetes" in snapshot["tags"], snapshot
    print(f"{' '.join(PODMAN[:1])} kube play: chart pod {name} backed up {snapshot['short_id']}")
