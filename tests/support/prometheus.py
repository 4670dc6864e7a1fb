"""A real Prometheus (Debian's, 2.42) on a free loopback port: a private TSDB in a temporary
directory, scrape and rule evaluation every second, the shipped alert rules loaded, scraping
what a test names (a Pushgateway with `honor_labels: true`, as docs/metrics.md says); and the
reads a test makes of its API (alerts, instant queries)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import ROOT
from tests.support.processes import free_port, wait_until

RULES = ROOT / "deploy" / "prometheus" / "restic-runner.rules.yml"


def prometheus_binary() -> str:
    path = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(path).exists():
        pytest.fail("prometheus missing: run `make test` (scripts/bootstrap.sh installs the "
                    "Debian package prometheus)")
    return path


def pushgateway_scrape(url: str, *, auth: tuple[str, str] | None = None,
                       secrets_dir: Path | None = None) -> dict[str, Any]:
    """The scrape config docs/metrics.md gives for a Pushgateway at `url` (its basic-auth
    password, if any, in a 0600 file under `secrets_dir`: never in the config itself)."""
    address = urllib.parse.urlsplit(url).netloc
    scrape: dict[str, Any] = {"job_name": "pushgateway", "honor_labels": True,
                              "static_configs": [{"targets": [address]}]}
    if auth is not None:
        assert secrets_dir is not None, "a password needs a directory for its file"
        password = secrets_dir / "prometheus-scrape.password"
        password.write_text(auth[1])
        password.chmod(0o600)
        scrape["basic_auth"] = {"username": auth[0], "password_file": str(password)}
    return scrape


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a successful API answer."""
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        with urllib.request.urlopen(self.url + path + query, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def alerts(self, name: str | None = None) -> list[dict[str, Any]]:
        """Active alerts (pending or firing), of one alert rule when `name` is given."""
        return [alert for alert in self.api("/api/v1/alerts")["alerts"]
                if name is None or alert["labels"].get("alertname") == name]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant vector query's samples."""
        return list(self.api("/api/v1/query", query=expr)["result"])

    def rules_loaded(self) -> int:
        return sum(len(group["rules"]) for group in self.api("/api/v1/rules")["groups"])

    def targets_up(self) -> bool:
        active = self.api("/api/v1/targets")["activeTargets"]
        return bool(active) and all(target["health"] == "up" for target in active)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_prometheus(base: Path, scrape_configs: list[dict[str, Any]], *,
                     rules: tuple[Path, ...] = (RULES,), interval: str = "1s") -> Prometheus:
    """Prometheus on a free loopback port with its TSDB under `base`, once it is ready, has
    loaded `rules` and sees every scrape target up. The caller stops it (`stop`)."""
    base.mkdir(parents=True, exist_ok=True)
    config = base / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rules],
        "scrape_configs": scrape_configs}, sort_keys=False))
    port = free_port()
    log = base / "prometheus.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [prometheus_binary(), f"--config.file={config}",
             f"--storage.tsdb.path={base / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn"],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    prometheus = Prometheus(f"http://127.0.0.1:{port}", process, log)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited {process.returncode}:\n{log.read_text()}")
        try:
            return (prometheus.rules_loaded() > 0 or not rules) and prometheus.targets_up()
        except OSError:
            return False

    try:
        wait_until(ready, timeout=30, interval=0.1)
    except BaseException:
        prometheus.stop()
        raise
    return prometheus


@contextlib.contextmanager
def running_prometheus(base: Path, scrape_configs: list[dict[str, Any]], **kw: Any
                       ) -> Iterator[Prometheus]:
    """`start_prometheus`, stopped when the block ends however it ends."""
    prometheus = start_prometheus(base, scrape_configs, **kw)
    try:
        yield prometheus
    finally:
        prometheus.stop()
