"""deploy/prometheus/prometheus.example.yml, the scrape config the docs give (and `make demo`
runs): deploy/README.md shows the file as it is, its Pushgateway job keeps the pushed labels, and
`promtool check config` accepts it beside the shipped rules."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from tests.support.metrics_contract import run_promtool
from tests.support.paths import ROOT

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
EXAMPLE = PROMETHEUS_DIR / "prometheus.example.yml"


def test_the_readme_shows_the_example_file_as_it_is() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    body = EXAMPLE.read_text().split("\nglobal:", 1)[1]  # the file without its header comment
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    assert "global:" + body in blocks


def test_the_pushgateway_job_honours_the_pushed_labels_and_the_rules_are_loaded() -> None:
    config = yaml.safe_load(EXAMPLE.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["pushgateway"]["honor_labels"] is True
    assert not jobs["restic-runner"].get("honor_labels")
    assert config["rule_files"] == ["restic-runner.rules.yml"]


def test_promtool_accepts_the_example_beside_the_rules(tmp_path: Path) -> None:
    for name in ("prometheus.example.yml", "restic-runner.rules.yml"):
        shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    result = run_promtool("check", "config", tmp_path / "prometheus.example.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
