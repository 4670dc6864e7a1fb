"""The Helm chart rendered with Helm's own engine (helm-python-sdk: libhelm over Helm's Go SDK; no
helm binary, no cluster), once per values variant, and what a test reads of the release."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import helm_python as helm
import yaml

from tests.support.paths import ROOT

CHART = ROOT / "helm" / "restic-runner"
VALUES_FULL = ROOT / "tests" / "helm" / "values-full.yaml"
RELEASE = "rr"
NAMESPACE = "backup"
FULLNAME = "rr-restic-runner"  # <release>-<chart>
EXISTING_SECRET = "backup-secrets"


def full_values() -> dict[str, Any]:
    return yaml.safe_load(VALUES_FULL.read_text())


def _variant(name: str) -> dict[str, Any]:
    if name == "default":
        return {}
    values = full_values()
    if name == "full":
        return values
    if name == "full-existing-secret":
        values["existingSecret"] = EXISTING_SECRET
        return values
    if name == "no-persistence":  # and the other switches the other way round
        return {
            "persistence": {"enabled": False},
            "serviceAccount": {"create": False},
            "networkPolicy": {"enabled": True,
                              "egress": {"dns": {"enabled": False}}},
            "cronJobs": [{"name": "hourly", "schedule": "@hourly", "job": "backup"}],
        }
    raise KeyError(name)


VARIANTS = ("default", "full", "full-existing-secret", "no-persistence")


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE) -> dict[str, str]:
    """{template path: rendered text}, as `helm template` computes it (NOTES.txt included)."""
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(copy.deepcopy(values or {}), name=name, namespace=NAMESPACE)


@dataclass
class Rendered:
    variant: str
    values: dict[str, Any]
    manifests: dict[str, str]  # template path -> text, without NOTES.txt
    notes: str
    docs: list[dict[str, Any]] = field(default_factory=list)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.variant}: expected one {kind} {name or ''}, got {found}"
        return found[0]

    def template(self, suffix: str) -> str:
        (text,) = [t for path, t in self.manifests.items() if path.endswith(suffix)]
        return text

    def stream(self) -> str:
        """The whole release as `helm template` prints it."""
        return "".join(f"---\n# Source: {path}\n{text.strip()}\n"
                       for path, text in sorted(self.manifests.items()) if text.strip())


def make_rendered(variant: str, values: dict[str, Any] | None = None) -> Rendered:
    values = _variant(variant) if values is None else values
    out = render(values)
    notes = "".join(t for p, t in out.items() if p.endswith("NOTES.txt"))
    manifests = {p: t for p, t in out.items() if not p.endswith("NOTES.txt")}
    docs = [d for text in manifests.values() for d in yaml.safe_load_all(text) if d]
    return Rendered(variant, values, manifests, notes, docs)


_cache: dict[str, Rendered] = {}


def rendered_variant(variant: str) -> Rendered:
    """The chart rendered with a values variant, once per session."""
    if variant not in _cache:
        _cache[variant] = make_rendered(variant)
    return _cache[variant]


def pod_templates(r: Rendered) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(what, pod metadata, pod spec) of every pod the release can start: the Deployment's,
    each CronJob's and the `helm test` hook."""
    for d in r.docs:
        what = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "Deployment":
            yield what, d["spec"]["template"]["metadata"], d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            template = d["spec"]["jobTemplate"]["spec"]["template"]
            yield what, template["metadata"], template["spec"]
        elif d["kind"] == "Pod":
            yield what, d["metadata"], d["spec"]
