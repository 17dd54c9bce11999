"""The Grafana dashboard (deploy/monitoring/grafana-dashboard.json): a layout
Grafana draws as meant, queries that promtool parses and that return data on
the series a scrape really has, only metrics that exist, and a panel for each
question an operator asks (load against capacity, waits, durations, outcomes,
memory, pods). The ConfigMap form is checked in test_k8s_probes.py."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml

from tests.monitoring import (
    SCRAPE,
    SERVER_LABELS,
    SERVER_METRICS,
    base_metric,
    dashboard,
    dashboard_queries,
    find_promtool,
    known_metric,
    metric_names,
    other_series,
    panels,
    returns_data,
    rules_of,
    run,
    series,
    substituted,
    unit_test,
    variables,
)

# Each question and the metrics one panel must show together to answer it.
QUESTIONS = {
    "load vs capacity": {"stylize_jobs_in_progress", "stylize_queue_depth", "up"},
    "queue wait": {"stylize_queue_wait_seconds"},
    "job duration": {"stylize_job_duration_seconds"},
    "iteration time": {"stylize_iteration_seconds"},
    "refusals by reason": {"stylize_refusals_total"},
    "stops by reason": {"stylize_jobs_stopped_total"},
    "memory vs budget": {"stylize_device_memory_bytes", "stylize_memory_reserved_bytes", "stylize_memory_budget_bytes"},
    "error ratio": {"stylize_requests_total"},
    "pods": {"kube_deployment_status_replicas_available", "up"},
}


@pytest.fixture(scope="module")
def promtool() -> str:
    return find_promtool()


def test_layout_ids_and_data_sources() -> None:
    board = dashboard()
    assert board["uid"] == "stylize-overview" and board["title"] and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert set(variables()) >= {"datasource", "namespace", "slots"}
    assert variables()["datasource"]["type"] == "datasource" and variables()["datasource"]["query"] == "prometheus"
    boxes = []
    for panel in panels():
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        boxes.append((panel["title"], pos))
        assert panel["title"] and panel.get("description"), f"panel {panel['id']} needs a title and a description"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["targets"] and len(refs) == len(set(refs)), panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]
    for (a, p), (b, q) in itertools.combinations(boxes, 2):
        side_by_side = p["x"] + p["w"] <= q["x"] or q["x"] + q["w"] <= p["x"]
        stacked = p["y"] + p["h"] <= q["y"] or q["y"] + q["h"] <= p["y"]
        apart = side_by_side or stacked
        assert apart, f"panels {a!r} and {b!r} overlap"


def test_queries_parse_with_promtool(promtool: str, tmp_path: Path) -> None:
    rules = [{"record": f"dashboard:query:{i}", "expr": expr} for i, (_, expr) in enumerate(dashboard_queries())]
    (tmp_path / "dashboard.rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = run(promtool, "check", "rules", "dashboard.rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def test_queries_return_data_on_the_series_a_scrape_has(promtool: str, tmp_path: Path) -> None:
    """Every query, on series labelled as the ServiceMonitor and
    kube-state-metrics label them, returns at least one sample: a misspelt
    metric or label name would return none."""
    input_series = other_series()
    for name, kind in SERVER_METRICS.items():
        labels = {**SCRAPE, **SERVER_LABELS.get(name, {})}
        if kind == "histogram":
            for le, step in (("1", 1), ("10", 2), ("+Inf", 3)):
                input_series.append(series(f"{name}_bucket", {**labels, "le": le}, f"0+{step}x20"))
            input_series.append(series(f"{name}_count", labels, "0+3x20"))
            input_series.append(series(f"{name}_sum", labels, "0+9x20"))
        else:
            input_series.append(series(name, labels, "0+1x20" if kind == "counter" else "1x20"))
    checks = returns_data([expr for _, expr in dashboard_queries()], "15m")
    tests = {"tests": [{"interval": "1m", "input_series": input_series, "promql_expr_test": checks}]}
    result = unit_test(promtool, tmp_path, [], tests)
    assert result.returncode == 0, result.stdout


def test_every_query_uses_metrics_that_exist_and_every_server_metric_is_shown() -> None:
    shown = set()
    for title, expr in dashboard_queries():
        names = metric_names(expr)
        assert names, f"{title}: {expr}"
        unknown = {n for n in names if not known_metric(n)}
        assert not unknown, f"{title}: {unknown}"
        shown |= {base_metric(n) for n in names}
    assert set(SERVER_METRICS) <= shown, f"not on the dashboard: {set(SERVER_METRICS) - shown}"


@pytest.mark.parametrize("question", QUESTIONS)
def test_a_panel_answers(question: str) -> None:
    needed = QUESTIONS[question]
    answering = [
        p["title"]
        for p in panels()
        if needed <= {base_metric(n) for t in p["targets"] for n in metric_names(substituted(t["expr"]))}
    ]
    assert answering, f"no panel shows {sorted(needed)} together ({question})"


def test_error_ratio_counts_the_codes_the_alert_counts() -> None:
    (record,) = [r for r in rules_of("record") if r["record"] == "namespace_job:stylize_request_errors:rate5m"]
    (codes,) = set(re.findall(r'code=~"([^"]+)"', record["expr"]))
    used = {c for _, expr in dashboard_queries() for c in re.findall(r'code=~"([^"]+)"', expr)}
    assert used == {codes}, used
