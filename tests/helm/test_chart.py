"""The Helm chart helm/restic-runner: lint, schema, rendered manifests validated against the
Kubernetes 1.30 schemas, yamllint, the properties the deployment relies on, and the rendered
configuration, secrets, CronJob command and test hook run against the real restic-runner."""

from __future__ import annotations

import copy
import hashlib
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import helm_python as helm
import pytest
import yaml

from security.auth import parse_whsec
from tests.support.helm import (
    CHART,
    EXISTING_SECRET,
    FULLNAME,
    NAMESPACE,
    VALUES_FULL,
    VARIANTS,
    Rendered,
    full_values,
    make_rendered,
    pod_templates,
    render,
    rendered_variant,
)
from tests.support.paths import ROOT

VENV_BIN = Path(sys.executable).parent
KUBERNETES_VERSION = "1.30.0"
# kubernetes-validate ships only Kubernetes' own schemas: for these it prints a WARN and exits 0
# without checking anything, so their structure is asserted below instead.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
SECRETS_DIR = PurePosixPath("/run/secrets/restic-runner")
CLIENT_SECRETS_DIR = PurePosixPath("/run/secrets/restic-runner-client")
STATE_DIR = PurePosixPath("/var/lib/restic-runner")
CONFIG_PATH = PurePosixPath("/etc/restic-runner/restic-runner.toml")
URL = f"http://{FULLNAME}:8080"
RULES = ROOT / "deploy" / "prometheus" / "restic-runner.rules.yml"
CHART_RULES = CHART / "files" / "restic-runner.rules.yml"

POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                      "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                      "privileged": False, "capabilities": {"drop": ["ALL"]},
                      "seccompProfile": {"type": "RuntimeDefault"}}

# Kubernetes YAML: no document-start marker required, 2-space indentation with or without
# indented sequences; sources keep the project's 100 columns, the rendered release may carry
# deploy/'s alert rules verbatim (annotation templates up to ~230 columns).
YAMLLINT_SOURCES = ("{extends: default, rules: {document-start: disable, line-length: {max: 100},"
                    " indentation: {spaces: 2, indent-sequences: whatever}}}")
YAMLLINT_RENDERED = ("{extends: default, rules: {document-start: disable,"
                     " line-length: {max: 240}, indentation: {spaces: 2,"
                     " indent-sequences: whatever}}}")


# --- lint and schema -------------------------------------------------------------------------


