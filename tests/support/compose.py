"""restic-backup-helper 2.14.2's compose files (the peer, `../shared/reference`), read as its
users run them: YAML anchors and merge keys resolved, `${VAR}`, `${VAR:-default}` and
`${VAR:?message}` interpolated from a given environment, each service's `environment`,
`volumes` and `command` as written. The compatibility tests adapt what cannot run here
(container paths, cloud backends) and say what they adapted."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.peer import PEER_ROOT

# The three compose environments of issue 15: file -> its services
COMPOSE_FILES = {
    "ci/docker-compose.smoke.yml": ("restic-smoke",),
    "examples/compose/cloud-reference.yml": ("restic-cloud",),
    "examples/compose/multi-job.yml": ("restic-documents", "restic-media", "restic-vmstore"),
}
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                       r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


class ComposeError(ValueError):
    """What `docker compose` would refuse (a `${VAR:?message}` with VAR unset)."""


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Compose's interpolation of one string (`$$` is a literal `$`)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = environ.get(name)
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and missing:
            return arg
        if op in (":?", "?") and missing:
            raise ComposeError(f"{name}: {arg}")
        return value or ""

    return _VARIABLE.sub(one, text)


def _interpolated(node: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, environ)
    if isinstance(node, list):
        return [_interpolated(item, environ) for item in node]
    if isinstance(node, dict):
        return {key: _interpolated(value, environ) for key, value in node.items()}
    return node


@dataclass(frozen=True)
class Service:
    """One compose service as written (after interpolation)."""

    file: str
    name: str
    environment: dict[str, str]
    volumes: tuple[str, ...]
    command: tuple[str, ...]
    hostname: str
    secrets: tuple[str, ...]


def _environment(raw: Any) -> dict[str, str]:
    """Compose's `environment:` as a mapping (a list of `NAME=value` too); values as strings,
    as the container sees them."""
    if isinstance(raw, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in raw)
        return {name: value for name, value in pairs}
    return {str(k): "" if v is None else str(v) for k, v in (raw or {}).items()}


def load_services(file: str, environ: Mapping[str, str] | None = None) -> dict[str, Service]:
    """The services of the peer's compose `file` (relative to the peer's repository)."""
    document = yaml.safe_load((PEER_ROOT / file).read_text())
    document = _interpolated(document, dict(environ or {}))
    services = {}
    for name, spec in document["services"].items():
        services[name] = Service(
            file=file, name=name, environment=_environment(spec.get("environment")),
            volumes=tuple(str(v) for v in spec.get("volumes") or ()),
            command=tuple(str(c) for c in spec.get("command") or ()),
            hostname=str(spec.get("hostname") or spec.get("container_name") or name),
            secrets=tuple(str(s) for s in spec.get("secrets") or ()))
    return services


def container_paths(service: Service) -> dict[str, str]:
    """Each volume's container path -> its source as written (bind or named volume)."""
    mounts = {}
    for volume in service.volumes:
        source, _, rest = volume.partition(":")
        target = rest.split(":")[0]
        mounts[target] = source
    return mounts


def compose_file(file: str) -> Path:
    return PEER_ROOT / file


# Container paths of the three compose files -> a directory name under a test's root
CONTAINER_PATHS = ("/data", "/config", "/var/log", "/run/secrets", "/tmp/cache_dir",
                   "/tmp/restic", "/.cache/restic", "/hooks", "/restore", "/host")


def adapt_paths(variables: Mapping[str, str], root: Path) -> tuple[dict[str, str], list[str]]:
    """`variables` with every container path (a value, or a token of one, that starts with one
    of CONTAINER_PATHS) moved under `root`; and a line per variable adapted, for the report."""
    adapted, notes = {}, []
    for name, value in variables.items():
        new = adapt_text(value, root)
        adapted[name] = new
        if new != value:
            notes.append(f"{name}: {value!r} -> {new!r}")
    return adapted, notes


def adapt_text(text: str, root: Path) -> str:
    """`text` (a value, a job file) with its container paths moved under `root` (a path
    starts a line, a token, or follows `=` or `;`)."""
    pattern = re.compile(r"(?<![^\s=;])(" + "|".join(re.escape(p) for p in CONTAINER_PATHS)
                         + r")(?=/|\s|;|$)", re.M)
    return pattern.sub(lambda m: str(root / m.group(1).strip("/").replace("/", "-")), text)


def host_path(root: Path, container_path: str) -> Path:
    """Where `adapt_paths` put a container path (e.g. "/config/x.txt") under `root`."""
    for prefix in sorted(CONTAINER_PATHS, key=len, reverse=True):
        if container_path == prefix or container_path.startswith(prefix + "/"):
            rest = container_path[len(prefix):].lstrip("/")
            base = root / prefix.strip("/").replace("/", "-")
            return base / rest if rest else base
    raise ValueError(f"not a container path of the compose files: {container_path}")
