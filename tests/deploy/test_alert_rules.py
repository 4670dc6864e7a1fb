"""The shipped Prometheus rules: `promtool check rules` and `promtool test rules` pass, every
alert is labelled and annotated, is unit-tested firing and not firing, and uses only metric and
label names of the metrics contract (tests/support/metrics_contract.py, see deploy/README.md)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.metrics_contract import contract_violations, promql_references, run_promtool
from tests.support.paths import ROOT

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "restic-runner.rules.yml"
RULES_TEST = PROMETHEUS_DIR / "restic-runner.rules.test.yml"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(RULES)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def annotation_queries(text: str) -> list[str]:
    """The PromQL of `printf "..." ... | query` calls in an annotation template."""
    return [re.sub(r"%[qsdv]", '"x"', q).replace('\\"', '"')
            for q in re.findall(r'printf\s+"((?:[^"\\]|\\.)*)"[^}]*\|\s*query', text)]


EXPECTED_ALERTS = {
    "ResticRunnerLastSuccessTooOld", "ResticRunnerNeverSucceeded", "ResticRunnerLastRunFailed",
    "ResticRunnerRunningTooLong", "ResticRunnerNotificationsFailing",
    "ResticRunnerNotificationsGivenUp", "ResticRunnerNoPushFromHost",
}


# ---- the scanner itself ------------------------------------------------------------------------
def test_scanner_reads_names_patterns_and_labels() -> None:
    names, patterns, labels = promql_references(
        'max by (hostname, job_name) (increase(restic_runner_notification_failures_total'
        '{job="restic_runner"}[30m])) > on (hostname) group_left '
        '{__name__=~"restic_[a-z_]+_running", job_name=~"a,b"} and time() - 1e3')
    assert names == {"restic_runner_notification_failures_total"}
    assert patterns == {"restic_[a-z_]+_running"}
    assert labels == {"hostname", "job_name", "job", "__name__"}


@pytest.mark.parametrize(("expr", "problem"), [
    ("restic_backup_last_sucess", "metric restic_backup_last_sucess is not in the contract"),
    ("max by (host) (restic_backup_running)", "label host is not in the contract"),
    ('{__name__=~"restic_(backup|prune)_last_success"}', "not exactly restic_<kind>_last_success"),
    ('{__name__=~"restic_[a-z_]+_last_success.*"}', "mixes metrics"),
    ('{__name__=~"restic_[a-z]+_nope"}', "matches no contract metric"),
])
def test_contract_check_rejects(expr: str, problem: str) -> None:
    assert any(problem in p for p in contract_violations(expr)), contract_violations(expr)


# ---- the rules ---------------------------------------------------------------------------------
def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout, result.stdout


@pytest.mark.slow
def test_promtool_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", RULES_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("before", "after"), [
    # the copies from the Pushgateway and the scrape must not add up
    ("max by (hostname, job_name) (restic_runner_job_max_age_seconds)",
     "sum by (hostname, job_name) (restic_runner_job_max_age_seconds)"),
    # the same job_name on two hosts are two jobs
    ("> on (hostname, job_name)\n          max by (hostname, job_name)",
     "> on (job_name)\n          max by (job_name)"),
    ("for: 1d", "for: 1h"),
    # restic_<kind>_last_success_<stat> (a success's stats, 0 when nothing was new) is no
    # restic_<kind>_last_success
    ('({__name__=~"restic_[a-z_]+_last_success"}) == 0)',
     '({__name__=~"restic_[a-z_]+_last_success.*"}) == 0)'),
    ("3 * max by", "2 * max by"),
])
def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path, before: str, after: str) -> None:
    text = RULES.read_text()
    assert before in text
    (tmp_path / RULES.name).write_text(text.replace(before, after, 1))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    result = run_promtool("test", "rules", tmp_path / RULES_TEST.name)
    assert result.returncode != 0, result.stdout + result.stderr


def test_the_expected_alerts_exist() -> None:
    assert {rule["alert"] for rule in alert_rules()} == EXPECTED_ALERTS
    assert [group["name"] for group in load_yaml(RULES)["groups"]] == ["restic-runner"]


PER_HOST_ALERTS = {"ResticRunnerNoPushFromHost"}


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_is_labelled_and_annotated(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("warning", "critical")
    annotations = rule["annotations"]
    for key in ("summary", "description"):
        assert "{{ $labels.hostname }}" in annotations[key], key
    if rule["alert"] in PER_HOST_ALERTS:  # one alert per host: it lists the host's jobs
        assert ".Labels.job_name" in annotations["description"]
    else:
        for key in ("summary", "description"):
            assert "{{ $labels.job_name }}" in annotations[key], key


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_uses_only_contract_names(rule: dict[str, Any]) -> None:
    exprs = [rule["expr"]]
    for text in rule["annotations"].values():
        exprs += annotation_queries(text)
    problems = [f"{expr!r}: {p}" for expr in exprs for p in contract_violations(expr)]
    assert not problems, "\n".join(problems)


def test_alerts_aggregate_to_hostname_and_job_name() -> None:
    for rule in alert_rules():
        for clause in re.findall(r"\b(?:by|on)\s*\(([^()]*)\)", rule["expr"]):
            assert {c.strip() for c in clause.split(",")} <= {"hostname", "job_name"}, rule
        assert "without" not in rule["expr"] and "ignoring" not in rule["expr"], rule


def test_threshold_alert_annotates_the_threshold() -> None:
    rule = next(r for r in alert_rules() if r["alert"] == "ResticRunnerLastSuccessTooOld")
    assert rule["labels"]["severity"] == "critical"
    queries = annotation_queries(rule["annotations"]["max_age"])
    assert queries and "restic_runner_job_max_age_seconds" in queries[0]


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    cases: dict[str, list[list[Any]]] = {}
    for test in load_yaml(RULES_TEST)["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(case.get("exp_alerts") or [])
    for alert in EXPECTED_ALERTS:
        assert any(cases.get(alert, [])), f"{alert}: no case where it fires"
        assert not all(cases.get(alert, [[]])), f"{alert}: no case where it must not fire"
    for test in load_yaml(RULES_TEST)["tests"]:
        for case in test.get("alert_rule_test", []):
            for expected in case.get("exp_alerts") or []:
                assert set(expected["exp_annotations"]) >= {"summary", "description"}, case
                assert "severity" in expected["exp_labels"], case
