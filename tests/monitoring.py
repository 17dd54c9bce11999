"""Shared by the monitoring tests (tests/test_monitoring*.py): where the
monitoring files are, the metrics they may use, the real promtool, and the
PrometheusRule's groups as the plain rule file promtool reads."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "prometheus-rule.yaml"
RULE_TESTS = MONITORING / "rules.test.yaml"
RUNBOOK = MONITORING / "README.md"
DASHBOARD = MONITORING / "grafana-dashboard.json"

# Grafana's own variables, as Prometheus would see them after substitution.
BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "6h"}
# The labels a ServiceMonitor scrape gives the server's series.
SCRAPE = {"job": "stylize", "namespace": "stylize", "pod": "stylize-a", "instance": "10.0.0.1:9090"}

# What the server exports (the serving core's metric set): name -> type.
SERVER_METRICS = {
    "stylize_requests_total": "counter",
    "stylize_refusals_total": "counter",
    "stylize_jobs_in_progress": "gauge",
    "stylize_queue_depth": "gauge",
    "stylize_queue_wait_seconds": "histogram",
    "stylize_job_duration_seconds": "histogram",
    "stylize_iteration_seconds": "histogram",
    "stylize_iterations_total": "counter",
    "stylize_jobs_stopped_total": "counter",
    "stylize_model_load_seconds": "gauge",
    "stylize_device_memory_bytes": "gauge",
    "stylize_memory_budget_bytes": "gauge",
    "stylize_memory_reserved_bytes": "gauge",
    "stylize_job_estimated_memory_bytes": "histogram",
    "stylize_job_estimated_seconds": "histogram",
    "stylize_open_calls": "gauge",
    "stylize_result_store_bytes": "gauge",
    "stylize_precision_info": "gauge",
}
# The labels of the labelled ones, with a value each may take.
SERVER_LABELS = {
    "stylize_requests_total": {"code": "OK"},
    "stylize_refusals_total": {"reason": "QUEUE_FULL"},
    "stylize_jobs_stopped_total": {"reason": "time_limit"},
    "stylize_precision_info": {"precision": "bfloat16"},
}
# From kube-state-metrics and Prometheus itself, with the labels they carry.
OTHER_METRICS = {
    "kube_deployment_status_replicas_available": {"deployment": "stylize"},
    "kube_deployment_spec_replicas": {"deployment": "stylize"},
    "kube_horizontalpodautoscaler_status_current_replicas": {"horizontalpodautoscaler": "stylize"},
    "kube_horizontalpodautoscaler_status_desired_replicas": {"horizontalpodautoscaler": "stylize"},
    "kube_horizontalpodautoscaler_spec_max_replicas": {"horizontalpodautoscaler": "stylize"},
    "up": {"job": "stylize", "pod": "stylize-a"},
    "ALERTS": {"alertname": "StylizeQueueWaitHigh", "alertstate": "firing", "severity": "warning"},
}


def find_promtool() -> str:
    """$PROMTOOL, else the promtool beside the interpreter or on PATH. Missing,
    it skips the calling test with the reason, or fails it under CI=true,
    where the tests must really run (.ci/run installs it)."""
    beside = Path(sys.executable).parent / "promtool"
    wanted = os.environ.get("PROMTOOL") or (str(beside) if beside.exists() else "promtool")
    found = shutil.which(wanted)
    if found:
        return found
    message = f"{wanted} not found: apt-get install prometheus (Debian), put promtool on PATH, or set PROMTOOL"
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{message}; CI=true, where a missing promtool fails instead of skipping")
    pytest.skip(message)


def run(promtool: str, *args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """promtool with stdout and stderr together in `.stdout`."""
    proc = subprocess.run([promtool, *args], cwd=cwd, input=stdin, capture_output=True, timeout=120, check=False)
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    return groups


def rules_of(kind: str) -> list[dict[str, Any]]:
    """The alerts ("alert") or recording rules ("record") of the PrometheusRule."""
    return [rule for group in rule_groups() for rule in group["rules"] if kind in rule]


def with_expr(name: str, expr: str) -> list[dict[str, Any]]:
    """The rule groups with the expression of the rule called `name` replaced."""
    groups = copy.deepcopy(rule_groups())
    matches = [r for g in groups for r in g["rules"] if name in (r.get("alert"), r.get("record"))]
    assert len(matches) == 1, name
    matches[0]["expr"] = expr
    return groups


def unit_test(
    promtool: str, directory: Path, groups: list[dict[str, Any]], tests: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of `tests` (default: rules.test.yaml) against
    `groups`, written as the plain rule file the tests name."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stylize.rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    if tests is None:
        shutil.copy(RULE_TESTS, directory / "rules.test.yaml")
    else:
        (directory / "rules.test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return run(promtool, "test", "rules", "rules.test.yaml", cwd=directory)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers outside strings,
    label matchers and groupings that are not functions, keywords or numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[|\)|$|\s|==|>|<|\+|-|\*|/)", text))
    functions = set(re.findall(r"\b([a-z_]+)\s*\(", text))
    words = {"and", "or", "unless", "bool", "inf", "nan"}
    return {n for n in names - functions - words if not n[0].isdigit()}


def base_metric(name: str) -> str:
    """A histogram's name for its _bucket, _count and _sum series."""
    for suffix in ("_bucket", "_count", "_sum"):
        stem = name.removesuffix(suffix)
        if stem != name and SERVER_METRICS.get(stem) == "histogram":
            return stem
    return name


def known_metric(name: str) -> bool:
    records = {r["record"] for r in rules_of("record")}
    return base_metric(name) in SERVER_METRICS or name in OTHER_METRICS or name in records


# --- the dashboard ---------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def substituted(expr: str) -> str:
    """`expr` as Grafana sends it: variables replaced by their default (or a
    namespace), Grafana's own by typical values."""
    values = {"namespace": "stylize", **BUILTINS}
    for name, var in variables().items():
        if var["type"] in ("textbox", "constant", "custom"):
            values[name] = str(var["query"]).split(",")[0]

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"{expr}: ${name} is not a variable of the dashboard"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, query as Prometheus receives it) for every target."""
    return [(p["title"], substituted(t["expr"])) for p in panels() for t in p["targets"]]


# --- promtool input series and checks -------------------------------------------


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    """One promtool input series."""
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def other_series() -> list[dict[str, str]]:
    """kube-state-metrics' and Prometheus's series about a stylize deployment."""
    out = []
    for name, labels in OTHER_METRICS.items():
        owner = {} if name == "up" else {"job": "kube-state-metrics"}
        out.append(series(name, {**owner, "namespace": "stylize", **labels}, "1x20"))
    return out


def returns_data(exprs: list[str], eval_time: str) -> list[dict[str, Any]]:
    """promql_expr_test cases that each pass when `expr` returns a sample."""
    check = {"eval_time": eval_time, "exp_samples": [{"labels": "{}", "value": 1}]}
    return [{"expr": f"count(({expr})) > bool 0", **check} for expr in exprs]