def _lint_findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Lint messages of severity warning (2) or error (3)."""
    return [m for m in report["messages"] if m["severity"] >= 2]


@pytest.mark.parametrize("values", [None, "full"], ids=["default", "full"])
def test_helm_lint_is_clean(values: str | None) -> None:
    vals = full_values() if values else None
    for strict in (False, True):
        report = helm.lint(str(CHART), vals, strict=strict, namespace=NAMESPACE,
                           kube_version=f"v{KUBERNETES_VERSION}")
        assert report["total_charts_linted"] == 1
        assert report["errors"] == []
        assert _lint_findings(report) == []
    # the only remark is informational (no icon: there is no stable URL to point at)
    assert {m["error"] for m in report["messages"]} <= {"icon is recommended"}


def test_chart_metadata() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "restic-runner"
    assert meta["version"] == "0.1.0"
    assert meta["appVersion"] == "0.1.0"
    assert isinstance(meta["appVersion"], str)


@pytest.mark.parametrize(("values", "key"), [
    ({"service": {"port": "eighty"}}, "/service/port"),
    ({"terminationGracePeriodSeconds": "120"}, "/terminationGracePeriodSeconds"),
    ({"persistence": {"enabled": "yes"}}, "/persistence/enabled"),
    ({"persistence": {"size": "lots"}}, "/persistence/size"),
    ({"secrets": {"restic-password": 1234}}, "/secrets/restic-password"),
    ({"cronJobs": [{"name": "nightly", "schedule": "0 3 * * *"}]}, "/cronJobs/0"),
    ({"cronJobs": [{"name": "n", "schedule": "@daily", "job": "backup", "wait": "1h"}]},
     "/cronJobs/0/wait"),
    ({"networkPolicy": {"ingressNamespaces": "airflow"}}, "/networkPolicy/ingressNamespaces"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    # one pod only: there is no replica count to set
    ({"replicaCount": 2}, "replicaCount"),
    ({"replicas": 2}, "replicas"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_schema_rejects_bad_values(values: dict[str, Any], key: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(values)
    assert key in str(caught.value)
    report = helm.lint(str(CHART), values)
    assert report["errors"], report
    assert any(key in m["error"] for m in report["messages"] if m["severity"] == 3)


def test_schema_accepts_the_full_values() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(full_values())  # raises HelmValuesError otherwise
        schema = chart.schema
    assert schema is not None
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    # every key of values.yaml (recursively, through objects) is declared by the schema
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = list(_undeclared(defaults, schema, schema, ""))
    assert missing == []


def _undeclared(values: Any, node: dict[str, Any], schema: dict[str, Any], at: str
                ) -> Iterator[str]:
    if "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    if isinstance(values, dict) and "properties" in node:
        for key, value in values.items():
            if key not in node["properties"]:
                yield f"{at}.{key}"
            else:
                yield from _undeclared(value, node["properties"][key], schema, f"{at}.{key}")


# --- kubernetes-validate ---------------------------------------------------------------------


def _write_manifests(r: Rendered, directory: Path) -> dict[Path, list[dict[str, Any]]]:
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[Path, list[dict[str, Any]]] = {}
    for template, text in r.manifests.items():
        docs = [d for d in yaml.safe_load_all(text) if d]
        if not docs:
            continue
        path = directory / template.replace("/", "__")
        path.write_text(text)
        written[path] = docs
    return written


def _kubernetes_validate(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict",
         *map(str, files)],
        capture_output=True, text=True, timeout=120)


def test_rendered_manifests_pass_kubernetes_validate(rendered: Rendered, tmp_path: Path) -> None:
    written = _write_manifests(rendered, tmp_path)
    result = _kubernetes_validate(*written)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines() + result.stderr.splitlines()
    version = KUBERNETES_VERSION.rsplit(".", 1)[0]
    for path, docs in written.items():
        for doc in docs:
            kind, name = doc["kind"], doc["metadata"]["name"]
            if kind in CRD_KINDS:
                # explicit skip: no schema, the validator says so (asserted structurally below)
                expected = (f"WARN {path} Couldn't find schema for kind {kind} with api version "
                            f"{doc['apiVersion']}")
            else:
                expected = (f"INFO {path} passed for resource {kind.lower()}/{name} against "
                            f"version {version}")
            assert any(line.startswith(expected) for line in lines), (expected, lines)
    # nothing else was skipped or warned about
    others = [line for line in lines if not line.startswith("INFO ")
              and not any(f"kind {k} " in line for k in CRD_KINDS)]
    assert others == []


def test_kubernetes_validate_does_fail_on_bad_manifests(default: Rendered, tmp_path: Path
                                                        ) -> None:
    deployment = copy.deepcopy(default.one("Deployment"))
    deployment["spec"]["replicas"] = "one"
    bad_type = tmp_path / "bad-type.yaml"
    bad_type.write_text(yaml.safe_dump(deployment))
    deployment = copy.deepcopy(default.one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnly"] = True
    unknown = tmp_path / "unknown-field.yaml"
    unknown.write_text(yaml.safe_dump(deployment))
    for path, message in ((bad_type, "'one' is not of type 'integer'"),
                          (unknown, "'readOnly' was unexpected")):
        result = _kubernetes_validate(path)
        assert result.returncode == 1
        assert message in result.stdout + result.stderr


# --- yamllint --------------------------------------------------------------------------------


def _yamllint(config: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "yamllint"), "--strict", "-f", "parsable", "-d", config,
                           *map(str, paths)], capture_output=True, text=True, timeout=60)


def test_yamllint_sources() -> None:
    result = _yamllint(YAMLLINT_SOURCES, CHART / "values.yaml", CHART / "Chart.yaml",
                       VALUES_FULL)
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_rendered_release(rendered: Rendered, tmp_path: Path) -> None:
    stream = tmp_path / f"{rendered.variant}.yaml"
    stream.write_text(rendered.stream())
    result = _yamllint(YAMLLINT_RENDERED, stream)
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\nb:   [1,2]  \n")
    assert _yamllint(YAMLLINT_RENDERED, bad).returncode == 1


# --- the Deployment --------------------------------------------------------------------------


def _container(spec: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = spec["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    (container,) = [c for c in containers if c["name"] == name]
    return container


def _mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def _volumes(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in spec.get("volumes", [])}


def test_deployment_one_pod_recreated(rendered: Rendered) -> None:
    deployment = rendered.one("Deployment", FULLNAME)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "Recreate" in rendered.template("deployment.yaml").split("strategy:")[0], \
        "the reason for one pod and Recreate is said next to it"
    # and nothing in the values can change that
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert not {"replicas", "replicaCount", "strategy", "autoscaling"} & set(values)


def test_deployment_command_env_and_probes(rendered: Rendered) -> None:
    spec = rendered.one("Deployment")["spec"]["template"]["spec"]
    container = _container(spec)
    assert container["args"] == ["serve", "--config", str(CONFIG_PATH), "--bind", "0.0.0.0:8080"]
    assert "command" not in container  # the image's ENTRYPOINT (tini -- restic-runner) stays
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HOME"] == str(STATE_DIR)
    assert env["XDG_CACHE_HOME"] == f"{STATE_DIR}/cache"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    grace = spec["terminationGracePeriodSeconds"]
    assert grace == rendered.values.get("terminationGracePeriodSeconds", 120)
    assert spec["enableServiceLinks"] is False
    assert spec["automountServiceAccountToken"] is False


def test_image_defaults_to_app_version(default: Rendered, full: Rendered) -> None:
    image = _container(default.one("Deployment")["spec"]["template"]["spec"])["image"]
    assert image == "restic-runner:0.1.0"
    image = _container(full.one("Deployment")["spec"]["template"]["spec"])["image"]
    assert image == "registry.example.net/backup/restic-runner:0.1.0-rc1"


def test_every_pod_is_locked_down(rendered: Rendered) -> None:
    pods = list(pod_templates(rendered))
    kinds = {what.split("/")[0] for what, _, _ in pods}
    assert {"Deployment", "Pod"} <= kinds
    if rendered.values.get("cronJobs"):
        assert "CronJob" in kinds
    for what, _, spec in pods:
        security = spec["securityContext"]
        assert {k: security.get(k) for k in POD_SECURITY} == POD_SECURITY, what
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec), what
        assert spec["automountServiceAccountToken"] is False, what
        for container in spec["containers"] + spec.get("initContainers", []):
            assert container["securityContext"] == CONTAINER_SECURITY, what
            # a read-only root filesystem: /tmp is a writable emptyDir
            tmp = _mounts(container)["/tmp"]
            assert "emptyDir" in _volumes(spec)[tmp["name"]], what
            assert not tmp.get("readOnly"), what


def test_secret_volumes_are_0400_and_read_only(rendered: Rendered) -> None:
    seen = 0
    for what, _, spec in pod_templates(rendered):
        secret_volumes = {n: v for n, v in _volumes(spec).items() if "secret" in v}
        for name, volume in secret_volumes.items():
            assert volume["secret"]["defaultMode"] == 0o400, what
            for item in volume["secret"].get("items", []):
                assert item.get("mode", 0o400) == 0o400, what
            for container in spec["containers"]:
                for mount in container.get("volumeMounts", []):
                    if mount["name"] == name:
                        assert mount["readOnly"] is True, what
                        seen += 1
    assert seen >= 1
    text = rendered.template("deployment.yaml")
    assert "defaultMode: 256" in text  # 0400 written as a decimal: no YAML 1.1/1.2 octal trap


def test_state_volume(rendered: Rendered) -> None:
    spec = rendered.one("Deployment")["spec"]["template"]["spec"]
    state = _mounts(_container(spec))[str(STATE_DIR)]
    volume = _volumes(spec)[state["name"]]
    persistence = rendered.values.get("persistence", {})
    pvcs = rendered.all("PersistentVolumeClaim")
    if persistence.get("enabled", True) is False:
        assert volume == {"name": state["name"], "emptyDir": {}}
        assert pvcs == []
        assert "history, run logs and idempotency keys are lost" in " ".join(rendered.notes.split())
    elif persistence.get("existingClaim"):
        assert volume["persistentVolumeClaim"] == {"claimName": persistence["existingClaim"]}
        assert pvcs == []
    else:
        (pvc,) = pvcs
        assert volume["persistentVolumeClaim"] == {"claimName": pvc["metadata"]["name"]}
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
        assert "storageClassName" not in pvc["spec"]  # the cluster's default class


def test_storage_class_values() -> None:
    def pvc_spec(storage_class: str) -> dict[str, Any]:
        out = render({"persistence": {"storageClass": storage_class}})
        (text,) = [t for p, t in out.items() if p.endswith("pvc.yaml")]
        spec: dict[str, Any] = yaml.safe_load(text)["spec"]
        return spec

    assert pvc_spec("fast-ssd")["storageClassName"] == "fast-ssd"
    assert pvc_spec("-")["storageClassName"] == ""  # no class: bind a static PV


def test_extra_volumes_env_and_scheduling(full: Rendered) -> None:
    values = full.values
    spec = full.one("Deployment")["spec"]["template"]["spec"]
    container = _container(spec)
    volumes = _volumes(spec)
    for volume in values["extraVolumes"]:
        assert volumes[volume["name"]] == volume
    mounts = _mounts(container)
    for mount in values["extraVolumeMounts"]:
        assert mounts[mount["mountPath"]] == mount
    assert volumes["app-data"]["persistentVolumeClaim"]["readOnly"] is True
    env = container["env"]
    assert {"name": "TZ", "value": "Europe/Berlin"} in env
    assert spec["nodeSelector"] == values["nodeSelector"]
    assert spec["tolerations"] == values["tolerations"]
    assert spec["affinity"] == values["affinity"]
    assert spec["priorityClassName"] == values["priorityClassName"]
    assert spec["imagePullSecrets"] == values["imagePullSecrets"]
    assert spec["securityContext"]["supplementalGroups"] == [2000]
    assert container["resources"] == values["resources"]
    assert spec["serviceAccountName"] == values["serviceAccount"]["name"]
    template = full.one("Deployment")["spec"]["template"]["metadata"]
    assert template["labels"]["example.net/team"] == "backup"
    assert template["annotations"]["example.net/scrape"] == "false"


def test_pod_hostname_is_stable(default: Rendered, full: Rendered) -> None:
    # restic-runner labels its runs and metrics with the hostname: not the random pod name
    assert default.one("Deployment")["spec"]["template"]["spec"]["hostname"] == FULLNAME
    assert full.one("Deployment")["spec"]["template"]["spec"]["hostname"] == "nas-k8s"


def test_checksums_follow_config_and_secret(default: Rendered, existing: Rendered) -> None:
    annotations = default.one("Deployment")["spec"]["template"]["metadata"]["annotations"]

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    assert annotations["checksum/config"] == sha(default.template("configmap.yaml"))
    # the generated whsec_ secret is the same in the Secret and in its checksum
    assert annotations["checksum/secret"] == sha(default.template("secret.yaml"))
    changed = make_rendered("default", {"config": default.values.get("config", "") + "x = 1\n"})
    changed_annotations = changed.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert changed_annotations["checksum/config"] != annotations["checksum/config"]
    annotations = existing.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/secret"] == sha(f"existingSecret:{EXISTING_SECRET}")


# --- Service ---------------------------------------------------------------------------------


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions In/NotIn/Exists) against labels."""
    if not _selects(selector.get("matchLabels", {}), labels):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        if operator == "In" and labels.get(key) not in expression["values"]:
            return False
        if operator == "NotIn" and labels.get(key) in expression["values"]:
            return False
        if operator == "Exists" and key not in labels:
            return False
    return True


