"""The metrics contract: every metric and label name the service or the Pushgateway exports
(what the shipped alert rules and dashboard may use), a small PromQL scanner that lists the
names an expression refers to, and `promtool`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

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
# the same stats of the last successful run (a failure does not blank them)
SUCCESS_STAT_METRICS = tuple(name.replace("_last_", "_last_success_", 1) for name in STAT_METRICS)
RUNNER_METRICS = (
    "restic_runner_job_max_age_seconds", "restic_runner_notifications_pending",
    "restic_runner_notification_failures_total", "restic_runner_notifications_given_up_total",
)
PUSHGATEWAY_METRICS = ("push_time_seconds",)
CONTRACT_METRICS = frozenset(
    [f"restic_{kind}_{suffix}" for kind in KINDS for suffix in PER_KIND_SUFFIXES]
    + [*STAT_METRICS, *SUCCESS_STAT_METRICS, *RUNNER_METRICS, *PUSHGATEWAY_METRICS]
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
