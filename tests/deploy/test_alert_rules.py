"""The shipped Prometheus rules: `promtool check rules` and `promtool test rules` pass, every
alert is labelled and annotated, is unit-tested firing and not firing, and uses only metric and
label names of the metrics contract (kept here, see deploy/README.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "restic-runner.rules.yml"
RULES_TEST = PROMETHEUS_DIR / "restic-runner.rules.test.yml"

# ---- the metrics contract: every name the service or the Pushgateway exports ----------------
KINDS = ("backup", "forget", "prune", "check", "unlock", "replicate", "restore_test")
PER_KIND_SUFFIXES = (
    "last_exit_code", "last_success", "last_duration_seconds", "last_started_timestamp",
    "last_finished_timestamp", "last_success_timestamp", "running", "running_since_timestamp",
)
STAT_METRICS = (
    "restic_backup_last_data_added_bytes", "restic_backup_last_files_new",
    "restic_backup_last_files_changed", "restic_backup_last_files_unmodified",
    "restic_backup_last_dirs_new", "restic_backup_last_dirs_changed",
    "restic_backup_last_processed_bytes", "restic_backup_last_files_processed",
    "restic_forget_last_snapshots_removed", "restic_forget_last_snapshots_kept",
    "restic_check_last_errors", "restic_replicate_last_transferred_bytes",
    "restic_replicate_last_transfers", "restic_replicate_last_errors",
)
RUNNER_METRICS = (
    "restic_runner_job_max_age_seconds", "restic_runner_notifications_pending",
    "restic_runner_notification_failures_total", "restic_runner_notifications_given_up_total",
)
PUSHGATEWAY_METRICS = ("push_time_seconds",)
CONTRACT_METRICS = frozenset(
    [f"restic_{kind}_{suffix}" for kind in KINDS for suffix in PER_KIND_SUFFIXES]
    + [*STAT_METRICS, *RUNNER_METRICS, *PUSHGATEWAY_METRICS]
)
# hostname/job_name from the service; job/instance from the Pushgateway or the scrape config
CONTRACT_LABELS = frozenset({"hostname", "job_name", "job", "instance", "__name__"})

# ---- a small PromQL scanner: enough to list the names an expression refers to ---------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*')
_LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(\s*\()?")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                       "group_left", "group_right", "inf", "nan", "Inf", "NaN", "atan2"})


def promql_references(expr: str) -> tuple[set[str], set[str], set[str]]:
    """(metric names, `__name__` regexes/values, label names) that `expr` refers to."""
    names: set[str] = set()
    name_patterns: set[str] = set()
    labels: set[str] = set()
    for body in _MATCHERS.findall(expr):
        pos = 0
        while pos < len(body):
            matcher = _MATCHER.match(body, pos)
            assert matcher, f"cannot read the label matchers {{{body}}} in {expr!r}"
            label, op, value = matcher.groups()
            labels.add(label)
            if label == "__name__":
                assert op in ("=", "=~"), f"negative __name__ matcher in {expr!r}"
                name_patterns.add(value[1:-1].replace('\\"', '"').replace("\\\\", "\\"))
            pos = matcher.end()
            if pos < len(body):
                assert body[pos] == ",", f"cannot read the label matchers {{{body}}} in {expr!r}"
                pos += 1
    rest = _MATCHERS.sub(" ", _STRING.sub('""', expr))
    for group in _LABEL_LIST.findall(rest):
        labels.update(part.strip() for part in group.split(",") if part.strip())
    rest = _LABEL_LIST.sub(" ", rest)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)  # range selectors and subqueries
    for ident, call in _IDENT.findall(rest):
        if not call and ident not in _KEYWORDS:
            names.add(ident)
    return names, name_patterns, labels


def contract_violations(expr: str) -> list[str]:
    """Why `expr` is not built on the metrics contract (empty: it is)."""
    names, patterns, labels = promql_references(expr)
    problems = [f"metric {name} is not in the contract"
                for name in sorted(names - CONTRACT_METRICS)]
    problems += [f"label {label} is not in the contract"
                 for label in sorted(labels - CONTRACT_LABELS)]
    for pattern in sorted(patterns):
        matched = {name for name in CONTRACT_METRICS if re.fullmatch(pattern, name)}
        suffixes = {name.removeprefix(f"restic_{kind}_") for name in matched for kind in KINDS
                    if name.startswith(f"restic_{kind}_")}
        if not matched:
            problems.append(f"__name__ pattern {pattern!r} matches no contract metric")
        elif len(suffixes) == 1 and (suffix := suffixes.pop()) in PER_KIND_SUFFIXES:
            # a per-kind pattern must cover every kind and match nothing else of the contract
            expected = {f"restic_{kind}_{suffix}" for kind in KINDS}
            if matched != expected:
                problems.append(f"__name__ pattern {pattern!r} matches {sorted(matched)}, "
                                f"not exactly restic_<kind>_{suffix} for every kind")
        elif pattern not in CONTRACT_METRICS:
            problems.append(f"__name__ pattern {pattern!r} mixes metrics: {sorted(matched)}")
    return problems


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool missing: run `make test` (scripts/bootstrap.sh installs the "
                    "Debian package prometheus, which ships it)")
    return path


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True,
                          timeout=300, check=False)


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
