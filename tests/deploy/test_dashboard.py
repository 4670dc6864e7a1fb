"""The shipped Grafana dashboard, checked structurally (no Grafana server here): the import
inputs, the datasource and filter variables, panel ids and layout, and that every query is
valid PromQL (by `promtool check rules`) built on the metrics contract."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.metrics_contract import contract_violations, run_promtool
from tests.support.paths import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "restic-runner.dashboard.json"
DS_VARIABLE = "${datasource}"
# Grafana's variables in queries -> a value that makes the query plain PromQL
SUBSTITUTIONS = {
    "$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
    "${hostname}": ".*", "$hostname": ".*", "${job_name}": ".*", "$job_name": ".*",
}
GRID_COLUMNS = 24


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    found = []
    for panel in load()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def query_panels() -> list[dict[str, Any]]:
    return [panel for panel in panels() if panel["type"] != "row"]


def targets() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, target) for panel in query_panels() for target in panel["targets"]]


def variables() -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in load()["templating"]["list"]}


def plain_promql(expr: str) -> str:
    """`expr` with Grafana's variables replaced (longest first); none may be left over."""
    for variable in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(variable, SUBSTITUTIONS[variable])
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def label_values_selector(query: str) -> str:
    match = re.fullmatch(r"label_values\((.+),\s*([a-z_]+)\)", query)
    assert match, f"not label_values(selector, label): {query!r}"
    return match.group(1)


def check_as_recording_rules(exprs: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    """Run `promtool check rules` on `exprs` (record name -> PromQL) as recording rules."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": name, "expr": expr} for name, expr in exprs.items()]}]}
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    result = run_promtool("check", "rules", path)
    return result.returncode, result.stdout + result.stderr


def test_top_level_keys() -> None:
    dashboard = load()
    assert dashboard["id"] is None
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard["schemaVersion"] == 39
    assert dashboard["title"] and dashboard["panels"]
    for key in ("__requires", "annotations", "templating", "time", "editable", "version"):
        assert key in dashboard, key


def test_import_inputs_and_requirements() -> None:
    dashboard = load()
    assert dashboard["__inputs"] == [{
        "name": "DS_PROMETHEUS", "label": "Prometheus",
        "description": dashboard["__inputs"][0]["description"], "type": "datasource",
        "pluginId": "prometheus", "pluginName": "Prometheus"}]
    requires = {(req["type"], req["id"]) for req in dashboard["__requires"]}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} <= requires
    assert {("panel", panel["type"]) for panel in query_panels()} <= requires
    # the input is used: it is the datasource variable's default after import
    assert "${DS_PROMETHEUS}" in json.dumps(variables()["datasource"]["current"])


def test_datasource_variable() -> None:
    var = variables()["datasource"]
    assert (var["type"], var["query"]) == ("datasource", "prometheus")
    assert not var.get("multi") and not var.get("includeAll")


@pytest.mark.parametrize("name", ["hostname", "job_name"])
def test_filter_variables(name: str) -> None:
    var = variables()[name]
    assert var["type"] == "query"
    assert var["multi"] is True and var["includeAll"] is True
    assert var["datasource"] == {"type": "prometheus", "uid": DS_VARIABLE}
    query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
    assert query == var["definition"]
    assert query.endswith(f", {name})")
    assert not contract_violations(plain_promql(label_values_selector(query)))


def test_every_panel_queries_the_datasource_variable() -> None:
    for panel in query_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": DS_VARIABLE}, panel["title"]
        assert panel["targets"], panel["title"]
    for panel, target in targets():
        assert target["datasource"] == {"type": "prometheus", "uid": DS_VARIABLE}, panel["title"]


def test_panel_ids_and_target_ref_ids_are_unique() -> None:
    ids = [panel["id"] for panel in panels()]
    assert all(isinstance(pid, int) for pid in ids)
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    for panel in query_panels():
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_fit_the_grid_and_do_not_overlap() -> None:
    boxes = []
    for panel in panels():
        pos = panel["gridPos"]
        x, y, w, h = (pos[k] for k in "xywh")
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= GRID_COLUMNS, panel["title"]
        boxes.append((panel["title"], x, y, w, h))
    for i, (title_a, xa, ya, wa, ha) in enumerate(boxes):
        for title_b, xb, yb, wb, hb in boxes[i + 1:]:
            overlap = xa < xb + wb and xb < xa + wa and ya < yb + hb and yb < ya + ha
            assert not overlap, f"{title_a!r} overlaps {title_b!r}"


def test_every_query_uses_only_contract_names_and_the_filters() -> None:
    problems = []
    for panel, target in targets():
        expr = target["expr"]
        problems += [f"{panel['title']}: {p}" for p in contract_violations(plain_promql(expr))]
        if 'hostname=~"$hostname"' not in expr:
            problems.append(f"{panel['title']}: not filtered by $hostname")
        if "push_time_seconds" not in expr and 'job_name=~"$job_name"' not in expr:
            problems.append(f"{panel['title']}: not filtered by $job_name")
    assert not problems, "\n".join(problems)


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    exprs = {f"dashboard:panel_{panel['id']}:{target['refId']}": plain_promql(target["expr"])
             for panel, target in targets()}
    for name in ("hostname", "job_name"):
        query = variables()[name]["definition"]
        exprs[f"dashboard:variable:{name}"] = plain_promql(label_values_selector(query))
    assert len(exprs) == len(targets()) + 2
    rc, output = check_as_recording_rules(exprs, tmp_path)
    assert rc == 0, output
    assert f"SUCCESS: {len(exprs)} rules found" in output, output


def test_the_promql_check_rejects_invalid_promql(tmp_path: Path) -> None:
    rc, output = check_as_recording_rules(
        {"dashboard:bad": "max by (hostname (restic_backup_running)"}, tmp_path)
    assert rc != 0, output


def test_panel_contents() -> None:
    by_title = {panel["title"]: panel for panel in query_panels()}
    status = by_title["Last run"]
    assert status["type"] == "stat"
    options = status["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert (options["1"]["text"], options["0"]["text"]) == ("OK", "FAILED")
    age = by_title["Age of last success"]
    assert age["type"] == "stat" and age["fieldConfig"]["defaults"]["unit"] == "s"
    assert len(age["fieldConfig"]["defaults"]["thresholds"]["steps"]) > 1
    assert "_last_success_timestamp" in age["targets"][0]["expr"]
    # the stats panels show the last successful backup's: a failed run does not blank them
    data = by_title["Data added by the last successful backup"]
    assert data["type"] == "timeseries" and data["fieldConfig"]["defaults"]["unit"] == "bytes"
    assert "restic_backup_last_success_data_added_bytes" in data["targets"][0]["expr"]
    assert "_last_exit_code" in by_title["Last exit code"]["targets"][0]["expr"]
    assert "_running\"" in by_title["Running"]["targets"][0]["expr"]
    duration = by_title["Duration of the last run"]
    assert duration["type"] == "timeseries"
    assert "_last_duration_seconds" in duration["targets"][0]["expr"]
    files = " ".join(t["expr"] for t in
                     by_title["Files new / changed in the last successful backup"]["targets"])
    assert "restic_backup_last_success_files_new" in files
    assert "restic_backup_last_success_files_changed" in files
    deliveries = " ".join(t["expr"] for t in by_title["Notification deliveries"]["targets"])
    assert "increase(restic_runner_notification_failures_total" in deliveries
    assert "restic_runner_notifications_pending" in deliveries
