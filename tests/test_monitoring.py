"""The alerts and recording rules an operator applies (deploy/monitoring),
checked with the real promtool (Debian's `prometheus` package; .ci/run
installs it):

* the PrometheusRule's groups pass `promtool check rules`, and its unit tests
  (rules.test.yaml) pass `promtool test rules`;
* those unit tests cover every alert both firing and not firing, and every
  recording rule: an alert that never fires, one that always fires, or a
  recording rule with a wrong value each make them fail;
* the HPA adapter rule and the KEDA query compute the same load as the
  recording rules, evaluated by promtool on the same series;
* every alert has a severity, a summary, a description and a runbook section;
* a live server's /metrics passes `promtool check metrics`, and exports what
  the rules and the dashboard use.

The dashboard has its own tests (test_monitoring_dashboard.py). Outside CI a
missing promtool skips these tests with the reason; under CI=true it fails them.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.monitoring import (
    REPO,
    RULE_TESTS,
    RUNBOOK,
    SCRAPE,
    SERVER_LABELS,
    SERVER_METRICS,
    dashboard_queries,
    find_promtool,
    known_metric,
    metric_names,
    other_series,
    returns_data,
    rule_groups,
    rules_of,
    run,
    series,
    unit_test,
    with_expr,
)
from tests.support.metrics import wait_for_value
from tests.support.server import small_request

ADAPTER_VALUES = REPO / "deploy" / "k8s" / "components" / "hpa" / "prometheus-adapter-values.yaml"
SCALED_OBJECT = REPO / "deploy" / "k8s" / "components" / "keda" / "scaledobject.yaml"
SEVERITIES = {"critical", "warning"}
NEVER_FIRES = "vector(1) == 0"
ALWAYS_FIRES = "vector(1)"


@pytest.fixture(scope="session")
def promtool() -> str:
    return find_promtool()


# --- the rules --------------------------------------------------------------------------


def test_rules_pass_promtool_check_and_a_broken_rule_does_not(promtool: str, tmp_path: Path) -> None:
    rules = tmp_path / "stylize.rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups()}))
    checked = run(promtool, "check", "rules", str(rules), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout
    assert f"SUCCESS: {sum(len(g['rules']) for g in rule_groups())} rules found" in checked.stdout

    rules.write_text(yaml.safe_dump({"groups": with_expr("StylizeHighErrorRatio", "sum(rate(x[5m])) >")}))
    broken = run(promtool, "check", "rules", str(rules), cwd=tmp_path)
    assert broken.returncode != 0 and "StylizeHighErrorRatio" in broken.stdout, broken.stdout


def test_rule_unit_tests_pass(promtool: str, tmp_path: Path) -> None:
    result = unit_test(promtool, tmp_path, rule_groups())
    assert result.returncode == 0, result.stdout
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = [
        case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test.get("alert_rule_test", [])
    ]
    for alert in rules_of("alert"):
        name = alert["alert"]
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), f"{name} is never tested firing"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), f"{name} is never tested quiet"


@pytest.mark.parametrize("alert", [r["alert"] for r in rules_of("alert")])
def test_unit_tests_fail_for_an_alert_that_never_or_always_fires(promtool: str, tmp_path: Path, alert: str) -> None:
    for name, expr in (("never", NEVER_FIRES), ("always", ALWAYS_FIRES)):
        result = unit_test(promtool, tmp_path / name, with_expr(alert, expr))
        assert result.returncode != 0, f"{alert} {name} firing still passes the unit tests"
        assert f"alertname: {alert}," in result.stdout, result.stdout


@pytest.mark.parametrize("record", [r["record"] for r in rules_of("record")])
def test_unit_tests_fail_for_a_wrong_recording_rule(promtool: str, tmp_path: Path, record: str) -> None:
    result = unit_test(promtool, tmp_path, with_expr(record, "vector(12345)"))
    assert result.returncode != 0, f"{record} is not checked by the unit tests"
    assert f'expr: "{record}"' in result.stdout, result.stdout


def test_alerts_carry_severity_summary_description_and_a_runbook_section() -> None:
    runbook = RUNBOOK.read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", runbook, re.M)
    }
    table = {m[0]: m[1] for m in re.findall(r"^\| `(Stylize\w+)` \| (\w+) \|", runbook, re.M)}
    for alert in rules_of("alert"):
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        assert alert["annotations"]["summary"].strip() and alert["annotations"]["description"].strip(), name
        path, _, anchor = alert["annotations"]["runbook"].partition("#")
        assert REPO / path == RUNBOOK and anchor == name.lower() and anchor in anchors, name
        assert table.get(name) == alert["labels"]["severity"], f"{name} is not in the README's alert table as such"
    assert set(table) == {a["alert"] for a in rules_of("alert")}


def test_rules_use_only_metrics_that_exist() -> None:
    for rule in rules_of("alert") + rules_of("record"):
        names = metric_names(rule["expr"])
        assert names, rule
        unknown = {n for n in names if not known_metric(n)}
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: {unknown}"


def test_autoscalers_compute_the_load_the_recording_rules_record(promtool: str, tmp_path: Path) -> None:
    """The adapter's per-pod query (as prometheus-adapter renders it for the
    pods of one namespace) and the KEDA trigger's query, evaluated by promtool
    on the same series as the recording rules, give the same numbers."""
    pods = {("stylize", "stylize-a"): (2, 3), ("stylize", "stylize-b"): (1, 0), ("other", "stylize-c"): (5, 5)}
    series = []
    for (namespace, pod), (running, queued) in pods.items():
        labels = f'job="stylize",namespace="{namespace}",pod="{pod}",instance="{pod}:9090"'
        series.append({"series": f"stylize_jobs_in_progress{{{labels}}}", "values": f"{running}x5"})
        series.append({"series": f"stylize_queue_depth{{{labels}}}", "values": f"{queued}x5"})
    ours = {pod: sum(load) for (namespace, pod), load in pods.items() if namespace == "stylize"}

    (rule,) = [
        r for r in yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"] if r["name"]["as"] == "stylize_load"
    ]
    adapter = re.sub(r"<<\s*\.GroupBy\s*>>", "pod", rule["metricsQuery"])
    adapter = re.sub(r"<<\s*\.LabelMatchers\s*>>", f'namespace="stylize",pod=~"{"|".join(ours)}"', adapter)
    assert "<<" not in adapter, adapter
    (trigger,) = yaml.safe_load(SCALED_OBJECT.read_text())["spec"]["triggers"]
    keda = trigger["metadata"]["query"]

    def samples(expr: str, expected: dict[str, float]) -> dict[str, Any]:
        return {
            "expr": expr,
            "eval_time": "2m",
            "exp_samples": [{"labels": k, "value": v} for k, v in expected.items()],
        }

    tests = {
        "rule_files": ["stylize.rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    samples(adapter, {f'{{pod="{p}"}}': v for p, v in ours.items()}),
                    samples(
                        'namespace_pod:stylize_load:sum{namespace="stylize"}',
                        {
                            f'namespace_pod:stylize_load:sum{{namespace="stylize",pod="{p}"}}': v
                            for p, v in ours.items()
                        },
                    ),
                    samples(keda, {"{}": sum(ours.values())}),
                    samples(
                        'namespace_job:stylize_load:sum{namespace="stylize"}',
                        {'namespace_job:stylize_load:sum{job="stylize",namespace="stylize"}': sum(ours.values())},
                    ),
                ],
            }
        ],
    }
    result = unit_test(promtool, tmp_path, rule_groups(), tests)
    assert result.returncode == 0, result.stdout


# --- a live server ------------------------------------------------------------------------


def exposition_after_calls(server: Any) -> bytes:
    """The /metrics text of a real server after a finished job and a refused
    request, so that the labelled series exist too."""
    stub = server.stub()
    frames = list(stub.Stylize(small_request(iterations=2), timeout=120))
    assert frames[-1].HasField("result")
    with pytest.raises(grpc.RpcError):
        list(stub.Stylize(small_request(size=4), timeout=30))
    wait_for_value(server.metrics_port, "stylize_requests_total", lambda v: v >= 1, code="OK")
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text: bytes = response.read()
    return text


def samples_of(page: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page.decode())
        for s in family.samples
        if s.name.startswith("stylize_") and not s.name.endswith("_created")
    }


def scraped_series(before: bytes, after: bytes) -> list[dict[str, str]]:
    """Two scrapes a minute apart as promtool input series, labelled as the
    ServiceMonitor labels them (a series new in `after` starts at 0)."""
    old = samples_of(before)
    return [
        series(name, {**SCRAPE, **dict(labels)}, f"{old.get((name, labels), 0.0):f} {value:f}")
        for (name, labels), value in samples_of(after).items()
    ]


def test_live_metrics_pass_promtool_check_metrics(promtool: str, server: Any, tmp_path: Path) -> None:
    text = exposition_after_calls(server)
    codes = {name_labels[1] for name_labels in samples_of(text) if name_labels[0] == "stylize_requests_total"}
    assert (("code", "OK"),) in codes and len(codes) >= 2, codes
    checked = run(promtool, "check", "metrics", cwd=tmp_path, stdin=text)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout
    # The check can fail: the same page with a counter named like a duration.
    bad = text + b"# HELP stylize_bad_seconds x\n# TYPE stylize_bad_seconds counter\nstylize_bad_seconds 1\n"
    linted = run(promtool, "check", "metrics", cwd=tmp_path, stdin=bad)
    assert linted.returncode != 0 and "stylize_bad_seconds" in linted.stdout, linted.stdout


@pytest.mark.xfail(
    strict=True,
    reason="the serving branch exports stylize_jobs_stopped_total (renamed from stylize_jobs_cancelled_total), "
    "stylize_refusals_total, the memory budget/reserved/estimate metrics, stylize_open_calls, "
    "stylize_result_store_bytes and stylize_precision_info; remove this mark when it is merged",
)
def test_rules_and_dashboard_work_on_a_live_server_s_metrics(promtool: str, server: Any, tmp_path: Path) -> None:
    """The server exports every metric the rules and the dashboard use, with
    its type and labels; and on two real scrapes every recording rule and
    every dashboard query returns data (device memory only where there is a GPU)."""
    before = exposition_after_calls(server)
    after = exposition_after_calls(server)
    exported = {f.name: f for f in text_string_to_metric_families(after.decode())}
    missing = []
    for name, kind in SERVER_METRICS.items():
        family = exported.get(name.removesuffix("_total") if kind == "counter" else name)
        if family is None or family.type != kind:
            missing.append(f"{name} ({kind})")
            continue
        for label in SERVER_LABELS.get(name, {}):
            assert all(label in s.labels for s in family.samples), f"{name} lacks the label {label}"
    assert not missing, f"the rules and the dashboard use metrics the server does not export: {missing}"

    on_device = any(name == "stylize_device_memory_bytes" for name, _ in samples_of(after))
    exprs = [r["expr"] for r in rules_of("record")] + [expr for _, expr in dashboard_queries()]
    exprs = [e for e in exprs if on_device or "stylize_device_memory_bytes" not in metric_names(e)]
    input_series = scraped_series(before, after) + other_series()
    tests = {
        "rule_files": ["stylize.rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": input_series, "promql_expr_test": returns_data(exprs, "1m")}],
    }
    result = unit_test(promtool, tmp_path, rule_groups(), tests)
    assert result.returncode == 0, result.stdout