def test_service_selects_only_the_server_pod(rendered: Rendered) -> None:
    service = rendered.one("Service", FULLNAME)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http",
                                         "protocol": "TCP"}]
    selector = service["spec"]["selector"]
    for what, metadata, _ in pod_templates(rendered):
        assert _selects(selector, metadata["labels"]) == what.startswith("Deployment/"), what
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["selector"]["matchLabels"] == selector


def test_standard_labels(rendered: Rendered) -> None:
    for doc in rendered.docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "restic-runner", doc["kind"]
        assert labels["app.kubernetes.io/instance"] == "rr", doc["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", doc["kind"]
        assert labels["app.kubernetes.io/version"] == "0.1.0", doc["kind"]
        assert labels["helm.sh/chart"] == "restic-runner-0.1.0", doc["kind"]
        assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]


# --- configuration and secrets ---------------------------------------------------------------


def _config(r: Rendered) -> dict[str, Any]:
    text = r.one("ConfigMap", FULLNAME)["data"]["restic-runner.toml"]
    return tomllib.loads(text)


def _secret_paths(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, path) of every secret file the configuration names."""
    if isinstance(node, dict):
        for k, v in node.items():
            dotted = f"{key}.{k}" if key else k
            if k.endswith("_file") and isinstance(v, str):
                yield dotted, v
            elif k == "env_files" and isinstance(v, dict):
                for name, path in v.items():
                    yield f"{dotted}.{name}", path
            else:
                yield from _secret_paths(v, dotted)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _secret_paths(v, f"{key}[{i}]")


def test_config_matches_the_mounts(rendered: Rendered) -> None:
    config = _config(rendered)
    deployment = rendered.one("Deployment")["spec"]["template"]["spec"]
    mounts = _mounts(_container(deployment))
    # state_dir is the PVC (or emptyDir) mount
    assert config["state_dir"] == str(STATE_DIR)
    assert mounts[config["state_dir"]]["name"] == "state"
    # the config file is where serve is told to read it
    assert mounts[str(CONFIG_PATH.parent)]["name"] == "config"
    # bind on the container port
    assert config["server"]["bind"].rsplit(":", 1)[1] == "8080"
    # serve's graceful shutdown ends before Kubernetes kills the pod
    graceful = config["server"]["graceful_timeout"]
    assert re.fullmatch(r"\d+s", graceful)
    assert int(graceful[:-1]) < deployment["terminationGracePeriodSeconds"]
    # every secret file the config names is under the secrets mount and in the Secret
    paths = dict(_secret_paths(config))
    assert any(k.startswith("clients[") and k.endswith("secret_file") for k in paths)
    assert "restic.password_file" in paths
    secret = (rendered.one("Secret", FULLNAME)["stringData"]
              if not rendered.values.get("existingSecret") else None)
    for key, path in paths.items():
        file = PurePosixPath(path)
        assert file.parent == SECRETS_DIR, (key, path)
        assert mounts[str(SECRETS_DIR)]["name"] == "secrets"
        if secret is not None:
            assert file.name in secret, (key, path)
    # the CronJobs' jobs exist
    for cron in rendered.values.get("cronJobs", []):
        assert cron["job"] in config["jobs"]


def test_default_config_and_secret_layout(default: Rendered) -> None:
    config = _config(default)
    secret = default.one("Secret", FULLNAME)
    assert secret["type"] == "Opaque"
    assert set(secret["stringData"]) == {"repository", "restic-password", "trigger.whsec"}
    assert config["restic"]["repository_file"] == f"{SECRETS_DIR}/repository"
    assert config["restic"]["password_file"] == f"{SECRETS_DIR}/restic-password"
    assert config["restic"]["cache_dir"].startswith(f"{STATE_DIR}/")
    (client,) = config["clients"]
    assert client["secret_file"] == f"{SECRETS_DIR}/trigger.whsec"
    assert client["jobs"] == ["*"]
    assert list(config["jobs"]) == ["backup"]
    # required secrets left empty: NOTES says so
    assert "WARNING: secrets.repository is empty" in default.notes
    assert "WARNING: secrets.restic-password is empty" in default.notes


def test_generated_whsec_secrets(default: Rendered, full: Rendered) -> None:
    generated = default.one("Secret")["stringData"]["trigger.whsec"]
    assert len(parse_whsec(generated)) == 32  # what restic-runner itself accepts
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", generated)
    again = make_rendered("default").one("Secret")["stringData"]["trigger.whsec"]
    assert again != generated  # random, not a constant baked into the chart
    data = full.one("Secret")["stringData"]
    # given values are kept verbatim, empty *.whsec ones generated, nothing else invented
    for key, value in full.values["secrets"].items():
        if value:
            assert data[key] == value
    assert len(parse_whsec(data["ops.whsec"])) == 32
    assert set(data) == set(full.values["secrets"])


def test_multiline_secret_values_survive() -> None:
    content = 'line one\n  "quoted" \\ back\ttab\n# comment: {not: yaml}\n'
    out = make_rendered("default", {"secrets": {"rclone.conf": content}})
    assert out.one("Secret")["stringData"]["rclone.conf"] == content


def test_existing_secret(existing: Rendered) -> None:
    assert existing.all("Secret") == []
    names = set()
    for what, _, spec in pod_templates(existing):
        for volume in _volumes(spec).values():
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
                assert what.startswith(("Deployment/", "CronJob/")), what
    assert names == {EXISTING_SECRET}
    assert "(yours: existingSecret)" in existing.notes
    assert "WARNING: secrets." not in existing.notes


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "full-existing-secret"])
def test_rendered_config_passes_config_check(variant: str, tmp_path: Path) -> None:
    """The real `restic-runner config check` accepts the rendered configuration with the rendered
    Secret's files (mount paths mapped to local directories, files mode 0400 as mounted)."""
    rendered = rendered_variant(variant)
    config = _materialise(rendered, tmp_path)
    result = subprocess.run([str(VENV_BIN / "restic-runner"), "config", "check", "--config",
                             str(config)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = ", ".join(f"{n} ({j['kind']})" for n, j in _config(rendered)["jobs"].items())
    assert f"jobs: {jobs}" in result.stdout


# what a user must set (values.yaml: "REQUIRED with the default config")
REQUIRED_SECRETS = {"repository": "rest:https://user:p4ss@backup.example.net:8000/repo",
                    "restic-password": "a-password-the-user-sets"}


def _materialise(r: Rendered, root: Path, *, fill_required: bool = True) -> Path:
    """Write the Secret's files and the config as the pod sees them, under `root`; the
    required secrets the chart leaves empty are filled as a user must fill them."""
    secrets = root / "secrets"
    state = root / "state"
    secrets.mkdir()
    state.mkdir()
    for key, value in r.one("Secret", FULLNAME)["stringData"].items():
        if fill_required and not value.strip() and key in REQUIRED_SECRETS:
            value = REQUIRED_SECRETS[key]
        (secrets / key).write_text(value)
        (secrets / key).chmod(0o400)
    text = r.one("ConfigMap", FULLNAME)["data"]["restic-runner.toml"]
    text = text.replace(f"{SECRETS_DIR}/", f"{secrets}/").replace(str(STATE_DIR), str(state))
    config = root / "restic-runner.toml"
    config.write_text(text)
    return config


def test_the_default_charts_empty_secrets_fail_config_check_naming_the_key(
        tmp_path: Path) -> None:
    """values.yaml says the repository and its password are required: left empty, the rendered
    configuration is refused (as `serve` refuses it), naming the key, not started half-set."""
    config = _materialise(rendered_variant("default"), tmp_path, fill_required=False)
    result = subprocess.run([str(VENV_BIN / "restic-runner"), "config", "check", "--config",
                             str(config)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "restic.repository_file" in result.stderr and "is empty" in result.stderr


# --- CronJobs --------------------------------------------------------------------------------


def _cron_container(cron: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec, _container(spec, "trigger")


def test_cronjobs_run_the_trigger_command(rendered: Rendered) -> None:
    crons = {c["metadata"]["name"]: c for c in rendered.all("CronJob")}
    wanted = rendered.values.get("cronJobs", [])
    assert set(crons) == {f"{FULLNAME}-{c['name']}" for c in wanted}
    secret_key = rendered.values.get("triggerClient", {}).get("secretKey", "trigger.whsec")
    secret_file = CLIENT_SECRETS_DIR / secret_key
    for item in wanted:
        cron = crons[f"{FULLNAME}-{item['name']}"]
        assert len(cron["metadata"]["name"]) <= 52
        spec, container = _cron_container(cron)
        expected = ["trigger", URL, item["job"], "--secret-file", str(secret_file)]
        if "wait" in item:
            expected += ["--wait", str(item["wait"])]
        expected += ["--idempotency-key", "$(IDEMPOTENCY_KEY)"]
        assert container["args"] == expected
        assert "command" not in container
        env = {e["name"]: e for e in container["env"]}
        assert env["IDEMPOTENCY_KEY"]["valueFrom"] == {
            "fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}
        # the secret file the args name is mounted, and it is the only secret there
        mount = _mounts(container)[str(secret_file.parent)]
        volume = _volumes(spec)[mount["name"]]["secret"]
        assert volume["items"] == [{"key": secret_key, "path": secret_file.name}]
        assert volume["defaultMode"] == 0o400
        expected_secret = (rendered.values.get("existingSecret") or FULLNAME)
        assert volume["secretName"] == expected_secret
        if not rendered.values.get("existingSecret"):
            assert secret_key in rendered.one("Secret")["stringData"]
        # the schedule and the Job's behaviour
        s = cron["spec"]
        assert s["schedule"] == item["schedule"]
        assert s["concurrencyPolicy"] == item.get("concurrencyPolicy", "Forbid")
        assert s["suspend"] is item.get("suspend", False)
        assert s.get("timeZone") == item.get("timeZone")
        assert s["jobTemplate"]["spec"]["backoffLimit"] == item.get("backoffLimit", 2)
        assert spec["restartPolicy"] == "Never"
        for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit",
                    "failedJobsHistoryLimit"):
            if key in item:
                assert s[key] == item[key]


def test_cronjob_args_parse_with_the_real_cli(full: Rendered) -> None:
    from runner.cli.main import main

    for cron in full.all("CronJob"):
        _, container = _cron_container(cron)
        name, *args = container["args"]
        command = main.get_command(main.make_context("restic-runner", [name]), name)
        assert command is not None and command.name == "trigger"
        with command.make_context(name, list(args)) as ctx:
            params = ctx.params
        assert params["url"] == URL
        assert params["job"] in {c["job"] for c in full.values["cronJobs"]}
        assert params["secret_file"].startswith(f"{CLIENT_SECRETS_DIR}/")
        assert params["idempotency_key"] == "$(IDEMPOTENCY_KEY)"


def test_cronjob_name_too_long_fails() -> None:
    with pytest.raises(helm.HelmRenderError, match="longer than 52 characters"):
        render({"cronJobs": [{"name": "a-very-long-name-for-a-cronjob-x", "schedule": "@daily",
                              "job": "backup"}]}, name="a-long-release-name")


def test_trigger_client_secret_elsewhere() -> None:
    r = make_rendered("default", {
        "triggerClient": {"secretName": "cron-client", "secretKey": "cron.whsec"},
        "cronJobs": [{"name": "n", "schedule": "@daily", "job": "backup", "wait": 60}]})
    spec, container = _cron_container(r.one("CronJob"))
    (volume,) = [v for v in _volumes(spec).values() if "secret" in v]
    assert volume["secret"]["secretName"] == "cron-client"
    assert volume["secret"]["items"] == [{"key": "cron.whsec", "path": "cron.whsec"}]
    assert container["args"][4] == f"{CLIENT_SECRETS_DIR}/cron.whsec"


# --- monitoring ------------------------------------------------------------------------------


def test_chart_rules_are_deploys_rules() -> None:
    assert CHART_RULES.read_bytes() == RULES.read_bytes(), (
        "helm/restic-runner/files/restic-runner.rules.yml differs from deploy/prometheus/: "
        "copy deploy's file into the chart")


def test_prometheus_rule(full: Rendered, default: Rendered) -> None:
    rule = full.one("PrometheusRule", FULLNAME)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert "ResticRunnerLastSuccessTooOld" in alerts
    # the Prometheus templates in the annotations were not touched by Helm
    description = rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"]
    assert "{{ $labels.job_name }}" in description
    assert default.all("PrometheusRule") == []
    assert default.all("ServiceMonitor") == []


def test_service_monitor(full: Rendered) -> None:
    monitor = full.one("ServiceMonitor", FULLNAME)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = full.one("Service", FULLNAME)
    assert _match(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "30s"
    assert endpoint["scrapeTimeout"] == "20s"


# --- NetworkPolicy ---------------------------------------------------------------------------


def test_network_policy(full: Rendered) -> None:
    policy = full.one("NetworkPolicy", FULLNAME)["spec"]
    values = full.values["networkPolicy"]
    server_labels = full.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert _match(policy["podSelector"], server_labels)
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": 8080, "protocol": "TCP"}]
    pod_peers = [p["podSelector"] for p in ingress["from"] if "podSelector" in p]
    namespace_peers = [p["namespaceSelector"] for p in ingress["from"]
                       if "namespaceSelector" in p]
    assert all("podSelector" not in p for p in ingress["from"] if "namespaceSelector" in p)
    # the release's CronJob and test pods may call, other pods of the namespace may not
    for what, metadata, _ in pod_templates(full):
        if not what.startswith("Deployment/"):
            assert any(_match(s, metadata["labels"]) for s in pod_peers), what
    stranger = {"app.kubernetes.io/name": "other", "app.kubernetes.io/component": "trigger"}
    assert not any(_match(s, stranger) for s in pod_peers)
    (namespaces,) = namespace_peers
    assert namespaces == {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                                                "operator": "In",
                                                "values": values["ingressNamespaces"]}]}
    egress = policy["egress"]
    assert {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]} in egress
    for kind in ("repository", "pushgateway", "webhooks"):
        target = values["egress"][kind]
        rule = {"to": [{"ipBlock": {"cidr": c}} for c in target["cidrs"]],
                "ports": [{"port": p, "protocol": "TCP"} for p in target["ports"]]}
        assert rule in egress, kind
    for extra in values["egress"]["extra"]:
        assert extra in egress
    assert len(egress) == 1 + 3 + len(values["egress"]["extra"])


def test_network_policy_without_destinations_denies_egress() -> None:
    r = rendered_variant("no-persistence")
    policy = r.one("NetworkPolicy")["spec"]
    assert policy["egress"] == []
    assert len(policy["ingress"][0]["from"]) == 1  # no namespaces listed: own pods only
    assert rendered_variant("default").all("NetworkPolicy") == []


# --- the test hook and NOTES -----------------------------------------------------------------


def _hook(r: Rendered) -> dict[str, Any]:
    (pod,) = [d for d in r.all("Pod")
              if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    return pod


def test_helm_test_hook_targets_readyz(rendered: Rendered) -> None:
    pod = _hook(rendered)
    annotations = pod["metadata"]["annotations"]
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    container = _container(pod["spec"])
    assert container["command"][:2] == ["python3", "-c"]
    assert container["command"][3] == f"{URL}/readyz"
    assert pod["spec"]["restartPolicy"] == "Never"
    compile(container["command"][2], "readyz-hook", "exec")


class _Status(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b'{"status": "whatever"}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (503, 1), (None, 1)])
def test_helm_test_hook_script(default: Rendered, status: int | None, exit_code: int) -> None:
    script = _container(_hook(default)["spec"])["command"][2]
    if status is None:
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/readyz"
        result = subprocess.run([sys.executable, "-c", script, url, "0"],
                                capture_output=True, text=True, timeout=30)
    else:
        handler = type("Handler", (_Status,), {"status": status})
        server = http.server.HTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_port}/readyz"
            result = subprocess.run([sys.executable, "-c", script, url, "0"],
                                    capture_output=True, text=True, timeout=30)
        finally:
            server.shutdown()
            server.server_close()
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert url in result.stdout


def test_notes(full: Rendered) -> None:
    notes = full.notes
    assert "/readyz" in notes
    assert f"{SECRETS_DIR}/" in notes
    assert "restic-runner trigger http://127.0.0.1:8080 backup --secret-file" in notes
    assert f"kubectl -n {NAMESPACE} port-forward svc/{FULLNAME} 8080:8080" in notes
    assert f"{FULLNAME}-nightly: \"0 3 * * *\" (Europe/Berlin) -> job backup, waits up to 21600 s" \
        in notes
    assert "WARNING" not in notes


# --- the whole thing against the real service ------------------------------------------------


@pytest.fixture
def chart_service(tmp_path: Path) -> Iterator[tuple[Rendered, int, Path]]:
    """`restic-runner serve` started with the Deployment's args, the rendered ConfigMap and the
    rendered Secret's files (mount paths mapped into tmp_path, bind on loopback)."""
    r = make_rendered("default", {
        "secrets": {"repository": str(tmp_path / "repo"), "restic-password": "pw-0123456789"},
        "cronJobs": [{"name": "nightly", "schedule": "0 3 * * *", "job": "backup",
                      "wait": 30}]})
    config = _materialise(r, tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = _container(r.one("Deployment")["spec"]["template"]["spec"])["args"]
    args = [str(config) if a == str(CONFIG_PATH) else a for a in args]
    args = [f"127.0.0.1:{port}" if a == "0.0.0.0:8080" else a for a in args]
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen([str(VENV_BIN / "restic-runner"), *args], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, "HOME": str(tmp_path / "state")})
    try:
        yield r, port, tmp_path / "secrets"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_chart_against_the_real_service(chart_service: tuple[Rendered, int, Path]) -> None:
    """The default config and generated secret start the real service; the test hook sees it
    ready; a CronJob's exact args (Kubernetes' $(VAR) expansion done by hand) authenticate; a
    pod retried after its --wait read the failed result runs the job again, while one lost
    before it read anything follows the same run (docs/api.md, "Idempotency")."""
    r, port, secrets = chart_service
    local = f"http://127.0.0.1:{port}"
    script = _container(_hook(r)["spec"])["command"][2]
    ready = subprocess.run([sys.executable, "-c", script, f"{local}/readyz", "20"],
                           capture_output=True, text=True, timeout=60)
    log = (secrets.parent / "serve.log").read_text(errors="replace")
    assert ready.returncode == 0, ready.stdout + ready.stderr + log[-3000:]
    assert '"status":"ready"' in ready.stdout.replace(" ", "")

    _, container = _cron_container(r.one("CronJob"))
    job_name = f"{FULLNAME}-nightly-29433780"  # what the CronJob controller names the Job
    args = [a.replace(URL, local)
             .replace(f"{CLIENT_SECRETS_DIR}/", f"{secrets}/")
             .replace("$(IDEMPOTENCY_KEY)", job_name) for a in container["args"]]
    runs = []
    wait_at = args.index("--wait")
    lost = args[:wait_at] + args[wait_at + 2:]  # a pod lost before it read the result
    for pod_args in (args, args, lost, lost):
        result = subprocess.run([str(VENV_BIN / "restic-runner"), *pod_args],
                                capture_output=True, text=True, timeout=60)
        output = result.stdout + result.stderr
        # accepted (2 would be a refusal: 401/403/404) and followed to its end (124: still
        # running); the backup itself fails: there is no repository at that path
        serve_log = (secrets.parent / "serve.log").read_text(errors="replace")
        assert result.returncode not in (2, 124), output + serve_log[-3000:]
        if pod_args is args:
            assert "backup: failed" in output
            (run_id,) = re.findall(r"run ([0-9a-f-]{36})", output)
        else:
            run_id = output.strip()
        runs.append((run_id, result.returncode))
    # the first pod read its failed result: the retried pod runs the backup again
    assert runs[0][0] != runs[1][0] and runs[0][1] == runs[1][1] == 1
    # two pods that never read a result: the second follows the first's run
    assert runs[2] == runs[3] and runs[2][0] not in (runs[0][0], runs[1][0])
